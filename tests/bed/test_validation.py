"""Validation on the real API server: the CRDs' CEL rules, and the webhook as a real process.

Every object here is either created with dryRun=All (validated and admitted, never stored) or
labelled and deleted afterwards; the webhook configuration is removed after each test. The
control plane is shared by the whole session, so nothing is left behind for later tests.
"""

from __future__ import annotations

import base64
import ssl
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from porter_lab.controlplane import ControlPlane, free_port
from porter_lab.kube import load_manifests
from porter_lab.processes import Daemon
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI, KubeError
from porter_lb.model.addresses import AddressPoolError, parse_address_pool
from porter_lb.model.validation import pool_conflicts
from porter_lb.webhook.admission import generate_certificates

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
WEBHOOK_MANIFEST = ROOT / "ansible_collections/porter/lb/roles/controller/files/webhook.yaml"
GROUP = "/apis/network.kubesphere.io/v1alpha2"
PLURALS = {"Eip": "eips", "BgpConf": "bgpconfs", "BgpPeer": "bgppeers"}
TEST_LABEL = "porter-lb.io/test"
DEFAULT = "eip.openelb.kubesphere.io/is-default-eip"
# Addresses no other test uses: the benchmarking range and a documentation IPv6 block.
V4 = "198.18"
V6 = "2001:db8:5a1"


@pytest.fixture
def api(api_client: client.ApiClient, crds: list[str]) -> Iterator[KubeAPI]:
    kube = KubeAPI(api_client)
    yield kube
    for item in kube.list(f"{GROUP}/eips?labelSelector={TEST_LABEL}")[0]:
        _delete(kube, "Eip", item["metadata"]["name"])


def _path(kind: str, name: str = "") -> str:
    return f"{GROUP}/{PLURALS[kind]}" + (f"/{name}" if name else "")


def _delete(api: KubeAPI, kind: str, name: str) -> None:
    try:
        api.delete(_path(kind, name))
    except KubeError as error:
        if error.status != 404:
            raise


def _obj(
    kind: str, spec: dict[str, Any], name: str = "", annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name or f"val-{uuid.uuid4().hex[:8]}",
        "labels": {TEST_LABEL: "validation"},
    }
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    }


def _dry_run(api: KubeAPI, obj: dict[str, Any]) -> dict[str, Any]:
    return api.request("POST", _path(obj["kind"]), query={"dryRun": "All"}, body=obj)


def _refusal(call: Callable[[], object]) -> KubeError:
    with pytest.raises(KubeError) as refused:
        call()
    return refused.value


# --- CRD schemas: each address is accepted exactly when the controller's parser accepts it ---

