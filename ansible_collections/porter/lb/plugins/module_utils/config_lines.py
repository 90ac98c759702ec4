# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Parser tables: one entry per configuration line shape, driving rendering, parsing and
ownership at once.

Modelled on ansible.netcommon's NetworkTemplate as arista.eos uses it (``rm_templates``: a
list of parsers, each with a name, a ``getval`` regex and a ``setval`` template), kept small
and in plain Python: ``setval`` is a function, there is no Jinja.  A router's module_utils
holds one :class:`Table` of :class:`Line` entries; the same entry

* writes the line (``setval``), in table order: consecutive entries with the same ``each``
  are written item by item (all lines of one neighbour, then the next neighbour's);
* says the line is the module's (``getval`` matches it in its ``view``): what no entry
  matches is left alone on the router;
* reads the line back into the model's fields (``read``; by default the regex's named
  groups), naming the fields it owns in ``fields``.

The table knows nothing of a router's text layout (indentation, ``!`` or ``#``, ``exit``):
each router walks its text into (view, line) pairs and asks the table about each line.

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["Fallback", "Line", "Table", "apply", "ints", "line", "read_statements", "when"]


def _groups(match):
    return {k: v for k, v in match.groupdict().items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Line:
    """One configuration line shape.

    ``view``: where the line lives, in the router's own names ("top", "bgp", "af" ...).
    ``getval``: the regex matching the line as the router shows it (indentation removed).
    ``setval``: ``setval(config, item)`` → the line for `config` (and the item of ``each``
    it is written for), or None when the fields it owns are unset; None for a shape that is
    owned and read but never written (an older spelling the router may show).
    ``fields``: the model fields the line owns.
    ``each``: what the line is written for: "config" (once) or a name the router maps to
    the items of a config (its neighbours, pools ...).
    ``read``: ``read(match)`` → the fields the line holds, as a dict (default: the named
    groups); it may raise the router's error for an owned line it cannot read.
    ``key``: a regex whose group 1 is what identifies the line without its value: a new line
    with the same key replaces the old one in place, and the router's removal command
    takes the key.  None: the line is added and removed whole.
    """

    name: str
    view: str
    getval: re.Pattern[str]
    setval: object = None
    fields: tuple[str, ...] = ()
    each: str = "config"
    read: object = None
    key: re.Pattern[str] | None = None

    def values(self, match):
        """The fields a matching line holds."""
        return self.read(match) if self.read is not None else _groups(match)


class Table:
    """A router's parser table: its :class:`Line` entries in rendering order, and `items`:
    for each ``each`` name other than "config", the function of a configuration that gives
    the items lines are written for (its neighbours, pools ...)."""

    def __init__(self, lines, items=None):
        self.lines = tuple(lines)
        self.items = dict(items or {})
        names = [line.name for line in self.lines]
        if len(set(names)) != len(names):
            raise ValueError("parser table: line names must be unique: %s" % names)
        self._by_view = {}
        for line in self.lines:
            self._by_view.setdefault(line.view, []).append(line)

    def runs(self):
        """The entries grouped into runs of consecutive entries with the same ``each``."""
        runs = []
        for line in self.lines:
            if runs and runs[-1][0] == line.each:
                runs[-1][1].append(line)
            else:
                runs.append((line.each, [line]))
        return runs

    def written(self, config):
        """The (entry, line) pairs for `config`, in table order."""
        out = []
        for each, lines in self.runs():
            for item in [config] if each == "config" else self.items[each](config):
                for line in lines:
                    text = None if line.setval is None else line.setval(config, item)
                    if text is not None:
                        out.append((line, text))
        return out

    def render(self, config):
        """The (view, line) pairs for `config`, in table order (see written)."""
        return [(line.view, text) for line, text in self.written(config)]

    def match(self, view, text):
        """The first entry of `view` whose ``getval`` matches `text`, and the match; or None."""
        for line in self._by_view.get(view, ()):
            found = line.getval.match(text)
            if found:
                return line, found
        return None

    def owns(self, view, text):
        """Whether the line `text` in `view` is the module's."""
        return self.match(view, text) is not None

    def key(self, view, text):
        """What identifies the line without its value (see Line.key), or None."""
        found = self.match(view, text)
        if found is None or found[0].key is None:
            return None
        key = found[0].key.match(text)
        return key.group(1) if key else None


class Fallback:
    """A value read only where its field holds none yet: a line of another shape, before or
    after, says better (Comware's ``group X external`` and ``peer X as-number N``)."""

    def __init__(self, value):
        self.value = value


def apply(target, values):
    """Read values into `target` (a dict of model fields): a tuple adds its items to the
    field (a line holds one pool, one listen range), a Fallback fills an empty field, any
    other value replaces it."""
    for name, value in values.items():
        if isinstance(value, tuple):
            target[name] = (*target.get(name, ()), *value)
        elif isinstance(value, Fallback):
            target[name] = target.get(name) or value.value
        else:
            target[name] = value


def read_statements(table, statements, view_of, key):
    """The fields owned (view, line) statements hold, in order: the configuration's fields,
    and each entry's (a neighbour's), by the value of the group `key` that names it.

    `statements` are (context, line) pairs the table owns; `view_of` names a context's view.
    """
    fields, entries = {}, {}
    for context, text in statements:
        shape, match = table.match(view_of(context), text)
        values = shape.values(match)
        name = values.pop(key, None)
        apply(fields if name is None else entries.setdefault(name, {key: name}), values)
    return fields, entries


def line(name, view, getval, setval=None, **options):
    """A :class:`Line` with its regexes given as text (``getval``, and ``key`` if any)."""
    key = options.pop("key", None)
    return Line(
        name, view, re.compile(getval), setval, key=re.compile(key) if key else None, **options
    )


def when(value, text, *args):
    """``text % args`` when the field `value` is set; None (no line) when it is unset."""
    return None if value is None else text % args


def ints(*names):
    """A ``read`` function: the named groups, those in `names` as integers."""

    def read(match):
        values = _groups(match)
        for name in names:
            values[name] = int(values[name])
        return values

    return read
