# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Table-driven tests for plugins/module_utils/bird_bgp.py: renderer, parser, round trips,
validation messages and the resource-module states."""

from __future__ import annotations

import pytest

from ansible_collections.porter.lb.plugins.module_utils.bird_bgp import (
    Bfd,
    BirdBgpConfig,
    BirdBgpConfigError,
    Neighbor,
    NeighborRange,
    Session,
    Timers,
    config_from_dict,
    delete_config,
    merge_config,
    override_config,
    parse,
    parse_show_protocols_all,
    redact,
    render,
    replace_config,
)

NODE1 = {"name": "node1", "address": "198.51.100.11", "as": 65001}
NODE2 = {"name": "node2", "address": "198.51.100.12", "as": 65001}
BASE = {"local_as": 65000, "neighbors": [NODE1], "pools": ["203.0.113.0/24"]}

GOLDEN = """\
# Managed by porter.lb.bird_bgp: changes made here are overwritten.
router id 198.51.100.1;

protocol kernel porter_kernel4 {
  ipv4 { import none; export filter { if source = RTS_BGP then accept; reject; }; };
  merge paths on limit 8;
  netlink rx buffer 16777216;
}

define porter_eip_pools_v4 = [ 203.0.113.0/24{32,32}, 192.0.2.128/25{32,32} ];
filter porter_eip_pools {
  if net.type = NET_IP4 && net ~ porter_eip_pools_v4 then accept;
  reject;
}

template bgp porter_cluster {
  local as 65000;
  hold time 9;
  keepalive time 3;
  connect retry time 1;
  error wait time 1, 5;
  ipv4 { import filter porter_eip_pools; export none; add paths rx; };
}

