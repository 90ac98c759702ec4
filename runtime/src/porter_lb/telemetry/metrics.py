"""porter-lb's Prometheus metrics: current values (gauges), not event counts, plus one histogram.

One registry per process, served on `--metrics-address` (host:port; empty disables it) with the
process's health checks (/healthz, /readyz: porter_lb.telemetry.health). The controller sets the
pool and allocation gauges, every speaker the BGP session and prefix gauges; Prometheus' own process
(CPU, memory, file descriptors), garbage-collector and platform collectors are registered too.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)

from porter_lb.telemetry.health import HEALTH, Health

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
    REGISTRY.register(_collector)

POOL_SIZE = Gauge("porter_lb_pool_size", "Addresses in an Eip pool", ["pool"], registry=REGISTRY)
POOL_USAGE = Gauge(
    "porter_lb_pool_usage",
    "Addresses of an Eip pool given to Services",
    ["pool"],
    registry=REGISTRY,
)
POOL_READY = Gauge(
    "porter_lb_pool_ready",
    "1 if the Eip can give out addresses, else 0",
    ["pool"],
    registry=REGISTRY,
)
ALLOCATIONS = Gauge(
    "porter_lb_allocations",
    "LoadBalancer Services porter-lb implements, by outcome (allocated, refused, pending)",
    ["state"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "porter_lb_reconcile_duration_seconds",
    "Time of one reconcile, by controller",
    ["controller"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
EVENT_TO_GOBGP_SECONDS = Histogram(
    "porter_lb_speaker_event_to_gobgp_seconds",
    "From the watch event of a Service or EndpointSlice change to its paths handed to gobgpd",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
BGP_SESSION_UP = Gauge(
    "porter_lb_bgp_session_up",
    "1 if the BGP session to the peer is Established, else 0",
    ["peer", "node"],
    registry=REGISTRY,
)
BFD_SESSION_UP = Gauge(
    "porter_lb_bfd_session_up",
    "1 if the BFD session to the peer is Up, else 0 (only peers with spec.bfd enabled)",
    ["peer", "node"],
    registry=REGISTRY,
)
ADVERTISED_PREFIXES = Gauge(
    "porter_lb_advertised_prefixes",
    "Prefixes (paths in central mode) announced to the peer",
    ["peer", "node"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "porter_lb_leader", "1 while this controller holds the leader Lease", registry=REGISTRY
)
ACCEPTED_IPS = Gauge(
    "porter_lb_accepted_ips",
    "EIPs this node's host rules make it accept",
    ["node"],
    registry=REGISTRY,
)
ACCEPTED_IP = Gauge(
    "porter_lb_accepted_ip",
    "1 for each EIP this node's host rules make it accept (the series goes when it stops)",
    ["node", "ip"],
    registry=REGISTRY,
)
HOST_SETTING_OK = Gauge(
    "porter_lb_host_setting_ok",
    "1 if a Linux setting the host rules need has a wanted value, else 0 (see docs/agent.md)",
    ["node", "setting"],
    registry=REGISTRY,
)


def parse_address(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets; an empty host is every address) as (host, port); for
    argparse, so a bad `--metrics-address` is one line naming it. ValueError otherwise."""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: want HOST:PORT with a port number 0-65535, e.g. :7472")
    host = host.strip("[]")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{value!r}: the host must be an IP address or empty") from None
    return host or "0.0.0.0", int(port)


def metrics_address(value: str) -> str:
    """argparse type of `--metrics-address`: validated, returned as given ("" is off)."""
    if value:
        try:
            parse_address(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return value


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler logging at debug only, with a one-call reply (also the webhook's)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ok, text = self.server.health.report(path[1:])
            status = 200 if ok else 500 if path == "/healthz" else 503
            self._reply(status, text.encode(), "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")


class LocalHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer without the reverse name lookup of its own address at bind
    (`socket.getfqdn`): where no name service answers (a pod without cluster DNS), that lookup
    held every server's start for the resolver's 5 s timeout. Also the webhook's base."""

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server(LocalHTTPServer):
    health: Health


class _Server6(_Server):
    address_family = socket.AF_INET6


def serve(address: str, health: Health = HEALTH) -> ThreadingHTTPServer | None:
    """Serve /metrics, /healthz and /readyz on `address` ("host:port", "" for none) from a
    background thread. OSError (port in use, address not here) propagates: the caller says
    what failed in one line."""
    if not address:
        return None
    host, port = parse_address(address)
    server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    server.health = health
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
