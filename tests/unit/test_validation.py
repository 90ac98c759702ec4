"""Cross-object Eip rules: no shared addresses, one default pool per family; older wins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from porter_lb.model.validation import (
    PoolConflict,
    check_admission,
    find_pool_conflicts,
    pool_conflicts,
)
from porter_lb.webhook.admission import VALIDATE_EIP_PATH, admission_response

OPENELB_DEFAULT = "eip.openelb.kubesphere.io/is-default-eip"
PORTER_DEFAULT = "eip.porter.kubesphere.io/is-default-eip"


def eip(
    name: str,
    address: str,
    created: str | None = "2026-01-01T00:00:00Z",
    *,
    default: str | None = None,
    deleting: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if created:
        metadata["creationTimestamp"] = created
    if default:
        metadata["annotations"] = {default: "true"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-02-01T00:00:00Z"
    return {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": metadata,
        "spec": {"address": address, **spec},
    }


T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:01Z"
T2 = "2026-01-01T00:00:02Z"


@pytest.mark.parametrize(
    ("eips", "losers"),
    [
        pytest.param([], {}, id="none"),
        pytest.param(
            [eip("a", "192.0.2.0/25", T0), eip("b", "192.0.2.128/25", T1)], {}, id="adjacent"
        ),
        pytest.param(
            [eip("a", "192.0.2.0/24", T0), eip("b", "192.0.2.255", T1)],
            {"b": ("a", "overlap")},
            id="single-ip-inside-cidr",
        ),
        pytest.param(
            [eip("b", "192.0.2.10-192.0.2.20", T0), eip("a", "192.0.2.20-192.0.2.30", T1)],
            {"a": ("b", "overlap")},
            id="older-wins-whatever-the-name",
        ),
        pytest.param(
            [eip("b", "192.0.2.0/24", T0), eip("a", "192.0.2.0/24", T0)],
            {"b": ("a", "overlap")},
            id="same-age-name-decides",
        ),
        pytest.param(
            [eip("new", "192.0.2.0/24", None), eip("old", "192.0.2.0/24", T2)],
            {"new": ("old", "overlap")},
            id="not-yet-created-is-youngest",
        ),
        pytest.param(
            [eip("a", "::ffff:c000:200/120", T0), eip("b", "192.0.2.0/24", T1)],
            {},
            id="families-never-overlap",
        ),
        pytest.param(
            [eip("a", "2001:db8::/64", T0), eip("b", "2001:db8::ff-2001:db8::1:0", T1)],
            {"b": ("a", "overlap")},
            id="ipv6",
        ),
        pytest.param(
            [
                eip("a", "192.0.2.0-192.0.2.10", T0),
                eip("b", "192.0.2.10-192.0.2.20", T1),
                eip("c", "192.0.2.20-192.0.2.30", T2),
            ],
            {"b": ("a", "overlap"), "c": ("b", "overlap")},
            id="losers-still-count",
        ),
        pytest.param(
            [eip("a", "192.0.2.0/24", T0, deleting=True), eip("b", "192.0.2.0/24", T1)],
            {},
            id="deleting-does-not-count",
        ),
        pytest.param(
            [eip("a", "192.0.2.9-192.0.2.1", T0), eip("b", "192.0.2.0/24", T1)],
            {},
            id="invalid-does-not-count",
        ),
        pytest.param(
            [eip("a", "192.0.2.0/24", T0, disable=True), eip("b", "192.0.2.0/24", T1)],
            {"b": ("a", "overlap")},
            id="disabled-still-holds-its-addresses",
        ),
        pytest.param(
            [
                eip("a", "192.0.2.0/24", T0, default=OPENELB_DEFAULT),
                eip("b", "198.51.100.0/24", T1, default=PORTER_DEFAULT),
            ],
            {"b": ("a", "default")},
            id="second-default-either-spelling",
        ),
        pytest.param(
            [
                eip("a", "192.0.2.0/24", T0, default=OPENELB_DEFAULT),
                eip("b", "2001:db8::/120", T1, default=OPENELB_DEFAULT),
            ],
            {},
            id="one-default-per-family",
        ),
        pytest.param(
            [
                eip("a", "192.0.2.0/24", T0, default=OPENELB_DEFAULT, deleting=True),
                eip("b", "198.51.100.0/24", T1, default=OPENELB_DEFAULT),
            ],
            {},
            id="deleting-default-does-not-count",
        ),
        pytest.param(
            [
                eip("a", "192.0.2.0/24", T0, default=OPENELB_DEFAULT, disable=True),
                eip("b", "198.51.100.0/24", T1, default=OPENELB_DEFAULT),
            ],
            {"b": ("a", "default")},
            id="disabled-default-still-the-default",
        ),
    ],
)
def test_losers_and_their_winners(
    eips: list[dict[str, Any]], losers: dict[str, tuple[str, str]]
) -> None:
    found = find_pool_conflicts(eips)
    assert {c.eip: (c.winner, c.kind) for c in found} == losers
    # Whatever order the watch delivered them in.
    assert find_pool_conflicts(list(reversed(eips))) == found


def test_messages_name_field_value_other_eip_and_rule() -> None:
    eips = [
        eip("pool-a", "192.0.2.0/24", T0, default=OPENELB_DEFAULT),
        eip("pool-b", "192.0.2.128/25", T1, default=PORTER_DEFAULT),
    ]
    assert find_pool_conflicts(eips) == [
        PoolConflict(
            "overlap",
            "pool-b",
            "pool-a",
            "spec.address",
            "192.0.2.128/25",
            "overlaps Eip 'pool-a' (spec.address '192.0.2.0/24'), which is older: "
            "Eips must not share addresses",
        ),
        PoolConflict(
            "default",
            "pool-b",
            "pool-a",
            f"metadata.annotations[{PORTER_DEFAULT}]",
            "true",
            "Eip 'pool-a' is already the default IPv4 pool and is older: "
            "at most one Eip per IP family may be the default",
        ),
    ]
    assert pool_conflicts(eips) == {
        "pool-b": "Eip 'pool-b': spec.address '192.0.2.128/25': overlaps Eip 'pool-a' "
        "(spec.address '192.0.2.0/24'), which is older: Eips must not share addresses; "
        f"Eip 'pool-b': metadata.annotations[{PORTER_DEFAULT}] 'true': Eip 'pool-a' is already "
        "the default IPv4 pool and is older: at most one Eip per IP family may be the default"
    }


def test_creating_an_eip_never_demotes_an_existing_one() -> None:
    existing = [eip("a", "192.0.2.0/24", T1)]
    assert pool_conflicts([*existing, eip("z", "192.0.2.0/24", None)]).keys() == {"z"}
    # Even when the clock says otherwise (a timestamp from the future on the new object).
    assert pool_conflicts([*existing, eip("z", "192.0.2.0/24", T0)]).keys() == {"a"}


@pytest.mark.parametrize(
    ("obj", "existing", "expected"),
    [
        pytest.param(eip("b", "198.51.100.0/24", None), [eip("a", "192.0.2.0/24")], None, id="ok"),
        pytest.param(
            eip("b", "192.0.2.128/25", None),
            [eip("a", "192.0.2.0/24")],
            "Eip 'b': spec.address '192.0.2.128/25': overlaps Eip 'a' "
            "(spec.address '192.0.2.0/24'): Eips must not share addresses",
            id="create-overlapping",
        ),
        pytest.param(
            eip("b", "198.51.100.0/24", None, default=OPENELB_DEFAULT),
            [eip("a", "192.0.2.0/24", default=PORTER_DEFAULT)],
            f"Eip 'b': metadata.annotations[{OPENELB_DEFAULT}] 'true': Eip 'a' is already the "
            "default IPv4 pool: at most one Eip per IP family may be the default; remove the "
            "annotation from 'a' first",
            id="create-second-default",
        ),
        pytest.param(
            eip("b", "2001:db8::/120", None, default=OPENELB_DEFAULT),
            [eip("a", "192.0.2.0/24", default=OPENELB_DEFAULT)],
            None,
            id="create-default-of-other-family",
        ),
        pytest.param(
            eip("b", "192.0.2.0/24", None),
            [eip("a", "192.0.2.0/24", deleting=True)],
            None,
            id="create-over-a-deleting-eip",
        ),
        pytest.param(
            eip("a", "192.0.2.0/24", T0, default=OPENELB_DEFAULT),
            [
                eip("a", "192.0.2.0/24", T0),
                eip("b", "198.51.100.0/24", T1, default=OPENELB_DEFAULT),
            ],
            f"Eip 'a': metadata.annotations[{OPENELB_DEFAULT}] 'true': Eip 'b' is already the "
            "default IPv4 pool: at most one Eip per IP family may be the default; remove the "
            "annotation from 'b' first",
            id="older-eip-made-default-would-demote-the-default",
        ),
        pytest.param(
            eip("b", "192.0.2.0/24", T1, disable=True),
            [eip("a", "192.0.2.0/24", T0), eip("b", "192.0.2.0/24", T1)],
            None,
            id="edit-of-an-eip-that-already-loses",
        ),
        pytest.param(
            eip("a", "192.0.2.0/24", T0, disable=True),
            [eip("a", "192.0.2.0/24", T0), eip("b", "192.0.2.0/24", T1)],
            None,
            id="edit-of-the-winner",
        ),
        pytest.param(
            eip("b", "192.0.2.0/24", T1, deleting=True),
            [eip("a", "192.0.2.0/24", T0), eip("b", "192.0.2.0/24", T1)],
            None,
            id="finalizer-removal-while-deleting",
        ),
        pytest.param(
            eip("b", "192.0.2.9-192.0.2.1", None),
            [],
            "Eip 'b': spec.address '192.0.2.9-192.0.2.1': range start is after its end",
            id="invalid-on-its-own",
        ),
    ],
)
def test_check_admission(
    obj: dict[str, Any], existing: list[dict[str, Any]], expected: str | None
) -> None:
    assert check_admission(obj, existing) == expected


# --- the webhook's answer and its registration ---

WEBHOOK_MANIFEST = (
    Path(__file__).resolve().parents[2]
    / "ansible_collections/porter/lb/roles/controller/files/webhook.yaml"
)


def review(operation: str, obj: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": operation, "object": obj},
    }


def test_admission_response_denies_with_422_naming_the_rule() -> None:
    answer = admission_response(
        review("CREATE", eip("b", "192.0.2.0/25", None)), lambda: [eip("a", "192.0.2.0/24")]
    )
    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "u-1",
            "allowed": False,
            "status": {
                "code": 422,
                "reason": "Invalid",
                "message": "Eip 'b': spec.address '192.0.2.0/25': overlaps Eip 'a' "
                "(spec.address '192.0.2.0/24'): Eips must not share addresses",
            },
        },
    }


def test_admission_response_allows_deletes_and_unreadable_state() -> None:
    def unreachable() -> list[dict[str, Any]]:
        raise OSError("connection refused")

    assert admission_response(review("DELETE", None), unreachable)["response"] == {
        "uid": "u-1",
        "allowed": True,
    }
    answer = admission_response(review("CREATE", eip("b", "192.0.2.0/25", None)), unreachable)
    assert answer["response"]["allowed"] is True
    assert "could not list Eips" in answer["response"]["warnings"][0]
    with pytest.raises(ValueError, match=r"request\.uid"):
        admission_response({"kind": "AdmissionReview"}, unreachable)


def test_webhook_manifest_can_never_trap_users() -> None:
    """OpenELB #138/#251: an absent webhook must never make Eips undeletable."""
    (configuration,) = yaml.safe_load_all(WEBHOOK_MANIFEST.read_text())
    assert configuration["kind"] == "ValidatingWebhookConfiguration"
    for webhook in configuration["webhooks"]:
        assert webhook["failurePolicy"] == "Ignore"
        assert webhook["sideEffects"] == "None"
        assert webhook["timeoutSeconds"] <= 5
        assert webhook["clientConfig"]["service"]["path"] == VALIDATE_EIP_PATH
        for rule in webhook["rules"]:
            assert rule["operations"] == ["CREATE", "UPDATE"]
            assert rule["apiGroups"] == ["network.kubesphere.io"]
            assert rule["resources"] == ["eips"]
