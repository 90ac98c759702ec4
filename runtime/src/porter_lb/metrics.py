"""porter-lb's Prometheus metrics: current values (gauges), not event counts, plus one histogram.

One registry per process, served on `--metrics-address` (host:port; empty disables it). The
controller sets the pool and allocation gauges, every speaker the BGP session and prefix gauges.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

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
BGP_SESSION_UP = Gauge(
    "porter_lb_bgp_session_up",
    "1 if the BGP session to the peer is Established, else 0",
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


def serve(address: str) -> None:
    """Serve /metrics on `address` ("host:port", "" for none) from a background thread."""
    if not address:
        return
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=REGISTRY)
