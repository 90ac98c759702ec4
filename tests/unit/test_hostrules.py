"""Host rules, pure part: which rules and local routes accept which EIPs, which kernel entries
are porter-lb's, the changes between two states and their order, the Linux settings checked;
and the speaker's promise to accept prefixes before announcing them."""

from __future__ import annotations

from typing import Any

import pytest

from porter_lb.host.acceptance import (
    LOCAL_TABLE,
    HostDelta,
    HostRulesConfig,
    HostState,
    LocalRoute,
    Rule,
    accepted_prefixes,
    desired_state,
    host_delta,
    owned_state,
    setting_problems,
    settings_to_read,
)

TABLE = HostRulesConfig("table", table=2019, priority=2019, protocol=201)
LOCAL = HostRulesConfig("local", table=2019, priority=2019, protocol=201)
OFF = HostRulesConfig("off")

A, B, V6 = "203.0.113.10/32", "203.0.113.11/32", "2001:db8::10/128"


def rule(prefix: str, table: int = 2019, priority: int = 2019, protocol: int = 201) -> Rule:
    return Rule(prefix, table, priority, protocol)


def local(prefix: str, table: int = LOCAL_TABLE, protocol: int = 201) -> LocalRoute:
    return LocalRoute(prefix, table, protocol)


DEFAULT4 = local("0.0.0.0/0", table=2019)
DEFAULT6 = local("::/0", table=2019)


@pytest.mark.parametrize(
    ("prefixes", "config", "expected"),
    [
        pytest.param([], TABLE, HostState(), id="table-nothing-no-default-route"),
        pytest.param(
            [A, B],
            TABLE,
            HostState(frozenset({rule(A), rule(B)}), frozenset({DEFAULT4})),
            id="table-rule-per-ip-one-default",
        ),
        pytest.param(
            [A, V6],
            TABLE,
            HostState(frozenset({rule(A), rule(V6)}), frozenset({DEFAULT4, DEFAULT6})),
            id="table-dual-stack-default-per-family",
        ),
        pytest.param(
            [V6], TABLE, HostState(frozenset({rule(V6)}), frozenset({DEFAULT6})), id="table-v6"
        ),
        pytest.param(
            [A, V6], LOCAL, HostState(frozenset(), frozenset({local(A), local(V6)})), id="local"
        ),
        pytest.param([A], OFF, HostState(), id="off-touches-nothing"),
        pytest.param(
            ["203.0.113.10/32", "203.0.113.10/32"],
            TABLE,
            HostState(frozenset({rule(A)}), frozenset({DEFAULT4})),
            id="duplicates-once",
        ),
        pytest.param(
            ["2001:DB8:0::10/128"],
            LOCAL,
            HostState(frozenset(), frozenset({local(V6)})),
            id="canonical-v6",
        ),
    ],
)
def test_desired_state(prefixes: list[str], config: HostRulesConfig, expected: HostState) -> None:
    assert desired_state(prefixes, config) == expected


def test_desired_state_refuses_a_network() -> None:
    with pytest.raises(ValueError, match=r"203\.0\.113\.0/24.*not a host prefix"):
        desired_state(["203.0.113.0/24"], TABLE)


def test_only_entries_with_our_numbers_are_owned() -> None:
    rules = [
        rule(A),
        rule(B, protocol=186),  # someone else's protocol (bgp)
        rule(V6, priority=100),  # someone else's priority
        rule("203.0.113.12/32", table=300),  # our numbers, another table: ours (stale)
    ]
    routes = [
        DEFAULT4,
        local(A),
        local(B, protocol=2),  # the kernel's own local route of an assigned address
        local("0.0.0.0/0", table=300),  # our protocol, a table that is not ours
        local("203.0.113.13/32", table=254, protocol=201),  # main table: not ours
    ]
    assert owned_state(rules, routes, TABLE) == HostState(
        frozenset({rule(A), rule("203.0.113.12/32", table=300)}),
        frozenset({DEFAULT4, local(A)}),
    )


def test_delta_orders_routes_before_rules_and_rules_before_routes_on_removal() -> None:
    current = HostState(frozenset({rule(A)}), frozenset({DEFAULT4, local(B)}))
    desired = HostState(frozenset({rule(A), rule(V6)}), frozenset({DEFAULT4, DEFAULT6}))
    assert host_delta(current, desired) == HostDelta(
        add_routes=(DEFAULT6,),
        add_rules=(rule(V6),),
        remove_rules=(),
        remove_routes=(local(B),),
    )
    assert not host_delta(desired, desired)


