"""porter-lb beside another BGP speaker on the nodes (Calico's BIRD holds port 179 there; a
BIRD stands in for it in each node's namespace): the BgpConf moves gobgpd's listener to
port 1790, the BgpPeer makes the speakers passive, and the router, rendered with the
neighbour's port (the lab's BIRD and FRR configs), connects to each node on 1790. Real
TCP from the client then reaches the nodes that serve each Service.

Rules: port 179 on every node belongs to the stand-in (its BIRD is running), 1790 to gobgpd;
every router session is Established; the router's FIB holds exactly the desired routes;
connections to an EIP are answered only by nodes with an endpoint of its Service
(externalTrafficPolicy Local).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import netns, objects
from porter_lab.fib import FibLog
from porter_lab.processes import Daemon
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.routers import established
from porter_lab.traffic import count_answers, serve_node_name, wait_answered

SERVICES = 6
PORT = 1790

STAND_IN = """router id {address};
protocol device {{ }}
protocol bgp calico {{ local as 64512; neighbor 198.51.100.254 as 64512; passive on; }}
"""


@pytest.fixture(params=["bird", "frr"])
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[crash.CrashBed]:
    daemons: list[Daemon] = []

    def before_start(made: crash.CrashBed) -> None:
        made.api.merge_patch(f"{objects.BGP_CONFS}/default", {"spec": {"listenPort": PORT}})
        made.api.merge_patch(
            f"{objects.BGP_PEERS}/tor", {"spec": {"transport": {"passiveMode": True}}}
        )
        for node in made.topology.nodes:
            config = tmp_path / f"calico-{node.name}.conf"
            config.write_text(STAND_IN.format(address=node.address))
            socket = tmp_path / f"calico-{node.name}.ctl"
            argv = ["bird", "-f", "-c", str(config), "-s", str(socket)]
            log = tmp_path / f"calico-{node.name}.log"
            daemons.append(Daemon(f"calico-{node.name}", argv, log, netns=node.netns).start())
            daemons.append(serve_node_name(node.netns, node.name, tmp_path))

    try:
        with crash.crash_bed(
            "node",
            request.param,
            workdir=tmp_path,
            neighbor_port=PORT,
            agent_args=("--host-rules", "local"),
            before_start=before_start,
        ) as made:
            made.add_services(SERVICES)
            yield made
            for daemon in daemons:
                daemon.check_running()  # the stand-ins kept port 179 all along
    finally:
        for daemon in daemons:
            daemon.stop()


def listeners(netns_name: str) -> str:
    return netns.run(["ss", "-Hltnp"], netns=netns_name)


def test_porter_lb_beside_a_speaker_on_port_179(bed: crash.CrashBed) -> None:
    # The speakers start BGP when they have read the BgpConf: wait for the sessions first.
    established(bed.router, 60)
    for node in bed.topology.nodes:
        sockets = listeners(node.netns)
        on_179 = [line for line in sockets.splitlines() if ":179 " in line]
        on_1790 = [line for line in sockets.splitlines() if f":{PORT} " in line]
        assert on_179 and all("bird" in line for line in on_179), sockets
        assert on_1790 and all("gobgpd" in line for line in on_1790), sockets
    fib = FibLog(bed.topology.router_ns, crash.POOL)
    try:
        ips = bed.converged(fib, 120)
    finally:
        fib.close()
    names = {node.name: node for node in bed.topology.nodes}
    port = 30000
    for service, serving in sorted(bed.services.items()):
        wait_answered(bed.topology, ips[service])
        answers = count_answers(bed.topology, ips[service], port, 20, budget=20, timeout=60)
        port += 20
        assert set(answers) <= set(serving), (service, answers)
        assert set(serving) <= set(names)
        assert sum(answers.values()) == 20