protocol bgp node1 from porter_cluster { neighbor 198.51.100.11 as 65001; }
"""

CONFIGS = [
    pytest.param(BASE, id="minimal"),
    pytest.param(
        {
            **BASE,
            "router_id": "198.51.100.1",
            "pools": ["203.0.113.0/24", "192.0.2.128/25"],
            "add_paths_rx": True,
            "merge_paths_limit": 8,
        },
        id="golden",
    ),
    pytest.param(
        {
            "local_as": 4200000000,
            "neighbor_range": {"name": "nodes", "prefix": "2001:db8::/64", "as": 4200000001},
            "pools": ["2001:db8:100::/64"],
        },
        id="ipv6-range-only",
    ),
    pytest.param(
        {
            **BASE,
            "neighbors": [NODE1, NODE2],
            "neighbor_range": {"name": "more", "prefix": "198.51.100.0/24", "as": 65002},
            "pools": ["203.0.113.0/24", "2001:db8:100::/64"],
            "timers": {
                "hold": 30,
                "keepalive": 10,
                "connect_retry": 5,
                "error_wait_min": 2,
                "error_wait_max": 60,
            },
            "password": "s3cret pass",
        },
        id="everything",
    ),
]


@pytest.mark.parametrize("data", CONFIGS)
def test_parse_of_render_is_the_same_config(data: dict[str, object]) -> None:
    config = config_from_dict(data)
    text = render(config)
    assert parse(text) == config
    assert render(parse(text)) == text


def test_render_golden() -> None:
    data = CONFIGS[1].values[0]
    assert render(config_from_dict(data)) == GOLDEN  # type: ignore[arg-type]


def test_model_of_the_golden_text() -> None:
    assert parse(GOLDEN) == BirdBgpConfig(
        local_as=65000,
        router_id="198.51.100.1",
        neighbors=(Neighbor("node1", "198.51.100.11", 65001),),
        pools=("203.0.113.0/24", "192.0.2.128/25"),
        add_paths_rx=True,
        merge_paths_limit=8,
        timers=Timers(),
    )


def test_neighbor_range_and_password_rendering() -> None:
    config = config_from_dict(CONFIGS[3].values[0])  # type: ignore[arg-type]
    text = render(config)
    assert config.neighbor_range == NeighborRange("more", "198.51.100.0/24", 65002)
    assert (
        'protocol bgp more from porter_cluster { neighbor range 198.51.100.0/24 as 65002; dynamic name "more"; }'  # noqa: E501
        in text
    )
    assert '  password "s3cret pass";' in text
    assert "s3cret" not in redact(text) and 'password "********";' in redact(text)
    assert "2001:db8:100::/64{128,128}" in text
    assert "protocol kernel porter_kernel6 {" in text


INVALID = [
    ({**BASE, "local_as": 0}, "local_as 0: must be an AS number from 1 to 4294967295"),
    ({**BASE, "router_id": "2001:db8::1"}, "router_id '2001:db8::1': must be an IPv4 address"),
    ({**BASE, "pools": []}, "pools []: at least one EIP pool is required"),
    (
        {**BASE, "pools": ["203.0.113.1/24"]},
        "pools '203.0.113.1/24': must be an IPv4 or IPv6 CIDR with no host bits set",
    ),
    (
        {**BASE, "pools": ["2001:DB8::/64"]},
        "pools '2001:DB8::/64': must be written canonically as 2001:db8::/64",
    ),
    ({**BASE, "neighbors": []}, "neighbors []: give at least one neighbour or a neighbor_range"),
    (
        {**BASE, "neighbors": [{**NODE1, "name": "node-1"}]},
        "neighbors[0].name 'node-1': must be a BIRD protocol name (a letter or '_', then "
        "letters, digits or '_'), not starting with the reserved 'porter_'",
    ),
    (
        {**BASE, "neighbors": [{**NODE1, "name": "porter_x"}]},
        "neighbors[0].name 'porter_x': must be a BIRD protocol name (a letter or '_', then "
        "letters, digits or '_'), not starting with the reserved 'porter_'",
    ),
    ({**BASE, "neighbors": [NODE1, NODE1]}, "neighbors[1].name 'node1': names must be unique"),
    (
        {**BASE, "neighbors": [{**NODE1, "address": "198.51.100.300"}]},
        "neighbors[0].address '198.51.100.300': must be an IPv4 or IPv6 address",
    ),
    (
        {**BASE, "neighbors": [{**NODE1, "address": "2001:db8::1"}]},
        "neighbors[0].address '2001:db8::1': no EIP pool of IPv6: the session would carry "
        "no routes",
    ),
    ({**BASE, "neighbors": [{**NODE1, "as": 0}]}, "neighbors[0].as 0: must be an AS number"),
    (
        {**BASE, "neighbor_range": {"name": "r", "prefix": "198.51.100.1/24", "as": 1}},
        "neighbor_range.prefix '198.51.100.1/24': must be a CIDR with no host bits set",
    ),
    (
        {**BASE, "neighbor_range": {"name": "node1", "prefix": "198.51.100.0/24", "as": 1}},
        "neighbor_range.name 'node1': is also the name of a neighbour",
    ),
    ({**BASE, "merge_paths_limit": 0}, "merge_paths_limit 0: must be from 1 to 255"),
    ({**BASE, "timers": {"hold": 2}}, "timers.hold 2: must be 0 or from 3 to 65535"),
    (
        {**BASE, "timers": {"hold": 9, "keepalive": 9}},
        "timers.keepalive 9: must be from 1 to 65535 and below timers.hold",
    ),
    (
        {**BASE, "timers": {"error_wait_min": 10, "error_wait_max": 5}},
        "timers.error_wait_min (10, 5): must satisfy 1 <= error_wait_min <= error_wait_max",
    ),
    (
        {**BASE, "password": 'a"b'},
        "password '********': must be 1 to 80 characters without double quotes",
    ),
]


@pytest.mark.parametrize(("data", "message"), INVALID)
def test_invalid_config_names_the_option_value_and_rule(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(BirdBgpConfigError) as error:
        config_from_dict(data)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("protocol bgp x { neighbor 1.2.3.4 as 1; }\n", "line 1 'protocol bgp x"),
        ("# only a comment\nlocal as 65000;\n", "pools []: at least one EIP pool"),
        ("router id 1.2.3.4;\n", "text '': has no 'local as' statement"),
    ],
)
def test_parse_rejects_what_the_renderer_does_not_write(text: str, message: str) -> None:
    with pytest.raises(BirdBgpConfigError) as error:
        parse(text)
    assert str(error.value).startswith(message)


def test_merged_matches_neighbours_by_name_and_adds_pools() -> None:
    have = config_from_dict(BASE)
    moved = {**NODE1, "address": "198.51.100.21"}
    result = merge_config(
        have, {"neighbors": [moved, NODE2], "pools": ["192.0.2.0/24"], "timers": {"hold": 30}}
    )
    assert list(result.neighbors) == [
        Neighbor("node1", "198.51.100.21", 65001),
        Neighbor("node2", "198.51.100.12", 65001),
    ]
    assert result.pools == ("203.0.113.0/24", "192.0.2.0/24")
    assert result.timers == Timers(hold=30)
    assert merge_config(result, {"timers": {"keepalive": 5}}).timers == Timers(30, 5)
    assert merge_config(have, {"local_as": None}) == have


def test_merged_without_a_file_needs_a_whole_config() -> None:
    with pytest.raises(BirdBgpConfigError, match="local_as None"):
        merge_config(None, {"neighbors": [NODE1], "pools": ["203.0.113.0/24"]})


def test_replaced_replaces_given_options_whole() -> None:
    have = config_from_dict({**BASE, "timers": {"hold": 30}, "add_paths_rx": True})
    result = replace_config(have, {"neighbors": [NODE2], "timers": {"keepalive": 2}})
    assert [n.name for n in result.neighbors] == ["node2"]
    assert result.timers == Timers(keepalive=2)
    assert result.add_paths_rx is True


def test_overridden_is_exactly_the_given_config() -> None:
    result = override_config({**BASE, "add_paths_rx": None})
    assert result == config_from_dict(BASE)
    assert result.add_paths_rx is False and result.merge_paths_limit == 16


def test_deleted_removes_named_neighbours_or_everything() -> None:
    have = config_from_dict(
        {**BASE, "neighbors": [NODE1, NODE2], "neighbor_range": {"prefix": "198.51.100.0/24"}}
        | {"neighbor_range": {"name": "r", "prefix": "198.51.100.0/24", "as": 1}}
    )
    one = delete_config(have, {"neighbors": [{"name": "node2"}]})
    assert one is not None and [n.name for n in one.neighbors] == ["node1"]
    no_range = delete_config(one, {"neighbor_range": {"name": "r"}})
    assert no_range is not None and no_range.neighbor_range is None
    assert delete_config(no_range, {"neighbors": [{"name": "node1"}]}) is None
    assert delete_config(have, {}) is None
    assert delete_config(None, {"neighbors": [{"name": "node1"}]}) is None


SHOW_PROTOCOLS_ALL = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     17:55:01.123
lab_static Static     master4    up     17:55:01.123
node1      BGP        ---        up     17:55:03.456  Established
  BGP state:          Established
    Neighbor address: 198.51.100.11
    Neighbor AS:      65001
    Local AS:         65000
  Channel ipv4
    State:          UP
spare      BGP        ---        start  17:55:01.123  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 198.51.100.99
    Neighbor AS:      1
    Local AS:         65000
nodes      BGP        ---        start  17:55:01.123  Passive
  BGP state:          Passive
  Channel ipv4
"""