@pytest.mark.parametrize(
    ("before", "after", "config"),
    [
        pytest.param([A], [A, B], TABLE, id="table-add"),
        pytest.param([A, B], [], TABLE, id="table-remove-all-and-default"),
        pytest.param([A], [V6], LOCAL, id="local-swap"),
    ],
)
def test_applying_the_delta_reaches_the_desired_state(
    before: list[str], after: list[str], config: HostRulesConfig
) -> None:
    current, desired = desired_state(before, config), desired_state(after, config)
    delta = host_delta(current, desired)
    rules = (set(current.rules) | set(delta.add_rules)) - set(delta.remove_rules)
    routes = (set(current.routes) | set(delta.add_routes)) - set(delta.remove_routes)
    assert HostState(frozenset(rules), frozenset(routes)) == desired
    assert accepted_prefixes(desired, config) == frozenset(after)


def test_switching_mode_removes_the_other_modes_entries() -> None:
    left_by_table_mode = desired_state([A], TABLE)
    owned = owned_state(left_by_table_mode.rules, left_by_table_mode.routes, LOCAL)
    delta = host_delta(owned, desired_state([A], LOCAL))
    assert delta.remove_rules == (rule(A),)
    assert delta.remove_routes == (DEFAULT4,)
    assert delta.add_routes == (local(A),)


def test_accepted_needs_the_default_route_of_the_family_in_table_mode() -> None:
    half_done = HostState(frozenset({rule(A), rule(V6)}), frozenset({DEFAULT4}))
    assert accepted_prefixes(half_done, TABLE) == {A}
    assert accepted_prefixes(HostState(frozenset(), frozenset({local(A)})), LOCAL) == {A}
    assert accepted_prefixes(desired_state([A], TABLE), OFF) == frozenset()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "ipvs", "--host-rules 'ipvs': must be one of table, local, off"),
        ("table", 254, "--host-rules-table 254: must be 1-4294967295 and not 253, 254 or 255"),
        ("table", 0, "--host-rules-table 0"),
        ("priority", 32766, "--host-rules-priority 32766: must be 1-32765"),
        ("protocol", 4, "--host-rules-protocol 4: must be 5-255"),
        ("protocol", 256, "--host-rules-protocol 256"),
    ],
)
def test_config_refuses_numbers_that_are_not_its_own(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HostRulesConfig(**{field: value})


def test_settings_read_per_interface_but_not_lo() -> None:
    assert settings_to_read(["lo", "eth1", "eth0"]) == [
        "net.ipv4.ip_forward",
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.eth0.rp_filter",
        "net.ipv4.conf.eth1.rp_filter",
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {"net.ipv4.ip_forward": "1\n", "net.ipv4.conf.all.rp_filter": "0\n"}, {}, id="good"
        ),
        pytest.param(
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.rp_filter": "2",
                "net.ipv4.conf.eth0.rp_filter": "0",
            },
            {},
            id="loose-all-wins",
        ),
        pytest.param(
            {"net.ipv4.ip_forward": "0\n", "net.ipv4.conf.all.rp_filter": "0"},
            {
                "net.ipv4.ip_forward": "net.ipv4.ip_forward is 0; want 1 (sysctl -w "
                "net.ipv4.ip_forward=1): without it EIP traffic is not forwarded to pods on this "
                "node"
            },
            id="no-forwarding",
        ),
        pytest.param(
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.rp_filter": "1",
                "net.ipv4.conf.eth0.rp_filter": "1",
            },
            {
                "net.ipv4.conf.all.rp_filter": "net.ipv4.conf.all.rp_filter is 1 (strict); "
                "want 2 (loose) or 0 (sysctl -w net.ipv4.conf.all.rp_filter=2): EIP traffic "
                "whose reply route leaves by another interface is dropped"
            },
            id="strict-all-named-once",
        ),
        pytest.param(
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.rp_filter": "0",
                "net.ipv4.conf.eth0.rp_filter": "1",
                "net.ipv4.conf.eth1.rp_filter": "2",
            },
            {
                "net.ipv4.conf.eth0.rp_filter": "net.ipv4.conf.eth0.rp_filter is 1 (strict); "
                "want 2 (loose) or 0 (sysctl -w net.ipv4.conf.eth0.rp_filter=2): EIP traffic "
                "whose reply route leaves by another interface is dropped"
            },
            id="strict-interface",
        ),
        pytest.param(
            {"net.ipv4.ip_forward": None, "net.ipv4.conf.all.rp_filter": "0"},
            {"net.ipv4.ip_forward": "net.ipv4.ip_forward could not be read; want 1"},
            id="unreadable",
        ),
    ],
)
def test_setting_problems_name_the_sysctl_and_the_value_wanted(
    values: dict[str, str | None], expected: dict[str, str]
) -> None:
    assert setting_problems(values) == expected
