"""No silent field: each field of each CRD schema is either applied by porter-lb or listed,
with its reason, among those it answers with a Warning Event (porter_lb.model.fields); and a
speaker warns, once, naming exactly the set fields it does not apply."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from porter_lab import objects
from porter_lab.memory import MemoryCaches, MemoryGobgpd, MemoryKube
from porter_lb.model.fields import APPLIED, NOT_APPLIED, unapplied_fields
from porter_lb.routing.speaker import Speaker

CRDS = Path(__file__).parents[2] / "ansible_collections/porter/lb/roles/controller/files/crds"


def schema_leaves(schema: dict[str, Any], path: str) -> Iterator[str]:
    """Every field path of an OpenAPI schema: `[]` for list items; an object without
    declared properties (a map) is one field."""
    if schema.get("properties"):
        for name, inner in schema["properties"].items():
            yield from schema_leaves(inner, f"{path}.{name}")
    elif schema.get("type") == "array":
        yield from schema_leaves(schema.get("items", {}), f"{path}[]")
    else:
        yield path


def crd_fields() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for file in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(file.read_text())
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            found.setdefault(kind, set()).update(schema_leaves(spec, "spec"))
    return found


def test_every_crd_field_is_applied_or_warned_about() -> None:
    fields = crd_fields()
    assert set(fields) == {"BgpConf", "BgpPeer", "Eip"}
    for kind, paths in fields.items():
        applied, warned = APPLIED[kind], set(NOT_APPLIED[kind])
        assert not applied & warned, f"{kind}: in both tables: {sorted(applied & warned)}"
        assert paths - applied - warned == set(), f"{kind}: fields nobody accounts for"
        assert (applied | warned) - paths == set(), f"{kind}: tables name fields not in the CRD"


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        ("BgpPeer", {"conf": {"neighborAddress": "198.51.100.1", "peerAs": 65000}}, []),
        (
            "BgpPeer",
            {"conf": {"neighborAddress": "198.51.100.1", "vrf": "blue", "peerGroup": "tors"}},
            ["spec.conf.peerGroup", "spec.conf.vrf"],
        ),
        # False, zero and empty ask for nothing: Porter's manifests carry such defaults.
        ("BgpPeer", {"conf": {"routeFlapDamping": False, "vrf": ""}}, []),
        (
            "BgpPeer",
            {
                "afiSafis": [
                    {
                        "config": {"family": {"afi": "AFI_IP"}},
                        "addPaths": {"config": {"receive": True}},
                    },
                    {
                        "config": {"family": {"afi": "AFI_IP6"}},
                        "addPaths": {"config": {"receive": True}},
                    },
                ]
            },
            ["spec.afiSafis[].addPaths.config.receive"],  # once, however many items
        ),
        (
            "BgpPeer",
            {"gracefulRestart": {"enabled": True, "helperOnly": True, "peerRestartTime": 120}},
            ["spec.gracefulRestart.peerRestartTime"],
        ),
        ("BgpConf", {"as": 65001, "asPerRack": {"rack1": 65011}}, []),  # applied
        (
            "BgpConf",
            {"as": 65001, "gracefulRestart": {"enabled": True, "mode": "restarting"}},
            ["spec.gracefulRestart.mode"],
        ),
        ("BgpConf", {"as": 65001, "families": [4, 6]}, ["spec.families[]"]),
        ("BgpConf", {"as": 65001, "useMultiplePaths": True}, []),
        ("Eip", {"address": "10.0.0.0/24", "protocol": "bgp"}, []),
    ],
)
def test_unapplied_fields_names_what_is_set_and_not_applied(
    kind: str, spec: dict[str, Any], expected: list[str]
) -> None:
    found = unapplied_fields(kind, {"metadata": {"name": "x"}, "spec": spec})
    assert [path for path, _reason in found] == expected
    assert all(reason for _path, reason in found)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.events.append((obj["kind"], obj["metadata"]["name"], reason, message))


def test_the_speaker_warns_once_naming_each_unapplied_field() -> None:
    peer = objects.bgp_peer("tor", "198.51.100.1")
    peer["spec"]["conf"]["vrf"] = "blue"
    conf = objects.bgp_conf(65001)
    conf["spec"]["families"] = [4, 6]
    cluster = MemoryCaches(
        {
            "Node": [objects.node("node1") | objects.node_status(address="198.51.100.11")],
            "BgpConf": [conf],
            "BgpPeer": [peer],
        }
    )
    recorder = Recorder()
    speaker = Speaker(cluster, MemoryGobgpd(), MemoryKube(), recorder, node_name="node1")  # type: ignore[arg-type]
    speaker.reconcile_all()
    speaker.reconcile_all()  # the same fields again: no second Event
    unapplied = [e for e in recorder.events if e[2] == "UnappliedFields"]
    assert sorted((kind, name) for kind, name, _, _ in unapplied) == [
        ("BgpConf", "default"),
        ("BgpPeer", "tor"),
    ]
    messages = {kind: message for kind, _, _, message in unapplied}
    assert "spec.conf.vrf" in messages["BgpPeer"]
    assert "spec.families[]" in messages["BgpConf"]