def test_sessions_from_show_protocols_all() -> None:
    assert parse_show_protocols_all(SHOW_PROTOCOLS_ALL) == [
        Session("node1", "198.51.100.11", "Established", "up", 65001),
        Session("spare", "198.51.100.99", "Active", "start", 1),
        Session("nodes", None, "Passive", "start", None),
    ]


# --- the neighbour's port and BFD ---------------------------------------------------------

BFD_ON = {"enabled": True}
FAST = {"enabled": True, "transmit_interval": 100, "receive_interval": 200, "detect_multiplier": 5}

# (neighbour options, the protocol line BIRD gets): the rule is BIRD's syntax, "neighbor ADDR
# [port N] as N;" and a bfd block with every timer written (BIRD's own defaults differ).
SESSION_LINES = [
    pytest.param({}, "{ neighbor 198.51.100.11 as 65001; }", id="defaults: the old line"),
    pytest.param({"port": 179}, "{ neighbor 198.51.100.11 as 65001; }", id="port 179 unwritten"),
    pytest.param({"port": 1790}, "{ neighbor 198.51.100.11 port 1790 as 65001; }", id="port"),
    pytest.param(
        {"bfd": BFD_ON},
        "{ neighbor 198.51.100.11 as 65001; bfd { min rx interval 300 ms;"
        " min tx interval 300 ms; multiplier 3; }; }",
        id="bfd defaults",
    ),
    pytest.param(
        {"port": 1790, "bfd": FAST},
        "{ neighbor 198.51.100.11 port 1790 as 65001; bfd { min rx interval 200 ms;"
        " min tx interval 100 ms; multiplier 5; }; }",
        id="port and bfd timers",
    ),
    pytest.param({"bfd": {"enabled": False}}, "{ neighbor 198.51.100.11 as 65001; }", id="bfd off"),
]


