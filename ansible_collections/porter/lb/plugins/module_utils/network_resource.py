# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""What the router modules (bird_bgp, frr_bgp, comware_bgp) share as resource modules: the
``state`` option, and the states themselves, once.

``merged``, ``replaced``, ``overridden``, ``deleted``, ``rendered`` and ``parsed`` work on
module options (plain data) and a router's model; a router's :class:`StateRules` say how its
neighbours are matched and merged and what a state keeps.  ``gathered`` reads the router and
stays in each module.  The options match the doc fragment porter.lb.network_resource.

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

STATES = ("merged", "replaced", "overridden", "deleted", "gathered", "rendered", "parsed")
"""The network resource-module states, in the order the docs list them."""

CHANGING_STATES = ("merged", "replaced", "overridden", "deleted")
"""The states that change the router (the others only read, or need no router at all)."""


def state_argument_spec():
    """The `state` and `running_config` options, for a module's argument_spec."""
    return dict(
        state=dict(type="str", default="merged", choices=list(STATES)),
        running_config=dict(type="str"),
    )


REQUIRED_IF = [("state", "parsed", ["running_config"])]
"""`parsed` reads `running_config`; each module adds what else it requires."""


# --- the states -------------------------------------------------------------


class StateRules:
    """A router's answers to the questions the states ask; each router module_utils makes
    one (a subclass or an instance with the attributes set).

    ``items``/``key``: the list option whose entries the states match (the neighbours), and
    the field that names an entry.  ``whole_items``: ``merged`` replaces a listed entry whole
    (else field by field).  ``keep_unset``: ``replaced`` keeps the running value of an option
    not given (else it is reset, and only the listed entries replace running ones).
    ``view_option``: the option naming the configuration as a whole (the AS of ``router bgp
    <asn>``): another value starts over.  ``removable``: options that ``deleted`` removes
    when given, besides entries.  ``derived``: options validation derives when they are not
    given (multipath_relax from the neighbours' ASNs): ``replaced`` takes them from the
    options again, so they are derived from the whole result.
    """

    items = "neighbors"
    key = "address"
    whole_items = False
    keep_unset = False
    view_option = None
    removable = ()
    derived = ()

    def validate(self, data, partial=False):
        """The model for module options (plain data); raises the router's error.  `partial`:
        the options are merged into what runs, which is validated again as a whole."""
        raise NotImplementedError

    def running(self, have):
        """The running model as module options: what merges start from."""
        return have.to_dict()

    def wanted(self, data):
        """The options ``merged`` lays over the running ones (by default as given)."""
        return data

    def given(self, data):
        """The options a user gave (Ansible passes the others as None)."""
        return {k: v for k, v in data.items() if self.is_given(v)}

    def is_given(self, value):
        return value is not None

    def merge_option(self, name, old, new):
        """``merged``: the value of an option given as `new` over the running `old`."""
        return new

    def settled(self, data):
        """Options once combined, just before they are validated as a whole."""
        return data

    def is_empty(self, data):
        """Whether what ``deleted`` leaves is no configuration at all."""
        return False

    def render(self, config):
        """The configuration text of a model (``rendered``)."""
        raise NotImplementedError

    def parse(self, text):
        """The model of configuration text (``parsed``), None when it holds none."""
        raise NotImplementedError


def _starts_over(rules, have, data):
    """Whether ``merged`` takes `data` alone: nothing runs, or `data` names another
    configuration (another AS).  A router without ``view_option`` merges into nothing."""
    if rules.view_option is None:
        return False
    if have is None or data.get(rules.view_option) is None:
        return have is None
    try:
        return int(data[rules.view_option]) != getattr(have, rules.view_option)
    except (TypeError, ValueError):
        return True  # validate() names the bad value


def _entries(value):
    return [entry for entry in value or () if isinstance(entry, dict)]


def merged(rules, have, data):
    """``merged``: the options given in `data` over the running `have`.  Listed entries are
    matched by ``rules.key``: a new one is added, a running one is replaced (whole or field
    by field); entries not listed and options not given are kept."""
    if rules.view_option is not None and _starts_over(rules, have, data):
        return rules.validate(data, partial=True)
    result = rules.running(have) if have is not None else {}
    for name, value in rules.given(rules.wanted(data)).items():
        if name == rules.items:
            result[name] = _merged_entries(rules, _entries(result.get(name)), _entries(value))
        else:
            result[name] = rules.merge_option(name, result.get(name), value)
    return rules.validate(rules.settled(result))


def _merged_entries(rules, entries, listed):
    at = {entry.get(rules.key): index for index, entry in enumerate(entries)}
    for entry in listed:
        index = at.get(entry.get(rules.key))
        if index is None:
            if rules.whole_items:  # a later entry of the same key replaces this one
                at[entry.get(rules.key)] = len(entries)
            # else an entry listed twice is added twice: validation names the duplicate
            entries.append(entry if rules.whole_items else rules.given(entry))
        elif rules.whole_items:
            entries[index] = entry
        else:
            entries[index].update(rules.given(entry))
    return entries


def replaced(rules, have, data):
    """``replaced``: each option given replaces the running value.  With
    ``rules.keep_unset`` the options not given are kept; otherwise they are reset, and the
    listed entries replace those with the same key while the others are kept."""
    if rules.keep_unset:
        result = rules.running(have) if have is not None else {}
        result.update(rules.given(data))
        return rules.validate(result)
    want = rules.validate(data)
    if have is None or getattr(have, rules.view_option) != getattr(want, rules.view_option):
        return want
    result = want.to_dict()
    listed = {entry[rules.key] for entry in result[rules.items]}
    running = rules.running(have)[rules.items]
    result[rules.items] += [entry for entry in running if entry[rules.key] not in listed]
    for name in rules.derived:
        result[name] = data.get(name)
    return rules.validate(rules.settled(result))


def overridden(rules, data):
    """``overridden``: exactly the configuration in `data` (defaults for the rest)."""
    return rules.validate(data)


def deleted(rules, have, data):
    """``deleted``: `have` without the entries `data` lists (and the ``rules.removable``
    options it gives); with none listed, no configuration at all (None)."""
    given = {k: v for k, v in (data or {}).items() if v is not None}
    names = {entry.get(rules.key) for entry in _entries(given.get(rules.items))}
    dropped = [name for name in rules.removable if name in given]
    if have is None or (not names and not dropped):
        return None
    result = rules.running(have)
    result[rules.items] = [e for e in result[rules.items] if e[rules.key] not in names]
    for name in dropped:
        result[name] = None
    if rules.is_empty(result):
        return None
    return rules.validate(rules.settled(result))


def rendered(rules, data):
    """``rendered``: the configuration text for `data`, no router needed."""
    return rules.render(rules.validate(data))


def parsed(rules, text):
    """``parsed``: the model of `text` (a running configuration), no router needed."""
    return rules.parse(text)
