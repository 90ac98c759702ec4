# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Terminal plugin for H3C Comware 7: how its CLI prompts and errors look over network_cli.

Comware shows ``<sysname>`` in user view and ``[sysname]``, ``[sysname-bgp-default]``,
``[sysname-bgp-default-ipv4]`` ... in system view and below.  A command it cannot take is
answered by a line starting with ``%`` and a space (``% Unrecognized command found at '^'
position.``); log messages sent to the terminal also start with ``%`` but not followed by a
space, and are switched off on login with ``undo terminal monitor``.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.ansible.netcommon.plugins.plugin_utils.terminal_base import TerminalBase

DOCUMENTATION = r"""
---
name: comware
short_description: Terminal plugin for H3C Comware 7 switches (porter.lb)
description:
  - Recognises Comware 7's C(<sysname>) and C([sysname-view]) prompts and its C(%) error
    lines, and on login turns off paging (C(screen-length disable)) and log messages on the
    terminal (C(undo terminal monitor)).
  - Used through C(ansible_network_os=porter.lb.comware) with
    C(ansible.netcommon.network_cli). Written from H3C's Comware 7 documentation; not yet
    run against a switch (see the collection's docs/comware.md).
version_added: 0.1.0
author:
  - porter-lb maintainers (@porter-lb)
"""

# <H3C>  [H3C]  [H3C-bgp-default]  [H3C-bgp-default-ipv4] ; a sysname has no brackets or spaces.
PROMPT_PATTERNS = (
    re.compile(rb"[\r\n]?<[^<>\[\]\s]+>\s?$"),
    re.compile(rb"[\r\n]?\[[^<>\[\]\s]+\]\s?$"),
)

ERROR_PATTERNS = (
    re.compile(rb"% (?:Unrecognized|Incomplete|Ambiguous) command found at '\^' position\."),
    re.compile(rb"% (?:Wrong parameter|Too many parameters) found at '\^' position\."),
    # any other refusal: "% " then text (log lines are "%Nov 23 ...", no space)
    re.compile(rb"(?m)^\s*% \S.*$"),
)

LOGIN_COMMANDS = (b"screen-length disable", b"undo terminal monitor")


class TerminalModule(TerminalBase):
    terminal_stdout_re = PROMPT_PATTERNS
    terminal_stderr_re = ERROR_PATTERNS
    ansi_re = (
        *TerminalBase.ansi_re,
        re.compile(rb"\x1b\[\d*[A-Za-z]"),  # cursor movement and erase sequences
        re.compile(rb"\x1b\[\d+;\d+[A-Za-z]"),
    )

    def on_open_shell(self):
        for command in LOGIN_COMMANDS:
            try:
                self._exec_cli_command(command)
            except AnsibleConnectionFailure as exc:
                raise AnsibleConnectionFailure(
                    f"Comware rejected {command.decode()!r} on login: {exc}"
                ) from exc