@pytest.mark.parametrize(("options", "line"), SESSION_LINES)
def test_port_and_bfd_render_and_parse_back(options: dict[str, object], line: str) -> None:
    config = config_from_dict({**BASE, "neighbors": [{**NODE1, **options}]})
    text = render(config)
    assert "protocol bgp node1 from porter_cluster " + line + "\n" in text
    assert ("protocol bfd porter_bfd {}" in text) == ("bfd {" in line)
    assert parse(text) == config
    assert render(parse(text)) == text


def test_bfd_on_a_neighbor_range_and_the_bfd_protocol_once() -> None:
    config = config_from_dict(
        {
            **BASE,
            "neighbors": [{**NODE1, "bfd": BFD_ON}, {**NODE2, "bfd": FAST}],
            "neighbor_range": {"name": "r", "prefix": "198.51.100.0/24", "as": 1, "bfd": FAST},
        }
    )
    text = render(config)
    assert text.count("protocol bfd porter_bfd {}") == 1
    assert (
        'neighbor range 198.51.100.0/24 as 1; dynamic name "r"; bfd { min rx interval 200 ms;'
        " min tx interval 100 ms; multiplier 5; }; }" in text
    )
    assert parse(text) == config


def test_a_neighbour_without_port_or_bfd_is_the_default_session() -> None:
    neighbor = config_from_dict(BASE).neighbors[0]
    assert (neighbor.port, neighbor.bfd) == (179, Bfd())
    assert neighbor.to_dict() == {
        **NODE1,
        "port": 179,
        "bfd": {"enabled": False},
    }


def _with(**options: object) -> dict[str, object]:
    return {**BASE, "neighbors": [{**NODE1, **options}]}


SESSION_INVALID = [
    (_with(port=0), "neighbors[0].port 0: must be between 1 and 65535"),
    (_with(port=65536), "neighbors[0].port 65536: must be between 1 and 65535"),
    (_with(port="http"), "neighbors[0].port 'http': must be an integer"),
    (_with(bfd={"transmit_interval": 100}), "neighbors[0].bfd.enabled None: is required"),
    (_with(bfd=True), "neighbors[0].bfd True: must be a dictionary"),
    # timers with BFD off would be written nowhere: refused, not dropped
    (
        _with(bfd={"enabled": False, "transmit_interval": 100}),
        "neighbors[0].bfd.transmit_interval 100: set only with bfd.enabled: true",
    ),
    (
        _with(bfd={"enabled": False, "receive_interval": 300}),
        "neighbors[0].bfd.receive_interval 300: set only with bfd.enabled: true",
    ),
    (
        _with(bfd={"enabled": True, "transmit_interval": 9}),
        "neighbors[0].bfd.transmit_interval 9: must be between 10 and 60000",
    ),
    (
        _with(bfd={"enabled": True, "receive_interval": 60001}),
        "neighbors[0].bfd.receive_interval 60001: must be between 10 and 60000",
    ),
    (
        _with(bfd={"enabled": True, "detect_multiplier": 1}),
        "neighbors[0].bfd.detect_multiplier 1: must be between 2 and 255",
    ),
    (
        _with(bfd={"enabled": True, "min_rx": 100}),
        "neighbors[0].bfd.min_rx 100: is not a BFD option",
    ),
    (
        {
            **BASE,
            "neighbor_range": {
                "name": "r",
                "prefix": "198.51.100.0/24",
                "as": 1,
                "bfd": {"enabled": True, "detect_multiplier": 256},
            },
        },
        "neighbor_range.bfd.detect_multiplier 256: must be between 2 and 255",
    ),
]


@pytest.mark.parametrize(("data", "message"), SESSION_INVALID)
def test_invalid_port_or_bfd_names_the_option_value_and_rule(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(BirdBgpConfigError) as error:
        config_from_dict(data)
    assert str(error.value).startswith(message)


def test_merging_the_same_port_and_bfd_changes_nothing() -> None:
    have = config_from_dict(_with(port=1790, bfd=FAST))
    again = merge_config(parse(render(have)), {"neighbors": [{**NODE1, "port": 1790, "bfd": FAST}]})
    assert again == have and render(again) == render(have)
    # a neighbour given without them is the default session again (neighbours merge whole)
    plain = merge_config(have, {"neighbors": [NODE1]})
    assert plain.neighbors[0] == Neighbor("node1", "198.51.100.11", 65001)
    assert "porter_bfd" not in render(plain)