ADDRESSES = [
    "192.0.2.10",
    "2001:db8::1",
    "2001:DB8::A",
    "192.0.2.0/24",
    "2001:db8::/120",
    "0.0.0.0/0",
    "192.0.2.10-192.0.2.20",
    "192.0.2.10-192.0.2.10",
    "192.0.2.255-192.0.3.0",
    "192.0.2.20-192.0.2.10",
    "10.0.0.1-9.255.255.255",
    "2001:db8::1-2001:db8::ff",
    "2001:db8::ff-2001:db8::1",
    "2001:db8::1:0-2001:db8::ffff",
    "2001:db8::ffff-2001:db8::1:0",
    "::-::1",
    "::1-::",
    "fe80::1-fe80::1",
    "64:ff9b::192.0.2.1-64:ff9b::c000:209",
    "64:ff9b::192.0.2.9-64:ff9b::192.0.2.1",
    "2001:db8:0:0:0:0:0:1-2001:db8::2",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "8000::-7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "192.0.2.1/24",
    "2001:db8::1/120",
    "192.0.2.0/33",
    "192.0.2.10-2001:db8::1",
    "2001:db8::1-192.0.2.10",
    "192.0.2.10-",
    "-192.0.2.10",
    "192.0.2.1-192.0.2.2-192.0.2.3",
    "192.0.2.0/24-192.0.2.255",
    "192.0.2.256",
    "010.0.0.1",
    "fe80::1%eth0",
    "pool-a",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_eip_address_rules_agree_with_the_parser(api: KubeAPI, address: str) -> None:
    try:
        rule = None
        parse_address_pool(address)
    except AddressPoolError as error:
        rule = error.rule
    call = lambda: _dry_run(api, _obj("Eip", {"address": address}))  # noqa: E731
    if rule is None:
        call()
        return
    refused = _refusal(call)
    assert refused.status == 422, refused
    assert f"spec.address '{address}'" in str(refused)
    for words in ("range start is after its end", "host bits", "range mixes"):
        if words in rule:
            assert words in str(refused)


@pytest.mark.parametrize(
    "address",
    [" 192.0.2.10", "192.0.2.10 - 192.0.2.20", "::ffff:192.0.2.10", "::ffff:192.0.2.0/120"],
)
def test_eip_address_rules_stricter_than_the_parser(api: KubeAPI, address: str) -> None:
    """Spaces and IPv4-mapped IPv6 addresses: the parser (also used by Ansible) takes them,
    the API refuses them (CEL's isIP refuses IPv4-mapped addresses, OpenELB refuses spaces)."""
    parse_address_pool(address)
    refused = _refusal(lambda: _dry_run(api, _obj("Eip", {"address": address})))
    assert refused.status == 422
    assert f"spec.address '{address}': not an IP address, a CIDR or a range" in str(refused)


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        pytest.param(
            "Eip",
            {"address": "198.18.0.0/24", "protocol": "layer2"},
            "spec.interface is required when spec.protocol is layer2",
            id="layer2-without-interface",
        ),
        pytest.param(
            "Eip",
            {"address": "198.18.0.0/24", "protocol": "layer2", "interface": ""},
            "spec.interface is required when spec.protocol is layer2",
            id="layer2-empty-interface",
        ),
        pytest.param(
            "Eip",
            {"address": "198.18.0.0/24", "protocol": "layer2", "interface": "lo"},
            "spec.interface 'lo': the loopback interface cannot answer ARP/NDP",
            id="layer2-on-lo",
        ),
        pytest.param(
            "Eip",
            {"address": "198.18.0.0/24", "protocol": "layer2", "interface": "can_reach:x"},
            "spec.interface 'can_reach:x': can_reach: must be followed by an IP address",
            id="can-reach-not-an-ip",
        ),
        pytest.param(
            "BgpConf",
            {"as": 65001, "routerId": "2001:db8::1"},
            "spec.routerId '2001:db8::1': a BGP router ID must be an IPv4 address",
            id="router-id-ipv6",
        ),
        pytest.param(
            "BgpConf",
            {"as": 65001, "routerId": "node-1"},
            "spec.routerId 'node-1': a BGP router ID must be an IPv4 address",
            id="router-id-name",
        ),
        pytest.param("BgpConf", {"as": 0}, "spec.as", id="as-zero"),
        pytest.param(
            "BgpConf", {"as": 65001, "listenPort": 65536}, "spec.listenPort", id="listen-port"
        ),
        pytest.param(
            "BgpConf",
            {"as": 65001, "listenAddresses": ["0.0.0.0", "any"]},
            "spec.listenAddresses 'any': not an IPv4 or IPv6 address",
            id="listen-address",
        ),
        pytest.param(
            "BgpPeer",
            {"conf": {"peerAs": 65000, "neighborAddress": "tor-1"}},
            "spec.conf.neighborAddress 'tor-1': not an IPv4 or IPv6 address",
            id="neighbor-not-an-ip",
        ),
        pytest.param(
            "BgpPeer",
            {"conf": {"peerAs": 65000}},
            "spec.conf.neighborAddress is required",
            id="neighbor-missing",
        ),
        pytest.param(
            "BgpPeer",
            {"conf": {"peerAs": 4294967296, "neighborAddress": "192.0.2.1"}},
            "spec.conf.peerAs",
            id="peer-as-too-big",
        ),
        pytest.param(
            "BgpPeer",
            {
                "conf": {"peerAs": 65000, "neighborAddress": "192.0.2.1"},
                "afiSafis": [{"addPaths": {"config": {"sendMax": 256}}}],
            },
            "spec.afiSafis[0].addPaths.config.sendMax",
            id="send-max",
        ),
        pytest.param(
            "BgpPeer",
            {
                "conf": {
                    "peerAs": 65000,
                    "neighborAddress": "192.0.2.1",
                    "authPassword": "x",
                    "authPasswordSecretRef": {"name": "bgp"},
                }
            },
            "spec.conf.authPassword and spec.conf.authPasswordSecretRef are both set",
            id="both-passwords",
        ),
        pytest.param(
            "BgpPeer",
            {
                "conf": {"peerAs": 65000, "neighborAddress": "192.0.2.1"},
                "nodeSelector": {"matchExpressions": [{"key": "rack", "operator": "In"}]},
            },
            "key 'rack', operator In: values must not be empty",
            id="selector-in-without-values",
        ),
        pytest.param(
            "BgpPeer",
            {
                "conf": {"peerAs": 65000, "neighborAddress": "192.0.2.1"},
                "nodeSelector": {
                    "matchExpressions": [{"key": "rack", "operator": "Exists", "values": ["a"]}]
                },
            },
            "key 'rack', operator Exists: values must be empty",
            id="selector-exists-with-values",
        ),
        pytest.param(
            "BgpPeer",
            {
                "conf": {"peerAs": 65000, "neighborAddress": "192.0.2.1"},
                "nodeSelector": {"matchLabels": {"rack": "rack 1"}},
            },
            "spec.nodeSelector.matchLabels: value 'rack 1': not a label value",
            id="selector-label-value",
        ),
        pytest.param(
            "BgpPeer",
            {
                "conf": {"peerAs": 65000, "neighborAddress": "192.0.2.1"},
                "nodeSelector": {"matchLabels": {"-rack": "a"}},
            },
            "spec.nodeSelector.matchLabels: key '-rack': not a label key",
            id="selector-label-key",
        ),
        pytest.param(
            "BgpPeer",
            {
                "conf": {"peerAs": 65000, "neighborAddress": "192.0.2.1"},
                "nodeSelector": {"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]},
            },
            "spec.nodeSelector.matchExpressions: key 'a/b/c': not a label key",
            id="selector-expression-key",
        ),
    ],
)
def test_crds_refuse_invalid_objects_naming_field_and_rule(
    api: KubeAPI, kind: str, spec: dict[str, Any], expected: str
) -> None:
    refused = _refusal(lambda: _dry_run(api, _obj(kind, spec)))
    assert refused.status == 422, refused
    assert expected in str(refused)


