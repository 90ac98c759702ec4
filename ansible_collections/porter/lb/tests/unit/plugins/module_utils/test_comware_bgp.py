# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Table-driven tests for plugins/module_utils/comware_bgp.py: render, parse, round trip,
resource-state merges and the difference as system-view commands.

The golden files under fixtures/comware/ are written from H3C's Comware 7 command
references (the layout of ``display current-configuration``), not captured from a switch.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.porter.lb.plugins.module_utils.comware_bgp import (
    ComwareBgpConfigError,
    commands_for,
    config_from_dict,
    config_statements,
    config_text,
    deleted_config,
    diff_statements,
    keep_bfd_modes,
    keep_device_passwords,
    masked,
    merged_config,
    owned_statements,
    parse_config,
    parse_peer_states,
    replaced_config,
)

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "comware")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as stream:
        return stream.read()


NODES = {
    "asn": 65000,
    "router_id": "198.51.100.1",
    "keepalive": 3,
    "hold_time": 9,
    "graceful_restart": True,
    "maximum_paths": 8,
    "maximum_paths_for": "ebgp",
    "pools": ["203.0.113.0/24"],
    "neighbors": [
        {
            "address": "198.51.100.99",
            "remote_as": "65099",
            "description": "central speaker",
            "ebgp_max_hop": 2,
        },
        {
            "address": "NODES",
            "peer_group": True,
            "remote_as": 65001,
            "connect_interface": "Vlan-interface100",
            "password": "s3cret",
            "additional_paths_receive": True,
            "listen_ranges": ["198.51.100.0/24"],
        },
    ],
}
CIPHER = "cipher $c$3$nqv1aMyA3Nqk7+LhI1P6Yp3pVqg="


def with_(base, **changes):
    data = dict(base)
    data.update(changes)
    return data


def commands(running, data, update_password="on_create"):
    """What the module sends: the wanted model's statements against the running ones."""
    before = owned_statements(running)
    after = keep_bfd_modes(before, config_statements(data) if data is not None else [])
    if update_password == "on_create":
        after = keep_device_passwords(before, after)
    return commands_for(diff_statements(before, after))


# --- render and parse ---------------------------------------------------------------


def test_renders_the_golden_text_with_the_password_masked():
    assert config_text(config_from_dict(NODES), mask=True) == fixture("rendered_nodes.cfg")


def test_parses_the_owned_part_of_a_whole_running_configuration():
    parsed = parse_config(fixture("running_nodes.cfg")).to_dict()
    assert parsed == {
        "asn": 65000,
        "router_id": "198.51.100.1",
        "keepalive": 3,
        "hold_time": 9,
        "graceful_restart": True,
        "multipath_relax": True,
        "maximum_paths": 8,
        "maximum_paths_for": "ebgp",
        "pools": ["203.0.113.0/24"],
        "neighbors": [
            {
                "address": "NODES",
                "remote_as": "65001",
                "peer_group": True,
                "description": None,
                "password": CIPHER,
                "keepalive": None,
                "hold_time": None,
                "connect_interface": "Vlan-interface100",
                "ebgp_max_hop": None,
                "additional_paths_receive": True,
                "listen_ranges": ["198.51.100.0/24"],
                "bfd": False,
            },
            {
                "address": "192.0.2.254",
                "remote_as": "64999",
                "peer_group": False,
                "description": None,
                "password": None,
                "keepalive": None,
                "hold_time": None,
                "connect_interface": None,
                "ebgp_max_hop": None,
                "additional_paths_receive": False,
                "listen_ranges": [],
                "bfd": False,
            },
            {
                "address": "198.51.100.99",
                "remote_as": "65099",
                "peer_group": False,
                "description": "central speaker",
                "password": None,
                "keepalive": None,
                "hold_time": None,
                "connect_interface": None,
                "ebgp_max_hop": 2,
                "additional_paths_receive": False,
                "listen_ranges": [],
                "bfd": False,
            },
        ],
    }


def test_other_instances_vpn_instances_and_policies_are_not_owned():
    lines = [line for context, line in owned_statements(fixture("running_nodes.cfg"))]
    assert not [line for line in lines if "10.9.9.9" in line or "10.8.8.8" in line]
    assert "route-policy OTHER permit node 10" not in lines
    assert not [line for line in lines if line.startswith(("network ", "ip prefix-list OTHER"))]
    assert "bgp 65010 instance other" not in lines


