# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Table-driven tests for plugins/module_utils/frr_bgp.py: render, parse, round trip, diff."""

from __future__ import annotations

import pytest

from ansible_collections.porter.lb.plugins.module_utils import network_resource
from ansible_collections.porter.lb.plugins.module_utils.bgp_session import Bfd
from ansible_collections.porter.lb.plugins.module_utils.frr_bgp import (
    RULES,
    BgpConfig,
    FrrBgpConfigError,
    Neighbor,
    bfdd_running,
    commands_for,
    config_from_dict,
    config_statements,
    config_text,
    diff_statements,
    missing_statements,
    owned_statements,
    parse_config,
    uses_bfd,
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


# --- a neighbour's port and BFD -----------------------------------------------------------

FAST = {"enabled": True, "transmit_interval": 100, "receive_interval": 200, "detect_multiplier": 5}
BGP = ("router bgp 65000",)
FAST_PROFILE = "PORTER-LB-BFD-TX100-RX200-M5"


def _one(**options: object) -> dict:
    """A configuration of one neighbour 198.51.100.11 with `options`."""
    neighbor = {"address": "198.51.100.11", "remote_as": "65001", **options}
    return {"asn": 65000, "ebgp_requires_policy": False, "neighbors": [neighbor]}


# (neighbour options, the lines FRR shows for them, as bgpd and bfdd write them: a port
# other than 179, "neighbor X bfd", its profile, and a profile's timers other than bfdd's
# defaults, which show running-config leaves out)
SESSION_LINES = [
    pytest.param({}, [], id="defaults: no line"),
    pytest.param({"port": 179}, [], id="port 179: FRR's default"),
    pytest.param({"port": 1790}, [(BGP, "neighbor 198.51.100.11 port 1790")], id="port"),
    pytest.param({"bfd": {"enabled": True}}, [(BGP, "neighbor 198.51.100.11 bfd")], id="bfd"),
    pytest.param({"bfd": {"enabled": False}}, [], id="bfd off"),
    pytest.param(
        {"bfd": FAST},
        [
            (BGP, "neighbor 198.51.100.11 bfd"),
            (BGP, "neighbor 198.51.100.11 bfd profile " + FAST_PROFILE),
            (("bfd",), "profile " + FAST_PROFILE),
            (("bfd", "profile " + FAST_PROFILE), "detect-multiplier 5"),
            (("bfd", "profile " + FAST_PROFILE), "transmit-interval 100"),
            (("bfd", "profile " + FAST_PROFILE), "receive-interval 200"),
        ],
        id="bfd timers in a profile",
    ),
    pytest.param(
        {"bfd": {"enabled": True, "receive_interval": 100}},
        [
            (BGP, "neighbor 198.51.100.11 bfd"),
            (BGP, "neighbor 198.51.100.11 bfd profile PORTER-LB-BFD-TX300-RX100-M3"),
            (("bfd",), "profile PORTER-LB-BFD-TX300-RX100-M3"),
            (("bfd", "profile PORTER-LB-BFD-TX300-RX100-M3"), "receive-interval 100"),
        ],
        id="one timer off its default",
    ),
]


# what show running-config holds for _one() without options: the header, the policy
# switch and the neighbour's AS
ONE_BASELINE = [
    ((), "router bgp 65000"),
    (BGP, "no bgp ebgp-requires-policy"),
    (BGP, "neighbor 198.51.100.11 remote-as 65001"),
]


@pytest.mark.parametrize(("options", "lines"), SESSION_LINES)
def test_port_and_bfd_lines_render_and_parse_back(options: dict, lines: list) -> None:
    config = config_from_dict(_one(**options))
    statements = config_statements(config)
    assert statements[: len(ONE_BASELINE)] == ONE_BASELINE
    assert statements[len(ONE_BASELINE) :] == lines
    text = config_text(config)
    assert owned_statements(text) == statements
    assert parse_config(text) == config


def test_neighbours_with_the_same_timers_share_one_profile() -> None:
    config = config_from_dict(
        {
            "asn": 65000,
            "ebgp_requires_policy": False,
            "neighbors": [
                {"address": "198.51.100.11", "remote_as": "65001", "bfd": FAST},
                {"address": "198.51.100.12", "remote_as": "65001", "bfd": FAST},
                {"address": "NODES", "peer_group": True, "remote_as": "external", "bfd": FAST},
            ],
        }
    )
    text = config_text(config)
    assert text.count("\n profile " + FAST_PROFILE + "\n") == 1
    assert text.count("bfd profile " + FAST_PROFILE) == 3
    assert text.endswith(
        f"bfd\n profile {FAST_PROFILE}\n  detect-multiplier 5\n  transmit-interval 100\n"
        "  receive-interval 200\n exit\n !\nexit\n!\n"
    )
    assert parse_config(text) == config


# Another neighbour (192.0.2.254) names a profile of the operator's, "theirs".
FOREIGN = (
    "router bgp 65000\n no bgp ebgp-requires-policy\n neighbor 192.0.2.254 remote-as 64999\n"
    " neighbor 192.0.2.254 bfd\n neighbor 192.0.2.254 bfd profile theirs\n"
    " neighbor 198.51.100.11 remote-as 65001\nexit\n!\n"
    "bfd\n profile theirs\n  receive-interval 50\n exit\n !\n"
    f" profile {FAST_PROFILE}\n  detect-multiplier 5\n exit\n !\nexit\n!\n"
)

# (line, in which context, whether the module owns it): a neighbour's "bfd profile" line
# only when it names a PORTER-LB-BFD- profile; a profile's timers only inside such a profile
PROFILE_OWNERSHIP = [
    pytest.param(BGP, "neighbor 192.0.2.254 bfd profile theirs", False, id="their profile"),
    pytest.param(BGP, "neighbor 192.0.2.254 bfd", True, id="bfd on is the module's"),
    pytest.param(("bfd", "profile theirs"), "receive-interval 50", False, id="their timers"),
    pytest.param(("bfd",), "profile " + FAST_PROFILE, True, id="the module's profile"),
    pytest.param(("bfd", "profile " + FAST_PROFILE), "detect-multiplier 5", True, id="its timers"),
]


@pytest.mark.parametrize(("context", "line", "owned"), PROFILE_OWNERSHIP)
def test_only_the_modules_bfd_profiles_are_owned(context: tuple, line: str, owned: bool) -> None:
    assert ((context, line) in owned_statements(FOREIGN)) is owned


def test_a_neighbour_naming_another_profile_is_refused_naming_both() -> None:
    with pytest.raises(FrrBgpConfigError) as error:
        parse_config(FOREIGN)
    assert str(error.value).startswith(
        "neighbor 192.0.2.254 'bfd profile theirs': a BFD profile frr_bgp does not own "
        "(it owns PORTER-LB-BFD-*): it neither reads its timers nor replaces or removes it"
    )


def test_another_neighbours_profile_is_never_in_the_commands() -> None:
    """A merged run on 198.51.100.11 (the module's diff over the owned statements) sends
    nothing about 192.0.2.254's profile: the line is not the module's."""
    before = owned_statements(FOREIGN)
    after = [*before, (BGP, "neighbor 198.51.100.11 bfd")]
    assert commands_for(diff_statements(before, after)) == [
        "router bgp 65000",
        "neighbor 198.51.100.11 bfd",
        "exit",
    ]


def test_another_router_bgp_may_name_any_profile() -> None:
    running = (
        "router bgp 65000\n no bgp ebgp-requires-policy\n neighbor 198.51.100.11 remote-as 65001\n"
        "exit\n!\nrouter bgp 65000 vrf blue\n neighbor 192.0.2.254 remote-as 64999\n"
        " neighbor 192.0.2.254 bfd profile theirs\nexit\n!\n"
    )
    assert parse_config(running) == BgpConfig(
        asn=65000,
        ebgp_requires_policy=False,
        neighbors=(Neighbor(address="198.51.100.11", remote_as="65001"),),
    )


# bfdd's static peers, each a node inside "bfd" with its own "profile" line, beside an
# owned profile, as show running-config lays them out
BFD_PEERS = (
    "bfd\n"
    " peer 192.0.2.7\n"
    f"  profile {FAST_PROFILE}\n"
    " exit\n !\n"
    " peer 192.0.2.8 multihop local-address 192.0.2.1\n"
    "  profile PORTER-LB-BFD-TX50-RX50-M3\n"
    "  detect-multiplier 4\n"
    " exit\n !\n"
    f" profile {FAST_PROFILE}\n"
    "  detect-multiplier 5\n"
    " exit\n !\n"
    "exit\n!\n"
)


def test_a_static_bfd_peer_and_its_profile_line_are_left_alone() -> None:
    assert owned_statements(BFD_PEERS) == [
        (("bfd",), "profile " + FAST_PROFILE),
        (("bfd", "profile " + FAST_PROFILE), "detect-multiplier 5"),
    ]


def test_no_command_touches_a_static_bfd_peer() -> None:
    """The owned profile goes (no neighbour names it); the peers' lines are not the
    module's, so nothing is sent for them."""
    assert commands_for(diff_statements(owned_statements(BFD_PEERS), [])) == [
        "bfd",
        "no profile " + FAST_PROFILE,
        "exit",
    ]


# (statements, whether bfdd must run for them): any BFD line, default timers included
USES_BFD = [
    pytest.param([(BGP, "neighbor 198.51.100.11 remote-as 65001")], False, id="no BFD"),
    pytest.param([(BGP, "neighbor 198.51.100.11 bfd")], True, id="bfd, default timers"),
    pytest.param(
        [(BGP, "neighbor 198.51.100.11 bfd profile " + FAST_PROFILE)], True, id="a profile named"
    ),
    pytest.param([(("bfd",), "profile " + FAST_PROFILE)], True, id="a profile defined"),
    pytest.param(
        [(BGP, "neighbor 198.51.100.11 description bfd")], False, id="'bfd' as a description"
    ),
]


@pytest.mark.parametrize(("statements", "needed"), USES_BFD)
def test_bfdd_is_needed_for_any_bfd_line(statements: list, needed: bool) -> None:
    assert uses_bfd(statements) is needed


@pytest.mark.parametrize(
    ("shown", "running"),
    [
        (" zebra bgpd bfdd\n", True),
        (" zebra bgpd\n", False),
        (" zebra bgpd staticd bfddx\n", False),
        ("", False),
    ],
)
def test_bfdd_running_reads_show_daemons(shown: str, running: bool) -> None:
    assert bfdd_running(shown) is running


def test_missing_statements_compare_context_and_line() -> None:
    """The same timer line in another profile does not stand for the one sent."""
    sent = [
        (("bfd",), "profile " + FAST_PROFILE),
        (("bfd", "profile " + FAST_PROFILE), "detect-multiplier 5"),
    ]
    shown = [
        (("bfd",), "profile " + FAST_PROFILE),
        (("bfd", "profile PORTER-LB-BFD-TX50-RX50-M5"), "detect-multiplier 5"),
    ]
    assert missing_statements(sent, shown) == [
        (("bfd", "profile " + FAST_PROFILE), "detect-multiplier 5")
    ]
    assert missing_statements(sent, sent) == []


def _commands(before: dict, after: dict) -> list[str]:
    return commands_for(
        diff_statements(
            config_statements(config_from_dict(before)), config_statements(config_from_dict(after))
        )
    )


def test_bfd_timers_come_before_the_neighbour_names_their_profile() -> None:
    assert _commands(_one(), _one(port=1790, bfd=FAST)) == [
        "bfd",
        "profile " + FAST_PROFILE,
        "detect-multiplier 5",
        "transmit-interval 100",
        "receive-interval 200",
        "exit",
        "exit",
        "router bgp 65000",
        "neighbor 198.51.100.11 port 1790",
        "neighbor 198.51.100.11 bfd",
        "neighbor 198.51.100.11 bfd profile " + FAST_PROFILE,
        "exit",
    ]


def test_new_timers_switch_the_profile_in_place_and_drop_the_old_one_last() -> None:
    slower = {**FAST, "transmit_interval": 1000}
    assert _commands(_one(bfd=FAST), _one(bfd=slower)) == [
        "bfd",
        "profile PORTER-LB-BFD-TX1000-RX200-M5",
        "detect-multiplier 5",
        "transmit-interval 1000",
        "receive-interval 200",
        "exit",
        "exit",
        "router bgp 65000",
        "neighbor 198.51.100.11 bfd profile PORTER-LB-BFD-TX1000-RX200-M5",
        "exit",
        "bfd",
        "no profile " + FAST_PROFILE,
        "exit",
    ]


def test_bfd_off_is_one_no_and_the_profile_goes() -> None:
    assert _commands(_one(port=1790, bfd=FAST), _one()) == [
        "router bgp 65000",
        "no neighbor 198.51.100.11 port 1790",
        "no neighbor 198.51.100.11 bfd",
        "exit",
        "bfd",
        "no profile " + FAST_PROFILE,
        "exit",
    ]


def test_the_same_port_and_bfd_again_send_nothing() -> None:
    config = config_from_dict(_one(port=1790, bfd=FAST))
    running = parse_config(config_text(config))
    assert running == config
    assert _commands(_one(port=1790, bfd=FAST), _one(port=1790, bfd=FAST)) == []


def test_merged_sets_and_clears_port_and_bfd_over_what_runs() -> None:
    have = config_from_dict(_one(port=1790, bfd=FAST))
    given = {"asn": 65000, "ebgp_requires_policy": False}
    kept = network_resource.merged(RULES, have, {**given, "neighbors": [_neighbor()]})
    assert kept == have  # not given: kept
    cleared = network_resource.merged(
        RULES,
        have,
        {**given, "neighbors": [_neighbor(port=179, bfd={"enabled": False})]},
    )
    assert (cleared.neighbors[0].port, cleared.neighbors[0].bfd) == (None, None)


# (the bfd given to merged over a running FAST (100, 200, 5), the neighbour's BFD after):
# merged replaces bfd as a whole, so a timer left out is its default again, not FAST's
MERGED_BFD = [
    pytest.param(None, Bfd(True, 100, 200, 5), id="not given: kept"),
    pytest.param({"enabled": True}, Bfd(True, 300, 300, 3), id="enabled alone: defaults"),
    pytest.param(
        {"enabled": True, "transmit_interval": 50}, Bfd(True, 50, 300, 3), id="one timer given"
    ),
    pytest.param({"enabled": False}, None, id="off"),
]


@pytest.mark.parametrize(("given", "after"), MERGED_BFD)
def test_merged_replaces_a_neighbours_bfd_as_a_whole(given: dict | None, after: object) -> None:
    have = config_from_dict(_one(bfd=FAST))
    options = _neighbor() if given is None else _neighbor(bfd=given)
    merged = network_resource.merged(
        RULES, have, {"asn": 65000, "ebgp_requires_policy": False, "neighbors": [options]}
    )
    assert merged.neighbors[0].bfd == after


def _neighbor(**options: object) -> dict:
    return {"address": "198.51.100.11", "remote_as": "65001", **options}


SESSION_BAD = [
    (_one(port=0), "neighbors[0].port 0: must be between 1 and 65535"),
    (_one(port="bgp"), "neighbors[0].port 'bgp': must be an integer"),
    (
        {
            "asn": 65000,
            "ebgp_requires_policy": False,
            "neighbors": [{"address": "G", "peer_group": True, "remote_as": "1", "port": 1790}],
        },
        "neighbors[0].port 1790: a port is the neighbour's listening port; a peer group's "
        "sessions come from its listen ranges",
    ),
    (_one(bfd={}), "neighbors[0].bfd.enabled None: is required: true or false"),
    # timers with BFD off would be written nowhere: refused, not dropped
    (
        _one(bfd={"enabled": False, "transmit_interval": 50}),
        "neighbors[0].bfd.transmit_interval 50: set only with bfd.enabled: true",
    ),
    (
        _one(bfd={"enabled": False, "detect_multiplier": 3}),
        "neighbors[0].bfd.detect_multiplier 3: set only with bfd.enabled: true",
    ),
    (
        _one(bfd={"enabled": True, "transmit_interval": 60001}),
        "neighbors[0].bfd.transmit_interval 60001: must be between 10 and 60000",
    ),
    (
        _one(bfd={"enabled": True, "detect_multiplier": 1}),
        "neighbors[0].bfd.detect_multiplier 1: must be between 2 and 255",
    ),
]


@pytest.mark.parametrize(("options", "message"), SESSION_BAD)
def test_bad_port_or_bfd_names_the_option_and_the_rule(options: dict, message: str) -> None:
    with pytest.raises(FrrBgpConfigError) as error:
        config_from_dict(options)
    assert str(error.value).startswith(message)
