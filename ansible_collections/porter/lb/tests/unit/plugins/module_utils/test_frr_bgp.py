# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Table-driven tests for plugins/module_utils/frr_bgp.py: render, parse, round trip, diff."""

from __future__ import annotations

import pytest

from ansible_collections.porter.lb.plugins.module_utils.frr_bgp import (
    BgpConfig,
    FrrBgpConfigError,
    Neighbor,
    commands_for,
    config_from_dict,
    config_statements,
    config_text,
    diff_statements,
    owned_statements,
    parse_config,
)

NODES = {
    "asn": 65000,
    "router_id": "198.51.100.1",
    "keepalive": 3,
    "hold_time": 9,
    "maximum_paths": 8,
    "pools": ["203.0.113.0/24"],
    "neighbors": [
        {
            "address": "198.51.100.12",
            "remote_as": 65002,
            "description": "node two",
            "password": "s3cret",
            "keepalive": 3,
            "hold_time": 9,
            "connect_retry": 1,
        },
        {"address": "198.51.100.11", "remote_as": "65001"},
    ],
}

NODES_TEXT = """\
ip prefix-list PORTER-LB-EIP-POOLS seq 5 permit 203.0.113.0/24 ge 32
!
route-map PORTER-LB-EIP-IN permit 10
 match ip address prefix-list PORTER-LB-EIP-POOLS
exit
!
route-map PORTER-LB-DENY-OUT deny 10
exit
!
router bgp 65000
 bgp router-id 198.51.100.1
 bgp bestpath as-path multipath-relax
 timers bgp 3 9
 neighbor 198.51.100.11 remote-as 65001
 neighbor 198.51.100.12 remote-as 65002
 neighbor 198.51.100.12 description node two
 neighbor 198.51.100.12 password s3cret
 neighbor 198.51.100.12 timers 3 9
 neighbor 198.51.100.12 timers connect 1
 !
 address-family ipv4 unicast
  neighbor 198.51.100.11 route-map PORTER-LB-EIP-IN in
  neighbor 198.51.100.11 route-map PORTER-LB-DENY-OUT out
  neighbor 198.51.100.12 route-map PORTER-LB-EIP-IN in
  neighbor 198.51.100.12 route-map PORTER-LB-DENY-OUT out
  maximum-paths 8
 exit-address-family
exit
!
"""

GROUP = {
    "asn": 65000,
    "ebgp_requires_policy": False,
    "neighbors": [
        {
            "address": "NODES",
            "peer_group": True,
            "remote_as": "external",
            "listen_ranges": ["198.51.100.0/24"],
        }
    ],
}

GROUP_TEXT = """\
router bgp 65000
 no bgp ebgp-requires-policy
 bgp bestpath as-path multipath-relax
 neighbor NODES peer-group
 neighbor NODES remote-as external
 bgp listen range 198.51.100.0/24 peer-group NODES
exit
!
"""

IBGP = {"asn": 65000, "neighbors": [{"address": "192.0.2.5", "remote_as": "internal"}]}
IBGP_TEXT = """\
router bgp 65000
 neighbor 192.0.2.5 remote-as internal
exit
!
"""


@pytest.mark.parametrize(
    ("options", "text"), [(NODES, NODES_TEXT), (GROUP, GROUP_TEXT), (IBGP, IBGP_TEXT)]
)
def test_render_and_parse_round_trip(options: dict, text: str) -> None:
    config = config_from_dict(options)
    assert config_text(config) == text
    assert parse_config(text) == config
    assert config_text(parse_config(text)) == text


def test_multipath_relax_follows_neighbor_asns_unless_set() -> None:
    assert config_from_dict(NODES).multipath_relax is True
    assert config_from_dict(IBGP).multipath_relax is False
    assert config_from_dict({**NODES, "multipath_relax": False}).multipath_relax is False


def test_mask_hides_the_password() -> None:
    text = config_text(config_from_dict(NODES), mask=True)
    assert "s3cret" not in text and "password ********" in text


RUNNING = """\
Building configuration...

Current configuration:
!
frr version 8.4.4
frr defaults traditional
hostname vm
log file /run/x/zebra.log
service integrated-vtysh-config
!
router bgp 65000
 bgp router-id 198.51.100.1
 bgp log-neighbor-changes
 neighbor 198.51.100.11 remote-as 65001
 neighbor 198.51.100.11 ebgp-multihop 2
 !
 address-family ipv4 unicast
  network 10.0.0.0/8
  neighbor 198.51.100.11 route-map OTHER in
  maximum-paths 4
 exit-address-family
exit
!
router bgp 65000 vrf blue
 neighbor 10.0.0.1 remote-as 1
exit
!
ip prefix-list OTHER seq 5 permit 10.0.0.0/8
!
route-map OTHER permit 10
 match ip address prefix-list OTHER
exit
!
end
"""


def test_parser_keeps_only_owned_lines_of_the_default_vrf() -> None:
    assert parse_config(RUNNING) == BgpConfig(
        asn=65000,
        router_id="198.51.100.1",
        maximum_paths=4,
        neighbors=(Neighbor("198.51.100.11", "65001"),),
    )
    assert parse_config("frr defaults traditional\n!\nend\n") is None