@pytest.mark.parametrize(
    "manifest", [FIXTURES / "porter-openelb-v1alpha2.yaml"], ids=lambda p: p.name
)
def test_porter_and_openelb_objects_still_accepted(api: KubeAPI, manifest: Path) -> None:
    for obj in load_manifests(manifest):
        obj["metadata"]["name"] = f"val-{obj['metadata']['name']}"
        _dry_run(api, obj)


def test_selectors_and_layer2_pools_users_write_are_accepted(api: KubeAPI) -> None:
    _dry_run(
        api,
        _obj(
            "BgpPeer",
            {
                "conf": {"peerAs": 65000, "neighborAddress": "2001:db8::1"},
                "nodeSelector": {
                    "matchLabels": {"porter.kubesphere.io/rack": "rack-1", "empty": ""},
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["n1"]},
                        {"key": "node-role.kubernetes.io/edge", "operator": "Exists"},
                    ],
                },
            },
        ),
    )
    _dry_run(
        api,
        _obj("Eip", {"address": "198.18.0.0/24", "protocol": "layer2", "interface": "eth0"}),
    )
    _dry_run(
        api,
        _obj(
            "Eip",
            {"address": "198.18.0.0/24", "protocol": "layer2", "interface": "can_reach:192.0.2.1"},
        ),
    )
    _dry_run(api, _obj("BgpConf", {"as": 65001, "routerId": ""}))