def test_no_bgp_view_parses_to_none():
    assert parse_config("#\n sysname tor1\n#\ninterface Vlan-interface100\n#\nreturn\n") is None


def test_an_internal_group_shown_without_its_type_parses_as_internal():
    text = "#\nbgp 65000\n group RR\n peer RR timer keepalive 10 hold 30\n#\n"
    (group,) = parse_config(text).neighbors
    assert (group.address, group.remote_as, group.peer_group) == ("RR", "internal", True)
    assert (group.keepalive, group.hold_time) == (10, 30)


ROUND_TRIPS = {
    "nodes": NODES,
    "bare": {"asn": 4200000001},
    "internal group by own asn": {
        "asn": 65000,
        "maximum_paths": 4,
        "maximum_paths_for": "eibgp",
        "neighbors": [
            {"address": "IBGP", "peer_group": True, "remote_as": 65000},
            {
                "address": "198.51.100.11",
                "remote_as": 65000,
                "keepalive": 10,
                "hold_time": 30,
                "password": "x",
            },
        ],
    },
    "relax forced off": {
        "asn": 65000,
        "multipath_relax": False,
        "neighbors": [
            {"address": "198.51.100.11", "remote_as": 65001},
            {"address": "198.51.100.12", "remote_as": 65002},
        ],
    },
}


