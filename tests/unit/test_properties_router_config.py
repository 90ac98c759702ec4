"""Properties of the router configuration renderers and parsers (porter.lb's module_utils
bird_bgp, frr_bgp and comware_bgp): any valid configuration renders to text that parses back
to the same configuration and renders again to the same text; text that is not a valid
rendering (garbage, or a rendering damaged line by line) is read or refused with the module's
own error type, never another exception.

Profiles and how to search longer: tests/unit/conftest.py.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ansible_collections.porter.lb.plugins.module_utils import (  # noqa: E402
    bird_bgp,
    comware_bgp,
    frr_bgp,
)

MAX_ASN = 4294967295
asns = st.integers(1, MAX_ASN)
router_ids = st.none() | st.ip_addresses(v=4).filter(lambda ip: int(ip) != 0).map(str)


@st.composite
def v4_networks(draw: st.DrawFn, min_prefix: int = 0) -> str:
    address = draw(st.ip_addresses(v=4))
    prefix = draw(st.integers(min_prefix, 32))
    return str(bird_bgp.ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@st.composite
def v6_networks(draw: st.DrawFn) -> str:
    address = draw(st.ip_addresses(v=6))
    prefix = draw(st.integers(0, 128))
    return str(bird_bgp.ipaddress.ip_network(f"{address}/{prefix}", strict=False))


# One line of free text, as a user may type it into a description or a password: printable
# characters (the modules refuse line breaks; a test of that is below).
words = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=16
)
line_texts = st.lists(words, min_size=1, max_size=3).map(" ".join)


# --- damaging a rendering ----------------------------------------------------------------------


@st.composite
def damaged(draw: st.DrawFn, text: str) -> str:
    """`text` with a few lines deleted, duplicated, truncated or overwritten."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "truncate", "overwrite", "insert"]))
        line = lines[index]
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, line)
        elif action == "truncate":
            lines[index] = line[: draw(st.integers(0, len(line)))]
        elif action == "overwrite":
            start = draw(st.integers(0, len(line)))
            lines[index] = line[:start] + draw(st.text(max_size=12)) + line[start + 1 :]
        else:
            lines.insert(index, draw(st.text(max_size=40)))
    return "\n".join(lines) + "\n"


# --- BIRD ----------------------------------------------------------------------------------------

bird_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,15}\Z").filter(
    lambda name: not name.startswith("porter_")
)


@st.composite
def bird_configs(draw: st.DrawFn) -> bird_bgp.BirdBgpConfig:
    pools = draw(st.lists(v4_networks() | v6_networks(), min_size=1, max_size=4, unique=True))
    families = sorted({bird_bgp.ipaddress.ip_network(p).version for p in pools})
    names = draw(st.lists(bird_names, unique=True, max_size=4))
    with_range = draw(st.booleans()) or not names[:-1]
    neighbors = []
    for name in names[:-1] if with_range else names:
        family = draw(st.sampled_from(families))
        neighbors.append(
            {"name": name, "address": str(draw(st.ip_addresses(v=family))), "as": draw(asns)}
        )
    neighbor_range = None
    if with_range:
        family = draw(st.sampled_from(families))
        prefix = draw(v4_networks() if family == 4 else v6_networks())
        neighbor_range = {"name": names[-1] if names else "dynamic", "prefix": prefix}
        neighbor_range["as"] = draw(asns)
    hold = draw(st.sampled_from([0, 3, 9, 90, 65535]) | st.integers(3, 65535))
    keepalive = draw(st.integers(1, hold - 1 if hold else 65535))
    error_wait_min = draw(st.integers(1, 65535))
    config = bird_bgp.config_from_dict(
        {
            "local_as": draw(asns),
            "router_id": draw(router_ids),
            "pools": pools,
            "neighbors": neighbors,
            "neighbor_range": neighbor_range,
            "add_paths_rx": draw(st.booleans()),
            "merge_paths_limit": draw(st.integers(1, 255)),
            "timers": {
                "hold": hold,
                "keepalive": keepalive,
                "connect_retry": draw(st.integers(1, 65535)),
                "error_wait_min": error_wait_min,
                "error_wait_max": draw(st.integers(error_wait_min, 65535)),
            },
            "password": draw(
                st.none() | line_texts.filter(lambda p: len(p) <= 80 and not set(p) & set('"\\'))
            ),
        }
    )
    return config


@given(bird_configs())
def test_bird_render_parse_round_trip(config: bird_bgp.BirdBgpConfig) -> None:
    text = bird_bgp.render(config)
    parsed = bird_bgp.parse(text)
    # The file lists pools by family (IPv4 first); order within a family is kept.
    by_family = sorted(config.pools, key=lambda p: bird_bgp.ipaddress.ip_network(p).version)
    assert parsed == dataclasses.replace(config, pools=tuple(by_family))
    assert bird_bgp.render(parsed) == text


