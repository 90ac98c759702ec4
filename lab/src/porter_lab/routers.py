"""BIRD 2 and FRR routers in a network namespace, with private config, socket and pid paths.

The bed's own minimal configurations (from ../shared-verified settings: `merge paths` in BIRD's
kernel protocol, `maximum-paths` + `multipath-relax` and real in/out policies in FRR). The
product's router configuration modules (porter.lb.bird_bgp / frr_bgp) are a separate concern.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from porter_lab import netns
from porter_lab.processes import Daemon
from porter_lab.waiting import wait_for


@dataclass(frozen=True)
class Neighbor:
    address: str
    asn: int
    name: str  # a protocol-safe name, e.g. "node1"
    # TCP MD5 password of the session (RFC 2385); empty: none. Not in repr: tests look for
    # it in logs.
    password: str = field(default="", repr=False)
    port: int = 179  # the neighbour's BGP port (porter-lb's gobgpd beside Calico: not 179)
    # IP versions (4, 6) the session carries; empty: the neighbour address's own. IPv6 over an
    # IPv4 session (MP-BGP) needs IPv6 next hops: neither router takes IPv4 ones for it.
    families: tuple[int, ...] = ()

    @property
    def version(self) -> int:
        """The IP version of the session itself (its neighbour address)."""
        return 6 if ":" in self.address else 4

    @property
    def versions(self) -> tuple[int, ...]:
        """The IP versions of the routes the session carries."""
        return self.families or (self.version,)


@dataclass(frozen=True)
class BfdTimers:
    """Single-hop BFD (RFC 5880/5881) with every neighbour: intervals in ms."""

    transmit_ms: int = 300
    receive_ms: int = 300
    multiplier: int = 3


@dataclass(frozen=True)
class RouterSpec:
    asn: int
    router_id: str
    neighbors: tuple[Neighbor, ...]
    pools: tuple[str, ...]  # EIP pools whose /32s (/128s) are accepted from the neighbours
    max_paths: int = 16
    add_paths_rx: bool = False  # a central speaker sends several next hops per prefix
    # FRR only, 0 = FRR's default (360 s): how long after a restarting speaker's session went
    # down its stale routes are kept at most (FRR 8.4 leaves all but one stale ADD-PATH path
    # of a prefix until then, FRRouting/frr#17372). Both routers are graceful-restart helpers
    # by default (BIRD `graceful restart aware`, FRR helper mode); the speaker decides whether
    # GR is used.
    stalepath_time: int = 0
    bfd: BfdTimers | None = None  # BFD with every neighbour (FRR: bfdd is started too)


class Router(Protocol):
    netns: str
    spec: RouterSpec
    workdir: Path  # config, control sockets, logs

    def processes(self) -> list[Daemon]: ...
    def start(self) -> Router: ...
    def stop(self) -> None: ...
    def sessions(self) -> dict[str, str]: ...
    def rib_next_hops(self, prefix: str) -> set[str]: ...
    def bfd_sessions(self) -> dict[str, str]: ...
    def last_down_reason(self, address: str) -> str: ...


def established(router: Router, timeout: float = 30) -> None:
    """Wait until every configured neighbour's session is Established."""
    wanted = {n.address for n in router.spec.neighbors}

    def all_up() -> bool:
        states = router.sessions()
        return all(states.get(address) == "Established" for address in wanted)

    wait_for(
        all_up, timeout, f"BGP sessions {sorted(wanted)} on {type(router).__name__}", interval=0.1
    )


def _host_prefix_len(pool: str) -> int:
    return 128 if ":" in pool else 32


def _pools_of(spec: RouterSpec, version: int) -> list[str]:
    return [p for p in spec.pools if (":" in p) == (version == 6)]


def _carries(spec: RouterSpec, version: int) -> bool:
    return any(version in n.versions for n in spec.neighbors)


# --- BIRD 2 ------------------------------------------------------------------------------------


