"""Fixtures for porter-lb's tests: a real control plane, namespaces, gobgpd, BIRD and FRR.

Components come from the bed in lab/ (package porter_lab). Nothing here skips when a component
is missing: a missing binary or daemon is a failure, with the message saying what to install.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from porter_lab import netns
from porter_lab.controlplane import ControlPlane
from porter_lab.gobgp import gobgpd_binary
from porter_lab.paths import CRD_DIR
from porter_lab.routers import Bird, Frr, Neighbor, Router, RouterSpec
from porter_lab.speakers import Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, PREFIX_ROOT, ROUTER_ASN, Topology, run_id

REQUIRED_COMMANDS = (
    "ip",
    "bird",
    "birdc",
    "vtysh",
    "/usr/lib/frr/zebra",
    "/usr/lib/frr/bgpd",
)


@pytest.fixture(scope="session")
def bed_prerequisites() -> None:
    """Root and the daemons: fail (never skip) with what to install."""
    if os.geteuid() != 0:
        pytest.fail("the test bed needs root (network namespaces, routing daemons)")
    missing = [c for c in REQUIRED_COMMANDS if not shutil.which(c)]
    if missing:
        pytest.fail(f"missing {missing}: run scripts/setup.sh (apt: bird2 frr iproute2)")
    try:
        gobgpd_binary()  # the pinned gobgpd, built into the cache by scripts/setup.sh
    except FileNotFoundError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def session_run() -> Iterator[str]:
    run = run_id()
    yield run
    # Whatever a failed test left behind, remove it: every namespace of this run.
    netns.remove_all(f"{PREFIX_ROOT}{run}")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture(scope="session")
def crds(api_client: client.ApiClient) -> list[str]:
    """porter-lb's CRDs installed and Established on the real API server."""
    from porter_lab.kube import apply_crds

    return apply_crds(api_client, sorted(CRD_DIR.glob("*.yaml")))


@pytest.fixture
def topology(bed_prerequisites: None, session_run: str) -> Iterator[Topology]:
    topo = Topology(f"{session_run}{run_id()[:2]}", node_count=2)
    try:
        yield topo.create()
    finally:
        topo.destroy()


def router_spec(topo: Topology) -> RouterSpec:
    return RouterSpec(
        asn=ROUTER_ASN,
        router_id=topo.router_address,
        neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in topo.nodes),
        pools=(EIP_POOL,),
    )


@pytest.fixture(params=["bird", "frr"])
def router(request: pytest.FixtureRequest, topology: Topology, tmp_path: Path) -> Iterator[Router]:
    spec = router_spec(topology)
    instance: Router = (
        Bird(topology.router_ns, spec, tmp_path / "bird")
        if request.param == "bird"
        else Frr(topology.router_ns, spec)
    )
    try:
        yield instance.start()
    finally:
        instance.stop()


@pytest.fixture
def start_gobgpd(tmp_path: Path) -> Iterator[Callable[[str], Gobgpd]]:
    started: list[Gobgpd] = []

    def start(netns_name: str) -> Gobgpd:
        speaker = Gobgpd(netns_name, tmp_path / f"gobgpd-{netns_name}")
        speaker.start()
        started.append(speaker)
        return speaker

    yield start
    for speaker in started:
        speaker.stop()