BAD = [
    ({}, "asn None: is required"),
    ({"asn": 0}, "asn 0: must be between 1 and 4294967295"),
    ({"asn": 65000, "router_id": "x"}, "router_id 'x': must be an IPv4 address"),
    ({"asn": 65000, "maximum_paths": 65}, "maximum_paths 65: must be between 1 and 64"),
    ({"asn": 65000, "keepalive": 3}, "timers {'keepalive': 3, 'hold_time': None}: set both"),
    ({"asn": 65000, "keepalive": 1, "hold_time": 2}, "hold_time 2: must be 0 or at least 3"),
    ({"asn": 65000, "pools": ["203.0.113.1/24"]}, "pools '203.0.113.1/24': must be a network"),
    ({"asn": 65000, "pools": ["2001:db8::/64"]}, "only IPv4 pools"),
    (
        {"asn": 65000, "neighbors": [{"address": "node1", "remote_as": 1}]},
        "neighbors[0].address 'node1': must be an IP address (or set peer_group: true)",
    ),
    (
        {"asn": 65000, "neighbors": [{"address": "192.0.2.1"}]},
        "neighbors[0].remote_as None: is required",
    ),
    (
        {"asn": 65000, "neighbors": [{"address": "192.0.2.1", "remote_as": "x"}]},
        "neighbors[0].remote_as 'x': must be an integer",
    ),
    (
        {
            "asn": 65000,
            "ebgp_requires_policy": False,
            "neighbors": [
                {"address": "192.0.2.1", "remote_as": 1, "listen_ranges": ["10.0.0.0/8"]}
            ],
        },
        "only a peer group (peer_group: true) listens",
    ),
    (
        {"asn": 65000, "neighbors": [{"address": "192.0.2.1", "remote_as": 65001}]},
        "pools []: FRR drops every route from eBGP neighbours without a policy",
    ),
    (
        {
            "asn": 65000,
            "ebgp_requires_policy": False,
            "neighbors": [
                {"address": "192.0.2.1", "remote_as": 1},
                {"address": "192.0.2.1", "remote_as": 2},
            ],
        },
        "neighbors[1].address '192.0.2.1': appears twice",
    ),
]


@pytest.mark.parametrize(("options", "message"), BAD)
def test_bad_options_name_the_option_and_the_rule(options: dict, message: str) -> None:
    with pytest.raises(FrrBgpConfigError) as error:
        config_from_dict(options)
    assert message in str(error.value)


def commands(before: dict | None, after: dict | None) -> list[str]:
    old = config_statements(config_from_dict(before)) if before else []
    new = config_statements(config_from_dict(after)) if after else []
    return commands_for(diff_statements(old, new))


def test_no_change_means_no_commands() -> None:
    assert commands(NODES, NODES) == []


def test_from_nothing_creates_policies_first() -> None:
    out = commands(None, GROUP)
    assert out == [
        "router bgp 65000",
        "no bgp ebgp-requires-policy",
        "bgp bestpath as-path multipath-relax",
        "neighbor NODES peer-group",
        "neighbor NODES remote-as external",
        "bgp listen range 198.51.100.0/24 peer-group NODES",
        "exit",
    ]
    assert commands(None, NODES)[:5] == [
        "ip prefix-list PORTER-LB-EIP-POOLS seq 5 permit 203.0.113.0/24 ge 32",
        "route-map PORTER-LB-EIP-IN permit 10",
        "match ip address prefix-list PORTER-LB-EIP-POOLS",
        "exit",
        "route-map PORTER-LB-DENY-OUT deny 10",
    ]


def test_changed_value_replaces_without_a_no_and_a_removed_neighbor_goes_at_once() -> None:
    after = {
        **NODES,
        "maximum_paths": 16,
        "neighbors": [{"address": "198.51.100.11", "remote_as": 65001, "description": "one"}],
    }
    assert commands(NODES, after) == [
        "router bgp 65000",
        "no bgp bestpath as-path multipath-relax",
        "no neighbor 198.51.100.12",
        "neighbor 198.51.100.11 description one",
        "address-family ipv4 unicast",
        "maximum-paths 16",
        "exit-address-family",
        "exit",
    ]


def test_removing_everything_drops_router_bgp_then_the_policies() -> None:
    assert commands(NODES, None) == [
        "no router bgp 65000",
        "no ip prefix-list PORTER-LB-EIP-POOLS seq 5 permit 203.0.113.0/24 ge 32",
        "no route-map PORTER-LB-EIP-IN permit 10",
        "no route-map PORTER-LB-DENY-OUT deny 10",
    ]


def test_removed_peer_group_loses_its_listen_range_first() -> None:
    assert commands(GROUP, {**GROUP, "neighbors": []}) == [
        "router bgp 65000",
        "no bgp listen range 198.51.100.0/24 peer-group NODES",
        "no bgp bestpath as-path multipath-relax",
        "no neighbor NODES",
        "exit",
    ]


def test_pool_change_rewrites_the_prefix_list_entry_in_place() -> None:
    after = {**NODES, "pools": ["192.0.2.0/24"]}
    assert commands(NODES, after) == [
        "ip prefix-list PORTER-LB-EIP-POOLS seq 5 permit 192.0.2.0/24 ge 32",
    ]


def test_owned_statements_of_running_config_round_trip_through_the_text() -> None:
    config = config_from_dict(NODES)
    assert owned_statements(config_text(config)) == config_statements(config)