def bird_config(spec: RouterSpec, log: Path) -> str:
    """Kernel protocol and import filter per IP version the sessions carry; each neighbour
    its own channels (an IPv6 one on an IPv4 session: MP-BGP, IPv6 next hops only)."""
    add_paths = " add paths rx;" if spec.add_paths_rx else ""
    lines = [
        f'log "{log}" all;',
        f"router id {spec.router_id};",
        "protocol device { scan time 10; }",
    ]
    for version in (4, 6):
        if version == 6 and not _carries(spec, 6):
            continue
        suffix = "" if version == 4 else "6"
        pool_set = ", ".join(
            f"{p}{{{_host_prefix_len(p)},{_host_prefix_len(p)}}}" for p in _pools_of(spec, version)
        )
        lines += [
            "protocol kernel {",
            f"  ipv{version} {{ import none; "
            "export filter { if source = RTS_BGP then accept; reject; }; };",
            f"  merge paths on limit {spec.max_paths};",
            # 10,000 routes change in one burst at a cold start: a small netlink buffer
            # overflows and BIRD then waits for its next kernel scan (60 s by default).
            "  netlink rx buffer 16777216;",
            "}",
            f"filter eip_pools{suffix} {{",
            f"  if net ~ [ {pool_set} ] then accept;" if pool_set else "",
            "  reject;",
            "}",
        ]
    lines += [
        _bird_bfd_protocol(spec.bfd),
        "template bgp cluster_nodes {",
        f"  local as {spec.asn};",
        "  bfd on;" if spec.bfd else "",
        "  hold time 9; keepalive time 3;",
        "  connect delay time 1; connect retry time 1; error wait time 1, 5;",
        "}",
    ]
    for neighbor in spec.neighbors:
        password = f' password "{neighbor.password}";' if neighbor.password else ""
        port = f" port {neighbor.port}" if neighbor.port != 179 else ""
        # iBGP is multihop in BIRD, its next hops resolved through an IGP table the lab does
        # not fill: the nodes are on the router's own LAN, say so.
        direct = " direct;" if neighbor.asn == spec.asn else ""
        channels = "".join(
            f" ipv{v} {{ import filter eip_pools{'' if v == 4 else '6'}; export none;"
            f"{add_paths}{' extended next hop off;' if v != neighbor.version else ''}"
            " };"
            for v in neighbor.versions
        )
        lines.append(
            f"protocol bgp {neighbor.name} from cluster_nodes "
            f"{{ neighbor {neighbor.address}{port} as {neighbor.asn};{direct}{password}"
            f"{channels} }}"
        )
    return "\n".join(line for line in lines if line) + "\n"


def _bird_bfd_protocol(bfd: BfdTimers | None) -> str:
    if bfd is None:
        return ""
    return (
        'protocol bfd { interface "*" { '
        f"min rx interval {bfd.receive_ms} ms; min tx interval {bfd.transmit_ms} ms; "
        f"multiplier {bfd.multiplier}; }}; }}"
    )


