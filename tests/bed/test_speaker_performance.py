"""The speaker at scale, on real daemons (BIRD; per-node mode): it gets there, and stays put.

10,000 Services x 50 Nodes held in in-memory caches (building them through the API server
takes minutes here), a Speaker in this process, real gobgpd and BIRD: every route reaches the
router's kernel FIB, and a second full reconcile changes nothing. How FAST is measured in
bench/ (cold_start.py, endpointslice_fib.py), not asserted here.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from porter_lab.memory import MemoryCaches, MemoryKube
from porter_lab.processes import in_netns
from porter_lab.routers import Bird, Neighbor, Router, RouterSpec
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_ASN, ROUTER_ASN, Topology
from porter_lab.waiting import wait_for
from porter_lb.model.resources import LOAD_BALANCER_CLASS, SERVICE_NAME_LABEL, Obj
from porter_lb.routing.gobgp import GoBGP
from porter_lb.routing.speaker import Speaker

# --- scale ----------------------------------------------------------------------------------


def scale_objects(topology: Topology, services: int, nodes: int) -> dict[str, list[Obj]]:
    node_objects = [
        {
            "metadata": {"name": f"node{i}", "labels": {"rack": "r1"}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": f"10.1.{i // 250}.{i % 250}"}],
            },
        }
        for i in range(2, nodes + 1)
    ]
    node_objects.append(
        {
            "metadata": {"name": "node1", "labels": {"rack": "r1"}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": topology.nodes[0].address}],
            },
        }
    )
    service_objects: list[Obj] = []
    slices: list[Obj] = []
    for i in range(services):
        local = i % 2 == 1
        name = f"svc{i}"
        service_objects.append(
            {
                "metadata": {"name": name, "namespace": "scale"},
                "spec": {
                    "type": "LoadBalancer",
                    "loadBalancerClass": LOAD_BALANCER_CLASS,
                    "externalTrafficPolicy": "Local" if local else "Cluster",
                },
                "status": {"loadBalancer": {"ingress": [{"ip": f"100.64.{i // 250}.{i % 250}"}]}},
            }
        )
        if local:  # endpoints on node1 and two others
            slices.append(
                {
                    "metadata": {
                        "name": f"{name}-x",
                        "namespace": "scale",
                        "labels": {SERVICE_NAME_LABEL: name},
                    },
                    "endpoints": [
                        {"nodeName": f"node{n}", "conditions": {"ready": True}}
                        for n in (1, 2 + i % (nodes - 1), 2 + (i * 7) % (nodes - 1))
                    ],
                }
            )
    return {
        "Service": service_objects,
        "EndpointSlice": slices,
        "Node": node_objects,
        "Eip": [{"metadata": {"name": "scale"}, "spec": {"address": "100.64.0.0/16"}}],
        "BgpConf": [{"metadata": {"name": "default"}, "spec": {"as": 65001}}],
        "BgpPeer": [
            {
                "metadata": {"name": "tor"},
                "spec": {
                    "conf": {"neighborAddress": topology.router_address, "peerAs": 65000},
                    "timers": {"config": {"holdTime": "9", "connectRetry": "1"}},
                },
            }
        ],
        "Secret": [],
    }


def fib_size(router_ns: str) -> int:
    out = subprocess.run(
        in_netns(router_ns, ["ip", "-4", "route", "show", "proto", "bird"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.count("\n")


def test_10k_services_50_nodes_reach_bird_fib_and_resync_changes_nothing(
    topology: Topology,
    scale_router: Router,
    start_gobgpd: Callable[[str], Gobgpd],
) -> None:
    services = 10_000
    informers = MemoryCaches(scale_objects(topology, services, nodes=50))
    gobgpd = start_gobgpd(topology.nodes[0].netns)
    client = GoBGP(gobgpd.target)
    speaker = Speaker(
        informers,
        client,
        MemoryKube(),  # the BgpPeer status writes: the scale test has no API server
        mode="node",
        node_name="node1",
    )
    stop = threading.Event()
    thread = threading.Thread(target=speaker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: fib_size(topology.router_ns) >= services, 60, "10,000 routes", 0.05)
        assert len(client.local_routes()) == services
        # Idle: a second full reconcile changes nothing in gobgpd.
        before = client.local_routes()
        speaker.resync()
        wait_for(lambda: speaker.reconciles >= 2, 10, "a second full reconcile")
        assert client.local_routes() == before
    finally:
        stop.set()
        thread.join(10)
        client.close()


@pytest.fixture
def scale_router(topology: Topology, tmp_path: Path) -> Iterator[Router]:
    """BIRD peering with node1 only, accepting the scale test's pool."""
    node = topology.nodes[0]
    spec = RouterSpec(
        asn=ROUTER_ASN,
        router_id=topology.router_address,
        neighbors=(Neighbor(node.address, NODE_ASN, node.name),),
        pools=("100.64.0.0/16",),
    )
    router = Bird(topology.router_ns, spec, tmp_path / "bird").start()
    try:
        yield router
    finally:
        router.stop()