def test_eip_address_is_immutable(api: KubeAPI) -> None:
    eip = api.create(_path("Eip"), _obj("Eip", {"address": f"{V4}.10.0/24"}))
    name = eip["metadata"]["name"]

    refused = _refusal(
        lambda: api.merge_patch(_path("Eip", name), {"spec": {"address": f"{V4}.10.0/25"}})
    )
    assert refused.status == 422
    assert f"spec.address '{V4}.10.0/24' cannot be changed to '{V4}.10.0/25'" in str(refused)
    assert "delete this Eip and create it again" in str(refused)

    # Everything else stays editable, and so does an Eip applied again unchanged.
    patched = api.merge_patch(_path("Eip", name), {"spec": {"disable": True, "priority": 3}})
    assert patched["spec"]["address"] == f"{V4}.10.0/24"
    api.replace(_path("Eip", name), patched)
    api.delete(_path("Eip", name))


# --- the webhook, as a real `porter-lb webhook` process registered with the API server ---


class Webhook:
    def __init__(self, api: KubeAPI, plane: ControlPlane, workdir: Path) -> None:
        self.api = api
        self.port = free_port()
        certificates = generate_certificates(["127.0.0.1"])
        self.ca_file, cert_file, key_file = certificates.write(workdir)
        self.ca_bundle = base64.b64encode(certificates.ca_cert).decode()
        self.daemon = Daemon(
            "porter-lb-webhook",
            [
                *(sys.executable, "-m", "porter_lb", "webhook"),
                *("--kubeconfig", str(plane.kubeconfig), "--log-format", "text"),
                *("--cert-file", cert_file, "--key-file", key_file),
                *("--bind-address", "127.0.0.1", "--port", str(self.port)),
            ],
            workdir / "webhook.log",
        )
        self.configuration = f"porter-lb-test-{uuid.uuid4().hex[:8]}"

    def healthy(self) -> bool:
        self.daemon.check_running()
        context = ssl.create_default_context(cafile=self.ca_file)
        url = f"https://127.0.0.1:{self.port}/healthz"
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return bool(response.status == 200)

    def start(self) -> Webhook:
        self.daemon.start()
        wait_for(self.healthy, 30, "porter-lb webhook answering /healthz", interval=0.1)
        return self

    def register(self) -> None:
        """The shipped manifest, pointed at this process by URL."""
        (configuration,) = yaml.safe_load_all(WEBHOOK_MANIFEST.read_text())
        configuration["metadata"]["name"] = self.configuration
        for webhook in configuration["webhooks"]:
            webhook["clientConfig"] = {
                "url": f"https://127.0.0.1:{self.port}/validate-eip",
                "caBundle": self.ca_bundle,
            }
        self.api.create(
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", configuration
        )

    def unregister(self) -> None:
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        try:
            self.api.delete(f"{path}/{self.configuration}")
        except KubeError as error:
            if error.status != 404:
                raise


@pytest.fixture
def webhook(api: KubeAPI, control_plane: ControlPlane, tmp_path: Path) -> Iterator[Webhook]:
    hook = Webhook(api, control_plane, tmp_path).start()
    try:
        hook.register()
        yield hook
    finally:
        hook.unregister()
        hook.daemon.stop()


def _wait_until_webhook_admits(api: KubeAPI, probe: dict[str, Any]) -> str:
    """The API server picks up a new webhook configuration a moment later: wait for a denial."""

    def denied() -> str | None:
        try:
            _dry_run(api, probe)
        except KubeError as error:
            if "denied the request" in str(error):
                return str(error)
            raise
        return None

    return wait_for(denied, 30, "the API server calling the porter-lb webhook", interval=0.2)