@dataclass
class Bird:
    netns: str
    spec: RouterSpec
    workdir: Path
    daemon: Daemon | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "bird.ctl"

    def start(self) -> Bird:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "bird.conf"
        config.write_text(bird_config(self.spec, self.workdir / "bird.log"))
        check = subprocess.run(
            ["bird", "-p", "-c", str(config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"BIRD rejected {config}: {check.stderr.strip()}")
        self.daemon = Daemon(
            "bird",
            [
                "bird",
                "-f",
                "-c",
                str(config),
                "-s",
                str(self.socket),
                "-P",
                str(self.workdir / "bird.pid"),
            ],
            self.workdir / "bird.stdout",
            netns=self.netns,
        ).start()
        wait_for(self._ready, 10, "BIRD control socket")
        return self

    def processes(self) -> list[Daemon]:
        return [self.daemon] if self.daemon else []

    def reconfigure(self, spec: RouterSpec) -> None:
        """Run with `spec` from now on (`birdc configure`; changed neighbours restart)."""
        config = self.workdir / "bird.conf"
        config.write_text(bird_config(spec, self.workdir / "bird.log"))
        answer = self.birdc("configure")
        if "Reconfigured" not in answer and "Reconfiguration in progress" not in answer:
            raise RuntimeError(f"BIRD did not take {config}: {answer.strip()}")
        self.spec = spec

    def _ready(self) -> bool:
        assert self.daemon is not None
        self.daemon.check_running()
        return self.socket.exists() and "BIRD" in self.birdc("show status")

    def birdc(self, command: str) -> str:
        return netns.run(["birdc", "-s", str(self.socket), command], timeout=10)

    def sessions(self) -> dict[str, str]:
        by_name = {n.name: n.address for n in self.spec.neighbors}
        states: dict[str, str] = {}
        for line in self.birdc("show protocols").splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[0] in by_name and fields[1] == "BGP":
                states[by_name[fields[0]]] = fields[5]
        return states

    def rib_next_hops(self, prefix: str) -> set[str]:
        output = self.birdc(f"show route {prefix}")
        return set(re.findall(r"via (\S+) on ", output))

    def bfd_sessions(self) -> dict[str, str]:
        """Neighbour address -> BFD state ("Up", "Down", "Init") from `show bfd sessions`."""
        states = {}
        for line in self.birdc("show bfd sessions").splitlines():
            fields = line.split()
            # IP address, Interface, State, Since, Interval, Timeout
            if len(fields) >= 3 and fields[2] in ("Up", "Down", "Init", "AdminDown"):
                states[fields[0]] = fields[2]
        return states

    def last_down_reason(self, address: str) -> str:
        """Why the session to `address` last went down (`show protocols all`'s Last error)."""
        name = next(n.name for n in self.spec.neighbors if n.address == address)
        found = re.search(r"Last error:\s*(.+)", self.birdc(f"show protocols all {name}"))
        return found.group(1).strip() if found else ""

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()


# --- FRR ---------------------------------------------------------------------------------------


def frr_bgpd_config(spec: RouterSpec, log: Path) -> str:
    """One address family per IP version the sessions carry; each neighbour active in the
    families of its `versions` only (an IPv4 neighbour in ipv6 unicast too: MP-BGP)."""
    lines = [
        "frr defaults traditional",
        f"log file {log}",
        "!",
    ]
    for index, pool in enumerate(_pools_of(spec, 4)):
        lines.append(f"ip prefix-list EIP-POOLS seq {5 * (index + 1)} permit {pool} ge 32")
    for index, pool in enumerate(_pools_of(spec, 6)):
        lines.append(f"ipv6 prefix-list EIP-POOLS6 seq {5 * (index + 1)} permit {pool} ge 128")
    lines += [
        "route-map EIP-POOLS-IN permit 10",
        " match ip address prefix-list EIP-POOLS",
    ]
    if _carries(spec, 6):
        lines += [
            "route-map EIP-POOLS6-IN permit 10",
            " match ipv6 address prefix-list EIP-POOLS6",
        ]
    lines += [
        "route-map NOTHING-OUT deny 10",
        "!",
        f"router bgp {spec.asn}",
        f" bgp router-id {spec.router_id}",
        " bgp bestpath as-path multipath-relax",
        " timers bgp 3 9",
    ]
    if spec.stalepath_time:
        lines.append(f" bgp graceful-restart stalepath-time {spec.stalepath_time}")
    for n in spec.neighbors:
        lines += [
            f" neighbor {n.address} remote-as {n.asn}",
            f" neighbor {n.address} timers connect 1",
        ]
        if n.password:
            lines.append(f" neighbor {n.address} password {n.password}")
        if n.port != 179:
            lines.append(f" neighbor {n.address} port {n.port}")
        if spec.bfd:
            lines.append(f" neighbor {n.address} bfd profile {FRR_BFD_PROFILE}")
    lines += _frr_address_family(spec, 4)
    if _carries(spec, 6):
        lines += _frr_address_family(spec, 6)
    lines.append("!")
    return "\n".join(lines) + "\n"


def _frr_address_family(spec: RouterSpec, version: int) -> list[str]:
    suffix = "" if version == 4 else "6"
    lines = [
        f" address-family ipv{version} unicast",
        f"  maximum-paths {spec.max_paths}",
        f"  maximum-paths ibgp {spec.max_paths}",  # the same ECMP when the nodes share its AS
    ]
    for n in spec.neighbors:
        if version not in n.versions:
            if version == 4:  # `frr defaults traditional` activates every neighbour here
                lines.append(f"  no neighbor {n.address} activate")
            continue
        if version == 6:
            lines.append(f"  neighbor {n.address} activate")
        lines += [
            f"  neighbor {n.address} route-map EIP-POOLS{suffix}-IN in",
            f"  neighbor {n.address} route-map NOTHING-OUT out",
        ]
        if spec.add_paths_rx:
            lines.append(f"  neighbor {n.address} addpath-rx-paths-limit {spec.max_paths}")
    return [*lines, " exit-address-family"]


FRR_BFD_PROFILE = "porter"


def frr_bfdd_config(bfd: BfdTimers, log: Path) -> str:
    return (
        f"log file {log}\n"
        "bfd\n"
        f" profile {FRR_BFD_PROFILE}\n"
        f"  transmit-interval {bfd.transmit_ms}\n"
        f"  receive-interval {bfd.receive_ms}\n"
        f"  detect-multiplier {bfd.multiplier}\n"
        " !\n"
        "!\n"
    )


FRR_RUN_ROOT = Path("/run/porter-lab")


@dataclass
class Frr:
    """zebra + bgpd. They drop privileges to the `frr` user (FRR insists on its vty group), so
    their config, sockets and logs live under FRR_RUN_ROOT/<netns>/, which `frr` can reach,
    rather than in a test's temporary directory, which is private to root."""

    netns: str
    spec: RouterSpec
    workdir: Path = field(init=False)
    daemons: list[Daemon] = field(default_factory=list)
    # bgpd.conf to start with instead of the one rendered from `spec` (e.g. no `router bgp` at
    # all, for a test that configures bgpd itself through vtysh)
    bgpd_config: str | None = None
    # False: zebra installs plain (multipath) routes instead of kernel nexthop objects, so a
    # netlink reader (porter_lab.fib) sees each route's gateways in the route message itself.
    kernel_nexthop_groups: bool = True
    # True: bfdd runs too (as it does when spec.bfd is set), its control socket in `workdir`
    bfdd: bool = False

    def __post_init__(self) -> None:
        self.workdir = FRR_RUN_ROOT / self.netns / "frr"

    def start(self) -> Frr:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for directory in (FRR_RUN_ROOT, self.workdir.parent, self.workdir):
            directory.chmod(0o755)
        shutil.chown(self.workdir, "frr", "frr")
        zserv = self.workdir / "zserv.api"
        zebra_conf = f"log file {self.workdir / 'zebra.log'}\n"
        if not self.kernel_nexthop_groups:
            zebra_conf += "no zebra nexthop kernel enable\n"
        (self.workdir / "zebra.conf").write_text(zebra_conf)
        (self.workdir / "bgpd.conf").write_text(
            frr_bgpd_config(self.spec, self.workdir / "bgpd.log")
            if self.bgpd_config is None
            else self.bgpd_config
        )
        # Without neighbours bgpd answers "% No BGP neighbors found" (or no BGP instance).
        answer = "BGP router" if self.bgpd_config is None else "BGP"
        zebra = self._start_daemon("zebra")
        wait_for(lambda: zebra.check_running() and zserv.exists(), 10, "zebra's zserv socket")
        if self.spec.bfd is not None or self.bfdd:
            (self.workdir / "bfdd.conf").write_text(
                frr_bfdd_config(self.spec.bfd, self.workdir / "bfdd.log")
                if self.spec.bfd is not None
                else f"log file {self.workdir / 'bfdd.log'}\n"
            )
            bfdd = self._start_daemon("bfdd", "--bfdctl", str(self.workdir / "bfdd.sock"))
            wait_for(
                lambda: bfdd.check_running() and "BFD" in self.vtysh("show bfd peers"),
                15,
                "bfdd answering vtysh",
            )
        bgpd = self._start_daemon("bgpd")
        wait_for(
            lambda: bgpd.check_running() and answer in self.vtysh("show bgp summary"),
            15,
            "bgpd answering vtysh",
        )
        return self

    def _start_daemon(self, name: str, *extra: str) -> Daemon:
        """Start one FRR daemon with private config, pid, vty and zserv paths in `workdir`."""
        files = self.workdir
        daemon = Daemon(
            name,
            [
                f"/usr/lib/frr/{name}",
                "-u",
                "frr",
                "-g",
                "frr",
                "--vty_socket",
                str(files),
                "-P",
                "0",
                "-z",
                str(files / "zserv.api"),
                "-f",
                str(files / f"{name}.conf"),
                "-i",
                str(files / f"{name}.pid"),
                *extra,
            ],
            files / f"{name}.stdout",
            netns=self.netns,
        ).start()
        self.daemons.append(daemon)
        return daemon

    def processes(self) -> list[Daemon]:
        return list(self.daemons)

    def vtysh(self, command: str) -> str:
        return netns.run(["vtysh", "--vty_socket", str(self.workdir), "-c", command], timeout=10)

    def vtysh_json(self, command: str) -> dict:  # type: ignore[type-arg]
        return dict(json.loads(self.vtysh(f"{command} json") or "{}"))

    def sessions(self) -> dict[str, str]:
        """Neighbour address -> session state, over every address family it is active in."""
        states: dict[str, str] = {}
        for version in (4, 6):
            if version == 6 and not _carries(self.spec, 6):
                continue
            summary = self.vtysh_json(f"show bgp ipv{version} unicast summary")
            for address, peer in summary.get("peers", {}).items():
                states[address] = peer.get("state", "")
        return states

    def rib_next_hops(self, prefix: str) -> set[str]:
        family = "ipv6" if ":" in prefix else "ipv4"
        route = self.vtysh_json(f"show bgp {family} unicast {prefix}")
        return {
            hop["ip"]
            for path in route.get("paths", [])
            for hop in path.get("nexthops", [])
            if "ip" in hop
        }

    def bfd_sessions(self) -> dict[str, str]:
        """Neighbour address -> BFD status ("up", "down", "init") from `show bfd peers`."""
        peers = json.loads(self.vtysh("show bfd peers json") or "[]")
        return {str(p.get("peer")): str(p.get("status", "")) for p in peers}

    def last_down_reason(self, address: str) -> str:
        """Why the session to `address` last went down: bgpd's `lastResetDueTo`, and the
        NOTIFICATION's reason when one was sent or received (`Cease/BFD Down`)."""
        neighbor = self.vtysh_json(f"show bgp neighbors {address}").get(address, {})
        reasons = [
            str(neighbor.get(key) or "") for key in ("lastResetDueTo", "lastNotificationReason")
        ]
        return ": ".join(reason for reason in reasons if reason)

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()
        shutil.rmtree(self.workdir.parent, ignore_errors=True)