def bird_parse_or_refuse(text: str) -> None:
    try:
        parsed = bird_bgp.parse(text)
    except bird_bgp.BirdBgpConfigError as error:
        assert error.option and error.rule
        return
    bird_bgp.validate(parsed)  # whatever it reads is a valid configuration


@given(st.text(max_size=200))
def test_bird_parse_garbage(text: str) -> None:
    bird_parse_or_refuse(text)


@given(st.data())
def test_bird_parse_damaged_rendering(data: st.DataObject) -> None:
    bird_parse_or_refuse(data.draw(damaged(bird_bgp.render(data.draw(bird_configs())))))


# --- FRR -----------------------------------------------------------------------------------------

group_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_.-]{0,15}\Z")


def timers(draw: st.DrawFn, keepalive_max: int = 65535, third: bool = False) -> dict[str, Any]:
    if draw(st.booleans()):
        return {}
    hold = draw(st.just(0) | st.integers(3, 65535))
    top = min(keepalive_max, hold // 3 if third and hold else keepalive_max)
    return {"keepalive": draw(st.integers(0, top)), "hold_time": hold}


@st.composite
def frr_configs(draw: st.DrawFn) -> frr_bgp.BgpConfig:
    asn = draw(asns)
    neighbors: list[dict[str, Any]] = []
    groups = draw(st.lists(group_names, unique=True, max_size=2))
    for group in groups:
        neighbors.append(
            {
                "address": group,
                "peer_group": True,
                "remote_as": draw(st.sampled_from(["external", "internal"]) | asns),
                "listen_ranges": draw(
                    st.lists(v4_networks() | v6_networks(), max_size=2, unique=True)
                ),
            }
        )
    for address in draw(
        st.lists(st.ip_addresses(v=4) | st.ip_addresses(v=6), unique=True, max_size=3)
    ):
        neighbors.append(
            {"address": str(address), "remote_as": draw(st.sampled_from(["external"]) | asns)}
        )
    for neighbor in neighbors:
        neighbor.update(timers(draw))
        neighbor["description"] = draw(st.none() | line_texts)
        neighbor["password"] = draw(st.none() | words)  # FRR: one word
        neighbor["connect_retry"] = draw(st.none() | st.integers(1, 65535))
    return frr_bgp.config_from_dict(
        {
            "asn": asn,
            "router_id": draw(router_ids),
            **timers(draw),
            "ebgp_requires_policy": draw(st.booleans()),
            "multipath_relax": draw(st.none() | st.booleans()),
            "maximum_paths": draw(st.none() | st.integers(1, 64)),
            "pools": draw(st.lists(v4_networks(), min_size=1, max_size=3)),
            "neighbors": neighbors,
        }
    )


@given(frr_configs())
def test_frr_render_parse_round_trip(config: frr_bgp.BgpConfig) -> None:
    text = frr_bgp.config_text(config)
    parsed = frr_bgp.parse_config(text)
    assert parsed == config
    assert frr_bgp.config_text(parsed) == text
    # what the router holds and what the module would write are the same statements
    assert (
        frr_bgp.diff_statements(frr_bgp.owned_statements(text), frr_bgp.config_statements(config))
        == []
    )


@given(st.lists(words, min_size=2, max_size=3).map(" ".join))
def test_frr_password_of_several_words_is_refused(password: str) -> None:
    neighbor = {"address": "192.0.2.1", "remote_as": 65001, "password": password}
    try:
        frr_bgp.config_from_dict({"asn": 65000, "pools": ["192.0.2.0/24"], "neighbors": [neighbor]})
    except frr_bgp.FrrBgpConfigError as refused:
        assert refused.field == "neighbors[0].password"
        assert password not in str(refused)  # never shown
    else:
        raise AssertionError(f"frr_bgp took password {password!r}")


def frr_parse_or_refuse(text: str) -> None:
    try:
        frr_bgp.parse_config(text)
    except frr_bgp.FrrBgpConfigError as error:
        assert error.field and error.rule


@given(st.text(max_size=200))
def test_frr_parse_garbage(text: str) -> None:
    frr_parse_or_refuse(text)


@given(st.data())
def test_frr_parse_damaged_rendering(data: st.DataObject) -> None:
    frr_parse_or_refuse(data.draw(damaged(frr_bgp.config_text(data.draw(frr_configs())))))


# --- Comware -------------------------------------------------------------------------------------

comware_groups = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_.-]{0,15}\Z")
interfaces = st.sampled_from(["Vlan-interface100", "LoopBack0", "Ten-GigabitEthernet1/0/1"])


