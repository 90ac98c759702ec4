"""The bed, end to end: CRDs on a real API server, gobgpd announcing an EIP to a real router,
the router's kernel routing it by ECMP, and real HTTP from the client reaching the node."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.dynamic.exceptions import ApiException

from porter_lab import netns
from porter_lab.kube import apply, delete, load_manifests
from porter_lab.processes import Daemon
from porter_lab.routers import Router, established
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_ASN, ROUTER_ASN, Topology
from porter_lab.waiting import wait_for
from porter_lb.routing.routes import Route

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EIP = "203.0.113.10"


def test_crds_accept_porter_and_openelb_objects(
    api_client: client.ApiClient, crds: list[str]
) -> None:
    assert sorted(crds) == [
        "bgpconfs.network.kubesphere.io",
        "bgppeers.network.kubesphere.io",
        "eips.network.kubesphere.io",
    ]
    objects = load_manifests(FIXTURES / "porter-openelb-v1alpha2.yaml")
    try:
        stored = apply(api_client, objects)
    finally:
        # The control plane is shared by the whole session: leave no pools or peers behind.
        delete(api_client, objects)

    assert [(s.kind, s.metadata.name) for s in stored] == [
        (o["kind"], o["metadata"]["name"]) for o in objects
    ]
    assert all(s.apiVersion == "network.kubesphere.io/v1alpha2" for s in stored)
    # Nothing the users wrote was pruned by the schema.
    for sent, kept in zip(objects, stored, strict=True):
        assert kept.to_dict()["spec"] == sent["spec"] | _defaults(sent)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (
            {"kind": "Eip", "spec": {"address": "203.0.113.0/24", "protocol": "ospf"}},
            "spec.protocol",
        ),
        ({"kind": "Eip", "spec": {"protocol": "bgp"}}, "spec.address"),
        ({"kind": "BgpConf", "spec": {"as": 4294967296}}, "spec.as"),
        ({"kind": "BgpPeer", "spec": {"conf": {"peerAs": 0}}}, "spec.conf.peerAs"),
    ],
)
def test_crds_reject_invalid_objects_naming_the_field(
    api_client: client.ApiClient,
    crds: list[str],
    obj: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    body = {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "metadata": {"name": "bed-invalid"},
        **obj,
    }
    with pytest.raises(ApiException) as rejected:
        apply(api_client, [body])
    assert rejected.value.status == 422
    assert field in rejected.value.body


def _defaults(obj: dict) -> dict:  # type: ignore[type-arg]
    """Fields the CRD schemas default when a user leaves them out."""
    if obj["kind"] == "Eip" and "protocol" not in obj["spec"]:
        return {"protocol": "bgp"}
    return {}


def serve_http(node_netns: str, address: str, body: str, workdir: Path) -> Daemon:
    """An HTTP listener on the node, bound to the EIP, answering with `body`."""
    site = workdir / f"site-{node_netns}"
    site.mkdir(parents=True)
    (site / "index.html").write_text(body)
    return Daemon(
        f"http-{node_netns}",
        [sys.executable, "-m", "http.server", "--bind", address, "--directory", str(site), "80"],
        workdir / f"http-{node_netns}.log",
        netns=node_netns,
    ).start()


def http_get_from(client_netns: str, url: str) -> str:
    script = (
        "import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode(), end='')\n"
    )
    return netns.run([sys.executable, "-c", script, url], netns=client_netns, timeout=10)


def test_gobgpd_route_reaches_router_fib_and_http_reaches_node(
    topology: Topology,
    router: Router,
    start_gobgpd: Callable[[str], Gobgpd],
    tmp_path: Path,
) -> None:
    speakers = []
    for node in topology.nodes:
        speaker = start_gobgpd(node.netns).client
        assert speaker is not None
        speaker.start(asn=NODE_ASN, router_id=node.address, listen_port=179)
        speaker.add_peer(topology.router_address, ROUTER_ASN)
        speakers.append(speaker)
    established(router)
    for speaker in speakers:
        assert [p.session_state for p in speaker.peers()] == ["established"]

    # Only node1 announces the EIP (next-hop self) and serves it.
    node1 = topology.nodes[0]
    netns.address(node1.netns, "lo", f"{EIP}/32")
    server = serve_http(node1.netns, EIP, f"hello from {node1.name}", tmp_path)
    speakers[0].add_route(Route(f"{EIP}/32", "0.0.0.0"))
    assert speakers[0].routes() == [Route(f"{EIP}/32", "0.0.0.0")]

    wait_for(
        lambda: netns.next_hops(topology.router_ns, f"{EIP}/32") == {node1.address},
        10,
        f"{EIP}/32 via {node1.address} in the router's kernel FIB",
    )
    assert router.rib_next_hops(f"{EIP}/32") == {node1.address}

    body = wait_for(
        lambda: http_get_from(topology.client_ns, f"http://{EIP}/"),
        10,
        "HTTP answer from the EIP",
        interval=0.2,
    )
    assert body == f"hello from {node1.name}"
    server.check_running()

    # Both nodes announce: the router's kernel holds one ECMP route with both next hops.
    speakers[1].add_route(Route(f"{EIP}/32", "0.0.0.0"))
    both = {n.address for n in topology.nodes}
    wait_for(
        lambda: netns.next_hops(topology.router_ns, f"{EIP}/32") == both,
        10,
        f"ECMP route {EIP}/32 via {sorted(both)}",
    )

    # Withdrawing every announcement removes the route from the FIB: nothing leaks.
    for speaker in speakers:
        speaker.delete_route(Route(f"{EIP}/32", "0.0.0.0"))
    wait_for(
        lambda: not netns.next_hops(topology.router_ns, f"{EIP}/32"),
        10,
        f"{EIP}/32 gone from the router's kernel FIB",
    )
    server.stop()
