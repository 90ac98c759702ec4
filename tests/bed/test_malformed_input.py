"""Malformed Eips, BgpConfs, BgpPeers and Services against the real API server, with the
allocation controller and the central speaker (over a real gobgpd) running in-process: what
the CRD schema and its CEL rules can refuse is refused with a 422 naming the field; everything
else is reported (the Eip's Ready condition, Warning Events on the Service, the BgpConf or the
BgpPeer) while the controller and the speaker keep running and keep serving good objects,
without logging an error."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from porter_lab import objects
from porter_lab.speakers import CentralSpeaker, Gobgpd
from porter_lab.topology import NODE_ASN, ROUTER_ASN, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.allocation.controller import AllocationController
from porter_lb.kube.api import KubeAPI, KubeError
from porter_lb.kube.events import EventRecorder
from porter_lb.kube.informers import Informers
from porter_lb.model.resources import GROUP_PATH, Obj

REQUESTED_IP = "eip.openelb.kubesphere.io/v1alpha1"
REQUESTED_POOL = "eip.openelb.kubesphere.io/v1alpha2"
PORTER_REQUESTED_IP = "eip.porter.kubesphere.io/v1alpha1"
SHARING = "lb.porter-lb.io/allow-shared-ip"
API_VERSION = "network.kubesphere.io/v1alpha2"


class Bed:
    """One namespace, the cluster-scoped objects made for it, and a running controller."""

    def __init__(self, api: KubeAPI) -> None:
        self.api = api
        # 8 hex digits, not run_id()'s 4: a namespace of an earlier test of this module may
        # still be terminating, and 4 collided once in CI (409 "object is being deleted").
        self.namespace = f"plb-bad-{secrets.token_hex(4)}"
        self.made: list[str] = []  # paths of cluster-scoped objects, deleted afterwards
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.informers: Informers | None = None
        self.controller: AllocationController | None = None
        api.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}},
        )

    def start_controller(self) -> None:
        self.informers = Informers(self.api, ["Service", "Namespace", "Eip"], watch_timeout=30)
        self.controller = AllocationController(
            self.api, self.informers, EventRecorder(self.api, host="t")
        )
        self.controller.register()
        self.informers.start()
        assert self.informers.wait_synced(10)
        self.thread = threading.Thread(target=self.controller.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def create(self, plural: str, name: str, spec: dict[str, Any], **metadata: Any) -> Obj:
        kind = {"eips": "Eip", "bgpconfs": "BgpConf", "bgppeers": "BgpPeer"}[plural]
        path = f"{GROUP_PATH}/{plural}"
        made = self.api.create(
            path,
            {
                "apiVersion": API_VERSION,
                "kind": kind,
                "metadata": {"name": name, **metadata},
                "spec": spec,
            },
        )
        self.made.append(f"{path}/{name}")
        return made

    def eip(self, suffix: str, address: str, *, default: bool = False) -> str:
        name = f"{self.namespace}-{suffix}"
        annotations = {"eip.openelb.kubesphere.io/is-default-eip": "true"} if default else {}
        spec = {"address": address, "protocol": "bgp"}
        self.create("eips", name, spec, annotations=annotations)
        return name

    def service(
        self, name: str, annotations: dict[str, str] | None = None, port: int = 80, **spec: Any
    ) -> Obj:
        return self.api.create(
            f"/api/v1/namespaces/{self.namespace}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "annotations": {"lb.kubesphere.io/v1alpha1": "porter", **(annotations or {})},
                },
                "spec": {
                    "type": "LoadBalancer",
                    "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
                    "selector": {"app": name},
                    **spec,
                },
            },
        )

    def ips(self, name: str) -> list[str]:
        service = self.api.get(f"/api/v1/namespaces/{self.namespace}/services/{name}")
        ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return [i["ip"] for i in ingress]

    def warning(self, name: str, reason: str) -> str:
        """The message of the Warning Event `reason` on Service `name`, once there is one."""

        def probe() -> str | None:
            events = self.api.get(
                f"/api/v1/namespaces/{self.namespace}/events"
                f"?fieldSelector=involvedObject.name%3D{name}"
            ).get("items", [])
            return next(
                (e["message"] for e in events if e["type"] == "Warning" and e["reason"] == reason),
                None,
            )

        return wait_for(probe, 15, f"a Warning Event {reason} on Service {name}")

    def ready_condition(self, eip: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.api.get(f"{GROUP_PATH}/eips/{eip}").get("status") or {}
            return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)

        return wait_for(probe, 15, f"Eip {eip} to have a Ready condition")

    def cleanup(self) -> None:
        services = f"/api/v1/namespaces/{self.namespace}/services"
        for service in self.api.get(services).get("items", []):
            self.api.delete(f"{services}/{service['metadata']['name']}")
        if self.thread is not None:  # finalizers are released by the running controller
            wait_for(lambda: not self.api.get(services).get("items"), 20, "Services deleted")
        for path in self.made:
            try:
                self.api.delete(path)
            except KubeError as error:
                assert error.status == 404
        self.stop.set()
        if self.controller is not None:
            self.controller.stop()
        if self.thread is not None:
            self.thread.join(30)
            assert not self.thread.is_alive()
        if self.informers is not None:
            self.informers.stop()
        self.api.delete(f"/api/v1/namespaces/{self.namespace}")


@pytest.fixture
def bed(api_client: client.ApiClient, crds: list[str]) -> Iterator[Bed]:
    made = Bed(KubeAPI(api_client))
    try:
        yield made
    finally:
        made.cleanup()


# (plural, spec, what the 422 must name)
SCHEMA_REFUSED = [
    pytest.param("eips", {"address": "198.18.0.300"}, "spec.address", id="eip-not-an-address"),
    pytest.param("eips", {"address": "198.18.0.1/24"}, "host bits", id="eip-cidr-host-bits"),
    pytest.param(
        "eips", {"address": "198.18.0.9-198.18.0.1"}, "range start is after", id="eip-reversed"
    ),
    pytest.param(
        "eips", {"address": "198.18.0.1-2001:db8::1"}, "mixes IPv4 and IPv6", id="eip-mixed"
    ),
    pytest.param(
        "eips", {"address": "198.18.0.1", "protocol": "ospf"}, "spec.protocol", id="eip-protocol"
    ),
    pytest.param(
        "eips", {"address": "198.18.0.1", "protocol": "layer2"}, "spec.interface", id="eip-l2"
    ),
    pytest.param("eips", {}, "spec.address", id="eip-no-address"),
    pytest.param("bgpconfs", {"as": 0}, "spec.as", id="bgpconf-as-zero"),
    pytest.param("bgpconfs", {"as": 4294967296}, "spec.as", id="bgpconf-as-too-big"),
    pytest.param(
        "bgpconfs", {"as": 65001, "routerId": "2001:db8::1"}, "spec.routerId", id="bgpconf-rid"
    ),
    pytest.param(
        "bgpconfs",
        {"as": 65001, "listenAddresses": ["not-an-ip"]},
        "spec.listenAddresses",
        id="bgpconf-listen-address",
    ),
    pytest.param(
        "bgppeers",
        {"conf": {"peerAs": 0, "neighborAddress": "198.51.100.1"}},
        "spec.conf.peerAs",
        id="bgppeer-as-zero",
    ),
    pytest.param(
        "bgppeers",
        {"conf": {"peerAs": 65000, "neighborAddress": "198.51.100.300"}},
        "spec.conf.neighborAddress",
        id="bgppeer-bad-address",
    ),
    pytest.param(
        "bgppeers",
        {"conf": {"peerAs": 65000}},
        "spec.conf.neighborAddress",
        id="bgppeer-no-address",
    ),
    pytest.param(
        "bgppeers",
        {
            "conf": {
                "peerAs": 65000,
                "neighborAddress": "198.51.100.1",
                "authPassword": "x",
                "authPasswordSecretRef": {"name": "s", "key": "k"},
            }
        },
        "authPassword",
        id="bgppeer-two-passwords",
    ),
    pytest.param(
        "bgppeers",
        {
            "conf": {"peerAs": 65000, "neighborAddress": "198.51.100.1"},
            "nodeSelector": {"matchLabels": {"rack": "not a label value!"}},
        },
        "spec.nodeSelector.matchLabels",
        id="bgppeer-bad-selector",
    ),
]


@pytest.mark.parametrize(("plural", "spec", "named"), SCHEMA_REFUSED)
def test_the_api_server_refuses_what_the_schema_can(
    bed: Bed, plural: str, spec: dict[str, Any], named: str
) -> None:
    with pytest.raises(KubeError) as refused:
        bed.create(plural, f"{bed.namespace}-bad", spec)
    assert refused.value.status == 422, refused.value
    assert named in str(refused.value)


def test_the_controller_reports_bad_input_and_keeps_serving(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bed.start_controller()
    good = bed.eip("good", "198.18.7.0-198.18.7.7", default=True)
    overlap = bed.eip("overlap", "198.18.7.4/30")
    other = bed.eip("other", "198.18.8.0/30")

    # Overlapping pools: only the API server's webhook (fails open) and the controller see them.
    condition = wait_for(
        lambda: (c := bed.ready_condition(overlap))["reason"] == "Conflict" and c,
        15,
        f"Eip {overlap} refused as a Conflict",
    )
    assert condition["status"] == "False"
    assert good in condition["message"] and "spec.address" in condition["message"]
    assert wait_for(
        lambda: (c := bed.ready_condition(good))["status"] == "True" and c, 15, f"{good} Ready"
    )

    # Services the API server takes but porter-lb cannot serve: a Warning Event each.
    bed.service("bad-ip", {REQUESTED_IP: "198.18.7.300"})
    bed.service("two-v4", {REQUESTED_IP: "198.18.7.1,198.18.7.2"})
    bed.service("unknown-pool", {REQUESTED_POOL: "no-such-eip"})
    bed.service("outside", {REQUESTED_POOL: good, REQUESTED_IP: "198.18.8.1"})
    bed.service("nowhere", {REQUESTED_IP: "192.0.2.77"})
    bed.service("disagree", {REQUESTED_IP: "198.18.7.1", PORTER_REQUESTED_IP: "198.18.7.2"})
    bed.service("from-conflict", {REQUESTED_POOL: overlap})
    bed.service("share-a", {REQUESTED_IP: "198.18.7.3", SHARING: "k1"})
    assert wait_for(lambda: bed.ips("share-a"), 15, "share-a to get its IP") == ["198.18.7.3"]
    bed.service("share-unkeyed", {REQUESTED_IP: "198.18.7.3"}, port=81)
    bed.service("share-other-key", {REQUESTED_IP: "198.18.7.3", SHARING: "k2"}, port=82)
    bed.service("share-same-port", {REQUESTED_IP: "198.18.7.3", SHARING: "k1"})

    expected = {
        ("bad-ip", "InvalidService"): f"annotation {REQUESTED_IP} '198.18.7.300': not an IP",
        ("two-v4", "InvalidService"): "at most one address per IP family",
        ("unknown-pool", "PoolNotFound"): f"annotation {REQUESTED_POOL} 'no-such-eip'",
        ("outside", "IPNotInRequestedPool"): f"not in Eip '{good}'",
        ("nowhere", "IPNotInPool"): "'192.0.2.77': the address is in no Eip",
        ("disagree", "InvalidService"): f"conflicts with annotation {REQUESTED_IP}",
        ("from-conflict", "PoolNotFound"): (
            f"annotation {REQUESTED_POOL} '{overlap}': the Eip gives out no address (Conflict)"
        ),
        ("share-unkeyed", "IPInUse"): "held by",
        ("share-other-key", "SharingKeyMismatch"): "'k1', not 'k2'",
        ("share-same-port", "PortConflict"): "TCP/80",
    }
    for (name, reason), text in expected.items():
        message = bed.warning(name, reason)
        assert text in message, (name, message)
        assert f"{bed.namespace}/{name}" in message, message
        assert bed.ips(name) == []

    # The controller is still running and still serves good objects.
    assert bed.thread is not None and bed.thread.is_alive()
    bed.service("fine")
    assert wait_for(lambda: bed.ips("fine"), 15, "a good Service to get its IP") == ["198.18.7.0"]
    bed.service("fine-other", {REQUESTED_POOL: other})
    assert wait_for(lambda: bed.ips("fine-other"), 15, "fine-other's IP") == ["198.18.8.0"]
    bed.service("share-b", {REQUESTED_IP: "198.18.7.3", SHARING: "k1"}, port=443)
    assert wait_for(lambda: bed.ips("share-b"), 15, "share-b to share") == ["198.18.7.3"]

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


# --- the speaker -----------------------------------------------------------------------------

SECRET_NAMESPACE = "porter-lb-system"


def cluster_warning(api: KubeAPI, kind: str, name: str, reason: str) -> str:
    """The message of a Warning Event `reason` on cluster-scoped object `name`, once there is
    one (Events about cluster-scoped objects live in namespace default)."""

    def probe() -> str | None:
        events = api.get("/api/v1/namespaces/default/events")["items"]
        return next(
            (
                e["message"]
                for e in events
                if e["involvedObject"].get("name") == name
                and e["involvedObject"].get("kind") == kind
                and e["type"] == "Warning"
                and e["reason"] == reason
            ),
            None,
        )

    return wait_for(probe, 15, f"a Warning Event {reason} on {kind} {name}")


def test_the_speaker_reports_bad_bgp_objects_and_keeps_serving(
    api_client: client.ApiClient,
    crds: list[str],
    topology: Topology,
    start_gobgpd: Callable[[str], Gobgpd],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    api = KubeAPI(api_client)
    tag = f"plb-bad-{run_id()}"
    made: list[str] = []

    def create(collection: str, body: Obj) -> None:
        api.create(collection, body)
        made.append(f"{collection}/{body['metadata']['name']}")

    try:
        api.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SECRET_NAMESPACE}},
        )
    except KubeError as error:
        assert error.status == 409
    gobgpd = start_gobgpd(topology.nodes[0].netns)
    # A central speaker with no router ID to fall back on: the BgpConf must give one.
    create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN))
    create(
        f"/api/v1/namespaces/{SECRET_NAMESPACE}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{tag}-keyless"},
            "stringData": {"other": "x"},
        },
    )
    speaker = CentralSpeaker(api, gobgpd.target, "bed-malformed", SECRET_NAMESPACE).start()
    try:
        message = cluster_warning(api, "BgpConf", "default", "InvalidBgpConf")
        assert "spec.routerId" in message and "is needed" in message, message
        api.merge_patch(
            f"{objects.BGP_CONFS}/default", {"spec": {"routerId": topology.nodes[0].address}}
        )

        def peer(name: str, neighbor: str, **conf: Any) -> str:
            body = objects.bgp_peer(f"{tag}-{name}", neighbor, peer_as=ROUTER_ASN)
            body["spec"]["conf"].update(conf)
            create(objects.BGP_PEERS, body)
            return f"{tag}-{name}"

        bad = {
            peer("no-secret", "198.51.100.201", authPasswordSecretRef={"name": f"{tag}-missing"}): (
                "InvalidBgpPeer",
                "Secret not found",
            ),
            peer(
                "no-key",
                "198.51.100.202",
                authPasswordSecretRef={"name": f"{tag}-keyless", "key": "password"},
            ): ("InvalidBgpPeer", "has no such key"),
            peer(
                "elsewhere",
                "198.51.100.203",
                authPasswordSecretRef={"name": "s", "namespace": "kube-system"},
            ): ("InvalidBgpPeer", "only in its own namespace"),
        }
        good = peer("a-good", "198.51.100.204")
        bad[peer("b-same-neighbor", "198.51.100.204")] = ("DuplicateNeighbor", good)
        for name, (reason, text) in bad.items():
            message = cluster_warning(api, "BgpPeer", name, reason)
            assert text in message and name in message, message

        # The speaker still runs and still serves the good BgpPeer: it has its session entry.
        wait_for(
            lambda: (
                (api.get(f"{objects.BGP_PEERS}/{good}").get("status") or {})
                .get("nodesPeerStatus", {})
                .get("central")
            ),
            15,
            f"the central speaker to report BgpPeer {good}",
        )
        assert speaker.running()
        for name in bad:
            status = api.get(f"{objects.BGP_PEERS}/{name}").get("status") or {}
            assert "central" not in (status.get("nodesPeerStatus") or {}), name
    finally:
        speaker.stop()
        for path in reversed(made):
            objects.delete_if_present(api, path)
    assert not speaker.running(), "the central speaker did not stop"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
