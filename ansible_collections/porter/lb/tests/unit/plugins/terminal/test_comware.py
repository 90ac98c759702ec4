# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The comware terminal plugin's prompt and error patterns against sample Comware output.

The samples follow the prompts and error lines shown in H3C's Comware 7 documentation;
they are not captured from a switch.
"""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleConnectionFailure

from ansible_collections.porter.lb.plugins.terminal.comware import (
    ERROR_PATTERNS,
    LOGIN_COMMANDS,
    PROMPT_PATTERNS,
    TerminalModule,
)


def is_prompt(window):
    return any(p.search(window) for p in PROMPT_PATTERNS)


def is_error(window):
    return any(p.search(window) for p in ERROR_PATTERNS)


@pytest.mark.parametrize(
    "window",
    [
        b"\r\n<tor1>",
        b"\r\n<H3C-S6800.rack4>",
        b"system-view\r\nSystem View: return to User View with Ctrl+Z.\r\n[tor1]",
        b"bgp 65000\r\n[tor1-bgp-default]",
        b"address-family ipv4 unicast\r\n[tor1-bgp-default-ipv4]",
        b"route-policy PORTER-LB-EIP-IN permit node 10\r\n[tor1-route-policy-PORTER-LB-EIP-IN-10]",
    ],
)
def test_user_and_system_view_prompts_end_a_response(window):
    assert is_prompt(window)


@pytest.mark.parametrize(
    "window",
    [
        b"Undo BGP process? [Y/N]:",
        b"  ---- More ----",
        b" peer 198.51.100.0 24 group NODES\r\n #",
        b"  * - Dynamically created peer",
        b"[tor1-bgp-default] display this",
    ],
)
def test_questions_pager_and_output_lines_are_not_prompts(window):
    assert not is_prompt(window)


@pytest.mark.parametrize(
    "window",
    [
        b"peer NODES enabel\r\n                  ^\r\n"
        b" % Unrecognized command found at '^' position.\r\n",
        b"bgp\r\n    ^\r\n % Incomplete command found at '^' position.\r\n",
        b"balance 99\r\n        ^\r\n % Wrong parameter found at '^' position.\r\n",
        b"router-id 1.1.1.1 x\r\n % Too many parameters found at '^' position.\r\n",
        b"peer X as-number 1\r\n % The specified peer group doesn't exist.\r\n",
    ],
)
def test_percent_error_lines_fail_the_command(window):
    assert is_error(window)


@pytest.mark.parametrize(
    "window",
    [
        b"%Nov 23 10:00:00:123 2026 tor1 BGP/5/BGP_STATE_CHANGED: BGP.default: 198.51.100.11 "
        b"state has changed from OPENCONFIRM to ESTABLISHED.\r\n",
        b" peer NODES description 100% nodes\r\n",
        b"  198.51.100.11        65001      120      118    0       3 01:02:03 Established\r\n",
    ],
)
def test_log_messages_and_configuration_are_not_errors(window):
    assert not is_error(window)


class FakeConnection:
    def __init__(self, fail_on=None):
        self.sent = []
        self.fail_on = fail_on

    def exec_command(self, command):
        self.sent.append(command)
        if command == self.fail_on:
            raise AnsibleConnectionFailure("% Permission denied.")
        return b""


def test_login_disables_paging_and_terminal_logs():
    connection = FakeConnection()
    TerminalModule(connection).on_open_shell()
    assert connection.sent == [b"screen-length disable", b"undo terminal monitor"]
    assert tuple(connection.sent) == LOGIN_COMMANDS


def test_a_refused_login_command_names_it():
    with pytest.raises(AnsibleConnectionFailure, match="Comware rejected 'screen-length disable'"):
        TerminalModule(FakeConnection(fail_on=b"screen-length disable")).on_open_shell()