@st.composite
def comware_configs(draw: st.DrawFn) -> comware_bgp.BgpConfig:
    asn = draw(asns)
    neighbors: list[dict[str, Any]] = []
    ranges = iter(draw(st.lists(v4_networks(), unique=True, max_size=4)))
    for group in draw(st.lists(comware_groups, unique=True, max_size=2)):
        remote_as = draw(st.sampled_from(["external", "internal"]) | asns)
        listen = []
        if remote_as != "external" and draw(st.booleans()):
            listen = [network for network, _ in zip(ranges, range(2), strict=False)]
        neighbors.append(
            {"address": group, "peer_group": True, "remote_as": remote_as, "listen_ranges": listen}
        )
    for address in draw(st.lists(st.ip_addresses(v=4), unique=True, max_size=3)):
        neighbors.append({"address": str(address), "remote_as": draw(asns)})
    for neighbor in neighbors:
        neighbor.update(timers(draw, keepalive_max=21845, third=True))
        neighbor["description"] = draw(st.none() | line_texts)
        neighbor["password"] = draw(st.none() | words | words.map("cipher {}".format))
        neighbor["connect_interface"] = draw(st.none() | interfaces)
        neighbor["ebgp_max_hop"] = draw(st.none() | st.integers(1, 255))
        neighbor["additional_paths_receive"] = draw(st.booleans())
    maximum_paths = draw(st.none() | st.integers(1, 32))
    return comware_bgp.config_from_dict(
        {
            "asn": asn,
            "router_id": draw(router_ids),
            **timers(draw, keepalive_max=21845, third=True),
            "graceful_restart": draw(st.booleans()),
            "multipath_relax": draw(st.none() | st.booleans()),
            "maximum_paths": maximum_paths,
            "maximum_paths_for": (
                draw(st.none() | st.sampled_from(comware_bgp.BALANCE_KINDS))
                if maximum_paths
                else None
            ),
            "pools": draw(st.lists(v4_networks(), max_size=3)),
            "neighbors": neighbors,
        }
    )


@given(comware_configs())
def test_comware_render_parse_round_trip(config: comware_bgp.BgpConfig) -> None:
    text = comware_bgp.config_text(config)
    parsed = comware_bgp.parse_config(text)
    assert parsed == config
    assert comware_bgp.config_text(parsed) == text
    assert (
        comware_bgp.diff_statements(
            comware_bgp.owned_statements(text), comware_bgp.config_statements(config)
        )
        == []
    )


def comware_parse_or_refuse(text: str) -> None:
    try:
        comware_bgp.parse_config(text)
    except comware_bgp.ComwareBgpConfigError as error:
        assert error.field and error.rule


@given(st.text(max_size=200))
def test_comware_parse_garbage(text: str) -> None:
    comware_parse_or_refuse(text)


@given(st.data())
def test_comware_parse_damaged_rendering(data: st.DataObject) -> None:
    text = comware_bgp.config_text(data.draw(comware_configs()))
    comware_parse_or_refuse(data.draw(damaged(text)))


# --- line breaks ---------------------------------------------------------------------------------

# Every character str.splitlines() breaks a line at: a value holding one would render as two
# lines, which the parsers then misread.
LINE_BREAKS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


NEIGHBOR_TEXT = [
    pytest.param(frr_bgp, frr_bgp.FrrBgpConfigError, id="frr"),
    pytest.param(comware_bgp, comware_bgp.ComwareBgpConfigError, id="comware"),
]


@pytest.mark.parametrize(("module", "error"), NEIGHBOR_TEXT)
@pytest.mark.parametrize("option", ["description", "password"])
@given(value=st.tuples(words, st.sampled_from(LINE_BREAKS), words).map("".join))
def test_neighbor_text_with_a_line_break_is_refused(
    module: Any, error: type[ValueError], option: str, value: str
) -> None:
    neighbor = {"address": "192.0.2.1", "remote_as": 65001, option: value}
    try:
        module.config_from_dict({"asn": 65000, "pools": ["192.0.2.0/24"], "neighbors": [neighbor]})
    except error as refused:
        assert refused.field == f"neighbors[0].{option}"  # type: ignore[attr-defined]
    else:
        raise AssertionError(f"{module.__name__} took {option} {value!r}")


@given(brk=st.sampled_from(LINE_BREAKS), left=words, right=words)
def test_bird_password_with_a_line_break_is_refused(brk: str, left: str, right: str) -> None:
    bird = {
        "local_as": 65000,
        "pools": ["192.0.2.0/24"],
        "neighbors": [{"name": "n1", "address": "192.0.2.1", "as": 65001}],
        "password": f"{left}{brk}{right}",
    }
    try:
        bird_bgp.config_from_dict(bird)
    except bird_bgp.BirdBgpConfigError as refused:
        assert refused.option == "password"
    else:
        raise AssertionError(f"bird_bgp took password {bird['password']!r}")