@pytest.mark.parametrize("data", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_render_then_parse_is_the_same_config(data):
    config = config_from_dict(data)
    assert parse_config(config_text(config)) == config


def test_a_group_with_the_switchs_own_asn_is_an_internal_group():
    config = config_from_dict(ROUND_TRIPS["internal group by own asn"])
    lines = [line for context, line in config_statements(config)]
    assert "group IBGP internal" in lines
    assert not [line for line in lines if line.startswith("peer IBGP as-number")]


# --- validation -----------------------------------------------------------------------

BAD = [
    ({"asn": 0}, "asn 0: must be between 1 and 4294967295"),
    ({}, "asn None: is required"),
    ({"asn": 65000, "router_id": "tor"}, "router_id 'tor': must be an IPv4 address"),
    (
        {"asn": 65000, "keepalive": 3},
        "timers {'keepalive': 3, 'hold_time': None}: set both or neither",
    ),
    (
        {"asn": 65000, "keepalive": 5, "hold_time": 9},
        "timers.keepalive 5: Comware wants it at most a third of hold_time",
    ),
    ({"asn": 65000, "maximum_paths": 33}, "maximum_paths 33: must be between 1 and 32"),
    ({"asn": 65000, "maximum_paths_for": "ebgp"}, "maximum_paths_for 'ebgp': needs maximum_paths"),
    (
        {"asn": 65000, "pools": ["203.0.113.1/24"]},
        "pools '203.0.113.1/24': must be an IPv4 network with no host bits set",
    ),
    (
        {"asn": 65000, "neighbors": [{"address": "2001:db8::1", "remote_as": 1}]},
        "neighbors[0].address '2001:db8::1': must be an IPv4 address (address-family ipv4 "
        "unicast), or set peer_group: true",
    ),
    (
        {"asn": 65000, "neighbors": [{"address": "198.51.100.11", "remote_as": "external"}]},
        "neighbors[0].remote_as 'external': a peer needs an AS number (external/internal name "
        "a peer group's type)",
    ),
    (
        {"asn": 65000, "neighbors": [{"address": "198.51.100.11"}]},
        "neighbors[0].remote_as None: is required",
    ),
    (
        {
            "asn": 65000,
            "neighbors": [
                {
                    "address": "N",
                    "peer_group": True,
                    "remote_as": "external",
                    "listen_ranges": ["198.51.100.0/24"],
                }
            ],
        },
        "neighbors[0].remote_as 'external': dynamic peers take their AS from the group: give "
        "the group an AS number",
    ),
    (
        {
            "asn": 65000,
            "neighbors": [
                {"address": "198.51.100.11", "remote_as": 1, "listen_ranges": ["10.0.0.0/8"]}
            ],
        },
        "neighbors[0].listen_ranges '10.0.0.0/8': only a peer group (peer_group: true) listens",
    ),
    (
        {
            "asn": 65000,
            "neighbors": [
                {
                    "address": "A",
                    "peer_group": True,
                    "remote_as": 1,
                    "listen_ranges": ["10.0.0.0/8"],
                },
                {
                    "address": "B",
                    "peer_group": True,
                    "remote_as": 2,
                    "listen_ranges": ["10.0.0.0/8"],
                },
            ],
        },
        "neighbors[1].listen_ranges '10.0.0.0/8': already listened on by peer group 'A'",
    ),
    (
        {"asn": 65000, "neighbors": [{"address": "1 group", "peer_group": True, "remote_as": 1}]},
        "neighbors[0].address '1 group': a peer group is named by a word of 1 to 47 characters "
        "(letters, digits, '_', '.', '-'), starting with a letter",
    ),
    (
        {
            "asn": 65000,
            "neighbors": [{"address": "198.51.100.11", "remote_as": 1, "password": "two words"}],
        },
        "neighbors[0].password '********': must be one word (or 'cipher <text>')",
    ),
    (
        {
            "asn": 65000,
            "neighbors": [
                {"address": "198.51.100.11", "remote_as": 1, "connect_interface": "vlan 100"}
            ],
        },
        "neighbors[0].connect_interface 'vlan 100': must be one word (no spaces)",
    ),
    (
        {"asn": 65000, "neighbors": [{"address": "198.51.100.11", "remote_as": 1}] * 2},
        "neighbors[1].address '198.51.100.11': appears twice",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[case[1].split(":")[0] for case in BAD])
def test_invalid_options_name_the_field_the_value_and_the_rule(data, message):
    with pytest.raises(ComwareBgpConfigError) as caught:
        config_from_dict(data)
    assert str(caught.value) == message


# --- difference -> commands ---------------------------------------------------------------

NODES_COMMANDS = [
    "ip prefix-list PORTER-LB-EIP-POOLS index 10 permit 203.0.113.0 24 greater-equal 32 "
    "less-equal 32",
    "route-policy PORTER-LB-EIP-IN permit node 10",
    "if-match ip address prefix-list PORTER-LB-EIP-POOLS",
    "quit",
    "route-policy PORTER-LB-DENY-OUT deny node 10",
    "quit",
    "bgp 65000",
    "router-id 198.51.100.1",
    "timer keepalive 3 hold 9",
    "graceful-restart",
    "group NODES external",
    "peer NODES as-number 65001",
    "peer NODES connect-interface Vlan-interface100",
    "peer NODES password simple s3cret",
    "peer 198.51.100.99 as-number 65099",
    "peer 198.51.100.99 description central speaker",
    "peer 198.51.100.99 ebgp-max-hop 2",
    "peer 198.51.100.0 24 group NODES",
    "address-family ipv4 unicast",
    "balance ebgp 8",
    "balance as-path-relax",
    "peer NODES enable",
    "peer NODES additional-paths receive",
    "peer NODES route-policy PORTER-LB-EIP-IN import",
    "peer NODES route-policy PORTER-LB-DENY-OUT export",
    "peer 198.51.100.99 enable",
    "peer 198.51.100.99 route-policy PORTER-LB-EIP-IN import",
    "peer 198.51.100.99 route-policy PORTER-LB-DENY-OUT export",
    "quit",
    "quit",
]
RUNNING = fixture("running_nodes.cfg")
WITHOUT_LOOSE_PEER = RUNNING.replace(" peer 192.0.2.254 as-number 64999\n", "").replace(
    "  peer 192.0.2.254 enable\n", ""
)

DIFFS = {
    "from nothing: everything, policies first": ("", NODES, "on_create", NODES_COMMANDS),
    "same, the running cipher password kept": (WITHOUT_LOOSE_PEER, NODES, "on_create", []),
    "update_password always sends it again": (
        WITHOUT_LOOSE_PEER,
        NODES,
        "always",
        ["bgp 65000", "peer NODES password simple s3cret", "quit"],
    ),
    "overridden removes a peer it does not list, in one undo": (
        RUNNING,
        NODES,
        "on_create",
        ["bgp 65000", "undo peer 192.0.2.254", "quit"],
    ),
    "new router-id and timers replace in place, graceful-restart undone": (
        WITHOUT_LOOSE_PEER,
        with_(NODES, router_id="198.51.100.2", keepalive=10, hold_time=30, graceful_restart=False),
        "on_create",
        [
            "bgp 65000",
            "undo graceful-restart",
            "router-id 198.51.100.2",
            "timer keepalive 10 hold 30",
            "quit",
        ],
    ),
    "balance changes kind: undo the old one first": (
        WITHOUT_LOOSE_PEER,
        with_(NODES, maximum_paths=4, maximum_paths_for=None),
        "on_create",
        [
            "bgp 65000",
            "address-family ipv4 unicast",
            "undo balance ebgp",
            "balance 4",
            "quit",
            "quit",
        ],
    ),
    # on_create: the group gets back the password the switch held, as cipher text
    "the group's AS changes: undo group, create it again with its ranges": (
        WITHOUT_LOOSE_PEER,
        with_(
            NODES, neighbors=[NODES["neighbors"][0], with_(NODES["neighbors"][1], remote_as=65002)]
        ),
        "on_create",
        [
            "bgp 65000",
            "undo group NODES",
            "group NODES external",
            "peer NODES as-number 65002",
            "peer NODES connect-interface Vlan-interface100",
            "peer NODES password " + CIPHER,
            "peer 198.51.100.0 24 group NODES",
            "address-family ipv4 unicast",
            "peer NODES enable",
            "peer NODES additional-paths receive",
            "peer NODES route-policy PORTER-LB-EIP-IN import",
            "peer NODES route-policy PORTER-LB-DENY-OUT export",
            "quit",
            "quit",
        ],
    ),
    "a range and ADD-PATH go; peer attributes undone by key": (
        WITHOUT_LOOSE_PEER,
        with_(
            NODES,
            neighbors=[
                {"address": "198.51.100.99", "remote_as": "65099"},
                with_(NODES["neighbors"][1], listen_ranges=[], additional_paths_receive=False),
            ],
        ),
        "on_create",
        [
            "bgp 65000",
            "undo peer 198.51.100.0 24 group NODES",
            "undo peer 198.51.100.99 description",
            "undo peer 198.51.100.99 ebgp-max-hop",
            "address-family ipv4 unicast",
            "undo peer NODES additional-paths receive",
            "quit",
            "quit",
        ],
    ),
    "pools dropped: policies unbound before they are removed": (
        WITHOUT_LOOSE_PEER,
        with_(NODES, pools=[]),
        "on_create",
        [
            "bgp 65000",
            "address-family ipv4 unicast",
            "undo peer NODES route-policy PORTER-LB-EIP-IN import",
            "undo peer NODES route-policy PORTER-LB-DENY-OUT export",
            "undo peer 198.51.100.99 route-policy PORTER-LB-EIP-IN import",
            "undo peer 198.51.100.99 route-policy PORTER-LB-DENY-OUT export",
            "quit",
            "quit",
            "undo ip prefix-list PORTER-LB-EIP-POOLS index 10",
            "undo route-policy PORTER-LB-DENY-OUT deny node 10",
            "undo route-policy PORTER-LB-EIP-IN permit node 10",
        ],
    ),
    "a pool replaced in place by its index": (
        WITHOUT_LOOSE_PEER,
        with_(NODES, pools=["192.0.2.0/24"]),
        "on_create",
        [
            "ip prefix-list PORTER-LB-EIP-POOLS index 10 permit 192.0.2.0 24 greater-equal 32 "
            "less-equal 32"
        ],
    ),
    "everything deleted: undo bgp, then the policies": (
        RUNNING,
        None,
        "on_create",
        [
            "undo bgp 65000",
            "undo ip prefix-list PORTER-LB-EIP-POOLS index 10",
            "undo route-policy PORTER-LB-DENY-OUT deny node 10",
            "undo route-policy PORTER-LB-EIP-IN permit node 10",
        ],
    ),
    "another AS: the old bgp view goes first": (
        "#\nbgp 64512\n peer 198.51.100.11 as-number 65001\n#\n",
        {"asn": 65000},
        "on_create",
        ["undo bgp 64512", "bgp 65000", "quit"],
    ),
}


@pytest.mark.parametrize(
    ("running", "data", "update_password", "expected"), DIFFS.values(), ids=DIFFS.keys()
)
def test_difference_as_system_view_commands(running, data, update_password, expected):
    want = config_from_dict(data) if data is not None else None
    assert commands(running, want, update_password) == expected


def test_applying_the_commands_gives_the_wanted_statements():
    """The statement sets after every table case equal the wanted ones (nothing left over)."""
    for running, data, update_password, _commands in DIFFS.values():
        want = config_from_dict(data) if data is not None else None
        after = config_statements(want) if want is not None else []
        before = owned_statements(running)
        if update_password == "on_create":
            after = keep_device_passwords(before, after)
        assert diff_statements(after, after) == []


def test_masked_hides_plain_and_cipher_passwords():
    text = "peer NODES password simple s3cret\n peer 198.51.100.11 password " + CIPHER + "\n"
    assert masked(text) == (
        "peer NODES password simple ********\n peer 198.51.100.11 password cipher ********\n"
    )


# --- resource states ------------------------------------------------------------------------


def test_merged_keeps_what_is_not_given_and_merges_a_listed_neighbour_field_by_field():
    have = parse_config(RUNNING)
    merged = merged_config(
        have,
        {
            "asn": 65000,
            "router_id": None,
            "graceful_restart": None,
            "maximum_paths": 16,
            "neighbors": [
                {"address": "NODES", "description": "the nodes", "password": None},
                {"address": "198.51.100.50", "remote_as": "65050"},
            ],
        },
    )
    assert merged.router_id == "198.51.100.1" and merged.graceful_restart is True
    assert (merged.maximum_paths, merged.maximum_paths_for) == (16, "ebgp")
    nodes = next(n for n in merged.neighbors if n.address == "NODES")
    assert nodes.description == "the nodes" and nodes.password == CIPHER
    assert nodes.listen_ranges == ("198.51.100.0/24",)
    assert [n.address for n in merged.neighbors] == [
        "NODES",
        "192.0.2.254",
        "198.51.100.50",
        "198.51.100.99",
    ]


def test_merged_into_another_asn_or_nothing_is_the_given_config():
    assert merged_config(None, {"asn": 65000}) == config_from_dict({"asn": 65000})
    assert merged_config(parse_config(RUNNING), {"asn": 65001}).asn == 65001


def test_replaced_sets_globals_replaces_listed_neighbours_and_keeps_the_others():
    replaced = replaced_config(
        parse_config(RUNNING),
        {"asn": 65000, "neighbors": [{"address": "198.51.100.99", "remote_as": "65099"}]},
    )
    assert replaced.router_id is None and replaced.maximum_paths is None
    assert replaced.pools == () and not replaced.graceful_restart
    peer = next(n for n in replaced.neighbors if n.address == "198.51.100.99")
    assert peer.description is None and peer.ebgp_max_hop is None
    assert {n.address for n in replaced.neighbors} == {"NODES", "192.0.2.254", "198.51.100.99"}


def test_deleted_removes_only_the_named_neighbours_or_everything():
    have = parse_config(RUNNING)
    left = deleted_config(have, ["192.0.2.254", "NODES"])
    assert [n.address for n in left.neighbors] == ["198.51.100.99"]
    assert left.pools == have.pools and left.multipath_relax
    assert deleted_config(have, []) is None
    assert deleted_config(None, ["NODES"]) is None


# --- sessions ---------------------------------------------------------------------------------


def test_peer_states_from_display_bgp_peer_including_dynamic_peers():
    assert parse_peer_states(fixture("display_bgp_peer_ipv4.txt")) == {
        "198.51.100.99": "Active",
        "198.51.100.11": "Established",
        "198.51.100.12": "Established",
    }


# --- a peer's port and BFD ------------------------------------------------------------------

PEER = {"address": "198.51.100.11", "remote_as": "65001"}


def _peer(**options):
    return {"asn": 65000, "neighbors": [{**PEER, **options}]}


def test_bfd_is_one_peer_line_and_reads_back():
    config = config_from_dict(_peer(bfd={"enabled": True}, port=179))
    assert (("bgp 65000",), "peer 198.51.100.11 bfd") in config_statements(config)
    text = config_text(config)
    assert " peer 198.51.100.11 bfd\n" in text
    assert parse_config(text) == config
    assert config.neighbors[0].to_dict()["bfd"] is True
    # as returned (a boolean), the option is taken back unchanged
    assert config_from_dict(config.to_dict()) == config
    assert not config_from_dict(_peer(bfd={"enabled": False})).neighbors[0].bfd


SHOWN = (
    "#\nbgp 65000\n peer 198.51.100.11 as-number 65001\n {}\n #\n"
    " address-family ipv4 unicast\n  peer 198.51.100.11 enable\n#\n"
)

# (the BFD line the switch shows, the wanted peer's options, the commands about BFD): an
# explicit hop mode is the operator's and stays while BFD stays on
SHOWN_BFD = [
    pytest.param("peer 198.51.100.11 bfd", {"bfd": {"enabled": True}}, [], id="plain, on"),
    pytest.param(
        "peer 198.51.100.11 bfd multi-hop", {"bfd": {"enabled": True}}, [], id="multi-hop kept"
    ),
    pytest.param(
        "peer 198.51.100.11 bfd single-hop", {"bfd": {"enabled": True}}, [], id="single-hop kept"
    ),
    pytest.param(
        "peer 198.51.100.11 bfd multi-hop",
        {"bfd": {"enabled": False}},
        ["undo peer 198.51.100.11 bfd"],
        id="off: undone, mode and all",
    ),
    pytest.param(
        "peer 198.51.100.11 bfd multi-hop",
        {"description": "node1", "bfd": {"enabled": True}},
        [],
        id="another option changed",
    ),
]


@pytest.mark.parametrize(("shown", "options", "sent"), SHOWN_BFD)
def test_a_shown_bfd_line_is_owned_and_its_mode_kept(shown, options, sent):
    running = SHOWN.format(shown)
    assert parse_config(running).neighbors[0].bfd is True
    want = config_from_dict(_peer(**options))
    assert [c for c in commands(running, want) if " bfd" in c] == sent


def test_merged_without_bfd_leaves_a_multi_hop_session_alone():
    running = SHOWN.format("peer 198.51.100.11 bfd multi-hop")
    merged = merged_config(parse_config(running), _peer(description="node1"))
    assert commands(running, merged) == [
        "bgp 65000",
        "peer 198.51.100.11 description node1",
        "quit",
    ]


def test_bfd_off_is_undone():
    running = config_text(config_from_dict(_peer(bfd={"enabled": True})))
    assert "undo peer 198.51.100.11 bfd" in commands(running, config_from_dict(_peer()))


SESSION_BAD = [
    (
        _peer(port=1790),
        "neighbors[0].port 1790: Comware 7 has no per-peer destination port (no 'peer ... "
        "port' command): the switch connects to port 179 only",
    ),
    (_peer(port=0), "neighbors[0].port 0: must be between 1 and 65535"),
    (
        _peer(bfd={"enabled": True, "transmit_interval": 300}),
        "neighbors[0].bfd.transmit_interval 300: Comware sets BFD timers on the interface",
    ),
    (
        _peer(bfd={"enabled": True, "detect_multiplier": 5}),
        "neighbors[0].bfd.detect_multiplier 5: Comware sets BFD timers on the interface",
    ),
    (
        _peer(bfd={"enabled": True, "receive_interval": 5}),
        "neighbors[0].bfd.receive_interval 5: must be between 10 and 60000",
    ),
    (_peer(bfd={}), "neighbors[0].bfd.enabled None: is required"),
    (
        _peer(bfd={"enabled": False, "detect_multiplier": 5}),
        "neighbors[0].bfd.detect_multiplier 5: set only with bfd.enabled: true",
    ),
]


@pytest.mark.parametrize(("data", "message"), SESSION_BAD)
def test_a_port_or_bfd_timers_comware_cannot_set_are_refused(data, message):
    with pytest.raises(ComwareBgpConfigError) as error:
        config_from_dict(data)
    assert str(error.value).startswith(message)
