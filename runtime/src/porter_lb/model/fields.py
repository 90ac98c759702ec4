"""Every field of porter-lb's CRDs, and what porter-lb does with it.

Porter's and OpenELB's CRDs carry GoBGP's whole configuration; porter-lb applies most of it.
A field is either APPLIED, refused by the CRD schema or the model (a Warning and a status
condition name it), or listed in NOT_APPLIED with the reason: a speaker that sees such a
field set answers with one Warning Event on the object that names the field and the reason
(`unapplied_fields`), never silence. tests/unit/test_fields.py checks that each field of each
CRD schema is in exactly one of the two tables.

Paths are the object's field paths with `[]` for list items (`spec.afiSafis[].addPaths...`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

_STATE = "is state gobgpd reports, not configuration"
_GR_PEER_ONLY = "is applied per neighbour: set it in the BgpPeers' spec.gracefulRestart"

APPLIED: dict[str, frozenset[str]] = {
    "BgpConf": frozenset(
        {
            "spec.as",
            "spec.asPerRack",  # node speakers: the rack label's AS
            "spec.routerId",
            "spec.listenPort",
            "spec.listenAddresses[]",
            "spec.useMultiplePaths",
            "spec.gracefulRestart.enabled",
            "spec.gracefulRestart.restartTime",
            "spec.gracefulRestart.deferralTime",
        }
    ),
    "BgpPeer": frozenset(
        {
            "spec.conf.neighborAddress",
            "spec.conf.neighborInterface",  # refused by the speaker with a Warning
            "spec.conf.peerAs",
            "spec.conf.localAs",
            "spec.conf.description",
            "spec.conf.authPassword",
            "spec.conf.authPasswordSecretRef.name",
            "spec.conf.authPasswordSecretRef.namespace",
            "spec.conf.authPasswordSecretRef.key",
            "spec.conf.adminDown",
            "spec.conf.allowOwnAs",
            "spec.conf.removePrivateAs",
            "spec.conf.replacePeerAs",
            "spec.afiSafis[].config.enabled",
            "spec.afiSafis[].config.family.afi",
            "spec.afiSafis[].config.family.safi",
            "spec.afiSafis[].addPaths.config.sendMax",
            "spec.ebgpMultihop.enabled",
            "spec.ebgpMultihop.multihopTtl",
            "spec.bfd.enabled",
            "spec.bfd.transmitInterval",
            "spec.bfd.receiveInterval",
            "spec.bfd.detectMultiplier",
            "spec.gracefulRestart.enabled",
            "spec.gracefulRestart.restartTime",
            "spec.gracefulRestart.deferralTime",
            "spec.gracefulRestart.helperOnly",
            "spec.gracefulRestart.notificationEnabled",
            "spec.timers.config.connectRetry",
            "spec.timers.config.holdTime",
            "spec.timers.config.keepaliveInterval",
            "spec.transport.passiveMode",
            "spec.transport.remotePort",
            "spec.transport.localAddress",
            "spec.transport.tcpMss",
            "spec.nodeSelector.matchLabels",
            "spec.nodeSelector.matchExpressions[].key",
            "spec.nodeSelector.matchExpressions[].operator",
            "spec.nodeSelector.matchExpressions[].values[]",
        }
    ),
    "Eip": frozenset(
        {
            "spec.address",
            "spec.protocol",
            "spec.interface",
            "spec.disable",
            "spec.usingKnownIPs",
            "spec.priority",
            "spec.namespaces[]",
            "spec.namespaceSelector",
            "spec.communities[]",
            "spec.largeCommunities[]",
            "spec.localPref",
        }
    ),
}

NOT_APPLIED: dict[str, dict[str, str]] = {
    "BgpConf": {
        "spec.families[]": "is not applied: each BgpPeer's spec.afiSafis choose the families",
        "spec.gracefulRestart.helperOnly": _GR_PEER_ONLY,
        "spec.gracefulRestart.notificationEnabled": _GR_PEER_ONLY,
        "spec.gracefulRestart.longlivedEnabled": "is not applied: no long-lived graceful restart",
        "spec.gracefulRestart.staleRoutesTime": "is not applied: no long-lived graceful restart",
        "spec.gracefulRestart.peerRestartTime": _STATE,
        "spec.gracefulRestart.peerRestarting": _STATE,
        "spec.gracefulRestart.localRestarting": _STATE,
        "spec.gracefulRestart.mode": _STATE,
    },
    "BgpPeer": {
        "spec.conf.peerGroup": "is not applied: porter-lb configures each neighbour itself",
        "spec.conf.peerType": "is not applied: gobgpd derives it from peerAs and the local AS",
        "spec.conf.routeFlapDamping": "is not applied: gobgpd does no route flap damping",
        "spec.conf.vrf": "is not applied: porter-lb announces in the global table only",
        "spec.afiSafis[].addPaths.config.receive": (
            "is not applied: porter-lb's speakers accept no routes from their peers"
        ),
        "spec.afiSafis[].mpGracefulRestart.config.enabled": (
            "is not applied: spec.gracefulRestart.enabled turns it on for every family"
        ),
        "spec.gracefulRestart.longlivedEnabled": "is not applied: no long-lived graceful restart",
        "spec.gracefulRestart.staleRoutesTime": "is not applied: no long-lived graceful restart",
        "spec.gracefulRestart.peerRestartTime": _STATE,
        "spec.gracefulRestart.peerRestarting": _STATE,
        "spec.gracefulRestart.localRestarting": _STATE,
        "spec.gracefulRestart.mode": _STATE,
        "spec.timers.config.minimumAdvertisementInterval": (
            "is not applied: gobgpd sends each change at once"
        ),
        "spec.transport.remoteAddress": "is not applied: spec.conf.neighborAddress is used",
        "spec.conf.sendCommunity": (
            "is not applied: gobgpd 4.8 takes it in its API but never reads it; every"
            " community is sent"
        ),
        "spec.transport.mtuDiscovery": (
            "is not applied: gobgpd 4.8 takes it in its API but never reads it"
        ),
    },
    "Eip": {},
}


def _set(value: object) -> bool:
    """A value that asks for something: not absent, false, zero or empty."""
    return value not in (None, False, 0, "", [], {})


def _leaves(value: object, path: str) -> Iterator[tuple[str, object]]:
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            yield from _leaves(inner, f"{path}.{key}")
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for item in value:
            yield from _leaves(item, f"{path}[]")
    elif isinstance(value, list):
        yield f"{path}[]", value
    else:
        yield path, value


def unapplied_fields(kind: str, obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, reason) for each field of `obj`'s spec set to something porter-lb does not
    apply (NOT_APPLIED), sorted by path; a path set in several list items counts once."""
    table = NOT_APPLIED.get(kind, {})
    found: dict[str, str] = {}
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return []
    for path, value in _leaves(spec, "spec"):
        for candidate in _candidates(path):
            if candidate in table and _set(value):
                found[candidate] = table[candidate]
    return sorted(found.items())


def _candidates(path: str) -> Iterator[str]:
    """The path and each of its ancestors (a free-form object such as asPerRack is one
    field: its keys are below it)."""
    parts = path.split(".")
    for end in range(len(parts), 1, -1):
        yield ".".join(parts[:end])


def unapplied_message(kind: str, name: str, fields: list[tuple[str, str]]) -> str:
    """The Warning for `fields` (from unapplied_fields) of object `name`."""
    listed = "; ".join(f"{path} {reason}" for path, reason in fields)
    return f"{kind} '{name}': {listed}"
