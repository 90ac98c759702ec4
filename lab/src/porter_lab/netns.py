"""Network namespaces, veth pairs and bridges, through iproute2.

Every name the bed creates carries a per-run prefix, so parallel runs never collide and a
leftover from a crashed run is easy to find and remove (`remove_all(prefix)`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from porter_lab.processes import in_netns


class CommandFailed(RuntimeError):
    pass


def run(argv: Sequence[str], netns: str | None = None, timeout: float = 30) -> str:
    result = subprocess.run(
        in_netns(netns, argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        where = f" in netns {netns}" if netns else ""
        raise CommandFailed(
            f"{' '.join(argv)}{where} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result.stdout


def ip(*args: str, netns: str | None = None) -> str:
    return run(["ip", *args], netns=netns)


def ip_json(*args: str, netns: str | None = None) -> Any:
    return json.loads(ip("-j", *args, netns=netns) or "[]")


def existing() -> list[str]:
    return [entry["name"] for entry in ip_json("netns", "list")]


def add(name: str) -> None:
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def delete(name: str) -> None:
    if name in existing():
        ip("netns", "delete", name)


def remove_all(prefix: str) -> list[str]:
    """Delete every namespace whose name starts with `prefix` (their links go with them)."""
    removed = [name for name in existing() if name.startswith(prefix)]
    for name in removed:
        ip("netns", "delete", name)
    return removed


def veth(netns_a: str, name_a: str, netns_b: str, name_b: str) -> None:
    ip(
        "link",
        "add",
        name_a,
        "netns",
        netns_a,
        "type",
        "veth",
        "peer",
        "name",
        name_b,
        "netns",
        netns_b,
    )
    ip("link", "set", name_a, "up", netns=netns_a)
    ip("link", "set", name_b, "up", netns=netns_b)


def bridge(netns: str, name: str) -> None:
    ip("link", "add", name, "type", "bridge", netns=netns)
    ip("link", "set", name, "up", netns=netns)


def enslave(netns: str, link: str, bridge_name: str) -> None:
    ip("link", "set", link, "master", bridge_name, netns=netns)


def address(netns: str, link: str, cidr: str) -> None:
    ip("address", "add", cidr, "dev", link, netns=netns)


def address6(netns: str, link: str, cidr: str) -> None:
    """An IPv6 address usable at once: `nodad` skips duplicate address detection (~1-2 s)."""
    ip("-6", "address", "add", cidr, "dev", link, "nodad", netns=netns)


def sysctl(netns: str, key: str, value: str | int) -> None:
    run(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns)


def routes(netns: str, prefix: str | None = None, family: int = 4) -> list[dict[str, Any]]:
    """The kernel FIB of the main table in `netns` (`ip -j route`), optionally one prefix."""
    args = [f"-{family}", "route", "show"]
    if prefix:
        args.append(prefix)  # iproute2's default selector is an exact match
    return list(ip_json(*args, netns=netns))


def next_hops(netns: str, prefix: str) -> set[str]:
    """Gateways the kernel in `netns` has for exactly `prefix` (one for a plain route, several
    for ECMP); empty when the route is absent."""
    address_only = prefix.split("/", maxsplit=1)[0]
    gateways: set[str] = set()
    for route in routes(netns, prefix):
        if route.get("dst") not in (prefix, address_only):
            continue
        if "gateway" in route:
            gateways.add(route["gateway"])
        for hop in route.get("nexthops", []):
            if "gateway" in hop:
                gateways.add(hop["gateway"])
    return gateways


def host_routes(netns: str) -> dict[str, set[str]]:
    """Every /32 and /128 of the main table in `netns`: prefix -> gateways."""
    found: dict[str, set[str]] = {}
    for family in (4, 6):
        for route in routes(netns, family=family):
            dst = str(route.get("dst", ""))
            if dst in ("", "default"):
                continue
            host = "/128" if family == 6 else "/32"
            if "/" not in dst:
                dst += host
            if not dst.endswith(host):
                continue
            hops = {route["gateway"]} if "gateway" in route else set()
            hops |= {h["gateway"] for h in route.get("nexthops", []) if "gateway" in h}
            found[dst] = hops
    return found