def test_webhook_denies_an_overlapping_eip_and_a_second_default(webhook: Webhook) -> None:
    api = webhook.api
    first = api.create(_path("Eip"), _obj("Eip", {"address": f"{V4}.20.0/24"}, "val-first"))
    _wait_until_webhook_admits(api, _obj("Eip", {"address": f"{V4}.20.5"}))

    refused = _refusal(
        lambda: api.create(_path("Eip"), _obj("Eip", {"address": f"{V4}.20.128/25"}, "val-b"))
    )
    assert refused.status == 422
    assert str(refused).endswith(
        f"admission webhook \"eips.validate.porter-lb.io\" denied the request: Eip 'val-b': "
        f"spec.address '{V4}.20.128/25': overlaps Eip 'val-first' (spec.address "
        f"'{V4}.20.0/24'): Eips must not share addresses"
    )
    # An Eip that overlaps nothing is created; the first one stays editable.
    api.create(_path("Eip"), _obj("Eip", {"address": f"{V4}.21.0/24"}, "val-c"))
    api.merge_patch(_path("Eip", first["metadata"]["name"]), {"spec": {"priority": 1}})

    # Default pools, per IP family. Another test may have left an IPv6 default: use it.
    existing = api.list(f"{GROUP}/eips")[0]
    default_v6 = next(
        (
            e["metadata"]["name"]
            for e in existing
            if (e["metadata"].get("annotations") or {}).get(DEFAULT) == "true"
            and ":" in e["spec"]["address"]
        ),
        None,
    )
    if default_v6 is None:
        default_v6 = "val-default"
        api.create(
            _path("Eip"),
            _obj("Eip", {"address": f"{V6}::/120"}, default_v6, {DEFAULT: "true"}),
        )
    refused = _refusal(
        lambda: api.create(
            _path("Eip"),
            _obj("Eip", {"address": f"{V6}:1::/120"}, "val-default-2", {DEFAULT: "true"}),
        )
    )
    assert refused.status == 422
    assert (
        f"Eip 'val-default-2': metadata.annotations[{DEFAULT}] 'true': Eip '{default_v6}' is "
        "already the default IPv6 pool: at most one Eip per IP family may be the default"
    ) in str(refused)
    # The same pool without the annotation is fine; it may not become a default by an edit.
    api.create(_path("Eip"), _obj("Eip", {"address": f"{V6}:1::/120"}, "val-default-2"))
    refused = _refusal(
        lambda: api.merge_patch(
            _path("Eip", "val-default-2"), {"metadata": {"annotations": {DEFAULT: "true"}}}
        )
    )
    assert f"Eip '{default_v6}' is already the default IPv6 pool" in str(refused)


def test_without_the_webhook_eips_can_still_be_created_edited_and_deleted(
    webhook: Webhook,
) -> None:
    api = webhook.api
    api.create(_path("Eip"), _obj("Eip", {"address": f"{V4}.30.0/24"}, "val-kept"))
    _wait_until_webhook_admits(api, _obj("Eip", {"address": f"{V4}.30.7"}))

    webhook.daemon.stop()  # the configuration stays registered, pointing at nothing

    loser = api.create(_path("Eip"), _obj("Eip", {"address": f"{V4}.30.0/25"}, "val-overlap"))
    api.merge_patch(_path("Eip", "val-overlap"), {"spec": {"disable": True}})
    api.merge_patch(_path("Eip", "val-kept"), {"spec": {"priority": 2}})
    # failurePolicy Ignore lost no safety: the controller's check finds the loser.
    stored = [e for e in api.list(f"{GROUP}/eips")[0] if e["metadata"]["name"].startswith("val-")]
    assert pool_conflicts(stored) == {
        "val-overlap": f"Eip 'val-overlap': spec.address '{V4}.30.0/25': overlaps Eip "
        f"'val-kept' (spec.address '{V4}.30.0/24'), which is older: Eips must not share addresses"
    }
    api.delete(_path("Eip", loser["metadata"]["name"]))
    api.delete(_path("Eip", "val-kept"))
    assert not [
        e
        for e in api.list(f"{GROUP}/eips")[0]
        if e["metadata"]["name"] in ("val-kept", "val-overlap")
    ]
