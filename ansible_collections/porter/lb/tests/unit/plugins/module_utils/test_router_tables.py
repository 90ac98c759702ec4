# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""One pattern for the three router modules: golden fixtures through the shared states, and
what each router's parser table must hold.

The fixture sets under fixtures/<router>/ (``CASES`` and ``RENDERED_ONLY`` below):

* ``nodes`` for BIRD, FRR and Comware, and ``bfd_port`` (neighbours with BFD and a TCP port
  other than 179) for BIRD: all four files, ``<case>.json`` (module options), the text
  ``rendered`` writes for it (``rendered_<case>.*``, the password shown as ********), a
  running configuration (``running_<case>.*``) and what ``parsed`` returns for it
  (``parsed_<case>.json``);
* ``bfd_port`` for FRR: only ``bfd_port.json`` and ``rendered_bfd_port.cfg``, which
  ``rendered`` (no router needed) is checked against here; there is no recorded running
  configuration of it, so neither ``parsed`` nor the round trip through one is checked for
  it (test_frr_bgp.py parses the rendered text back instead).

The FRR running configuration is ``show running-config`` of FRR 8.4.4 after the module's
commands and a few lines of its own (another VRF, another route-map, a neighbour the
options do not list); BIRD's is the module's file with a comment added, which ``bird -p``
accepts; Comware's is written from H3C's command references (see test_comware_bgp.py).
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from ansible_collections.porter.lb.plugins.module_utils import (
    bgp_resource,
    bird_bgp,
    comware_bgp,
    frr_bgp,
    network_resource,
)

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures")
PASSWORD = "s3cret"  # the password in every nodes.json


def fixture(router, name):
    with open(os.path.join(FIXTURES, router, name)) as stream:
        return stream.read()


def returned(config):
    """A parsed configuration as the module returns it: plain data, password masked."""
    if isinstance(config, bird_bgp.BirdBgpConfig):
        data = config.to_dict()
        data["password"] = data["password"] and bgp_resource.MASK
        return data
    return bgp_resource.returned_config(config)


ROUTERS = {
    "bird": (bird_bgp, "conf"),
    "frr": (frr_bgp, "cfg"),
    "comware": (comware_bgp, "cfg"),
}
ALL = pytest.mark.parametrize("router", ROUTERS)
# the cases with all four files, and those with options and rendered text only
CASES = {"bird": ("nodes", "bfd_port"), "frr": ("nodes",), "comware": ("nodes",)}
RENDERED_ONLY = {"frr": ("bfd_port",)}
ALL_CASES = pytest.mark.parametrize(
    ("router", "case"), [(router, case) for router, cases in CASES.items() for case in cases]
)
RENDERED_CASES = pytest.mark.parametrize(
    ("router", "case"),
    [
        (router, case)
        for router in ROUTERS
        for case in CASES.get(router, ()) + RENDERED_ONLY.get(router, ())
    ],
)


@RENDERED_CASES
def test_rendered_is_the_golden_text(router, case):
    module, ext = ROUTERS[router]
    options = json.loads(fixture(router, case + ".json"))
    text = network_resource.rendered(module.RULES, options)
    assert text.replace(PASSWORD, bgp_resource.MASK) == fixture(router, f"rendered_{case}.{ext}")


@ALL_CASES
def test_parsed_reads_the_running_configuration(router, case):
    module, ext = ROUTERS[router]
    parsed = network_resource.parsed(module.RULES, fixture(router, f"running_{case}.{ext}"))
    assert returned(parsed) == json.loads(fixture(router, f"parsed_{case}.json"))


# The running configurations hold the options of nodes.json and, on FRR and Comware, one
# neighbour more that the module did not write (Comware also shows the password encrypted).
LOOSE = {"frr": {"address": "192.0.2.254", "remote_as": "64999"}}


@pytest.mark.parametrize(
    ("router", "case"),
    [(router, case) for router in ("bird", "frr") for case in CASES[router]],
)
def test_parsing_the_running_configuration_gives_the_options_back(router, case):
    module, ext = ROUTERS[router]
    options = json.loads(fixture(router, case + ".json"))
    if router in LOOSE:
        options["neighbors"].append(LOOSE[router])
    running = module.RULES.parse(fixture(router, f"running_{case}.{ext}"))
    assert running == module.RULES.validate(options)
    # the module's own options merged into what runs change nothing
    again = json.loads(fixture(router, case + ".json"))
    assert network_resource.merged(module.RULES, running, again) == running


# --- the parser tables --------------------------------------------------------------------


def model_fields(router):
    """The fields of the model that lines must carry to the router (a neighbour's too; not
    the list of neighbours itself, nor a neighbour's address, which names it)."""
    if router == "bird":
        return {f.name for f in dataclasses.fields(bird_bgp.BirdBgpConfig)}
    module = ROUTERS[router][0]
    config = {f.name for f in dataclasses.fields(module.BgpConfig)} - {"neighbors"}
    return config | {f.name for f in dataclasses.fields(module.Neighbor)} - {"address"}


@ALL
def test_every_field_of_the_model_is_owned_by_a_line(router):
    table = ROUTERS[router][0].TABLE
    assert {name for line in table.lines for name in line.fields} == model_fields(router)


@RENDERED_CASES
def test_each_written_line_is_read_back_by_a_line_of_its_shape(router, case):
    """One entry per shape: the line an entry writes is matched by that entry (or, where
    BIRD's file holds the same line in several places, by an entry of the same regex)."""
    module, _ext = ROUTERS[router]
    config = module.RULES.validate(json.loads(fixture(router, case + ".json")))
    for line, text in module.TABLE.written(config):
        found = module.TABLE.match(line.view, text.strip())
        assert found is not None, text
        assert found[0].getval.pattern == line.getval.pattern, (line.name, found[0].name)


@ALL
def test_deleted_without_neighbours_removes_everything(router):
    module, ext = ROUTERS[router]
    running = module.RULES.parse(fixture(router, "running_nodes." + ext))
    assert network_resource.deleted(module.RULES, running, None) is None
    assert network_resource.deleted(module.RULES, None, {"neighbors": [{"address": "x"}]}) is None
