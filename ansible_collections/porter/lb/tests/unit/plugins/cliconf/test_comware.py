# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The comware cliconf plugin's own logic, over a recorded fake connection (no switch)."""

from __future__ import annotations

import json
import os

import pytest
from ansible.errors import AnsibleConnectionFailure

from ansible_collections.porter.lb.plugins.cliconf.comware import (
    Cliconf,
    config_command,
    device_info,
    session_commands,
)

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "comware")


class FakeConnection:
    """Records what the plugin sends; answers from a table, failing where told (as
    network_cli does when a terminal_stderr_re pattern matches)."""

    connected = True

    def __init__(self, answers=None, fail_on=None, prompt=b"<tor1>"):
        self.sent = []
        self.answers = answers or {}
        self.fail_on = fail_on
        self.prompt = prompt

    def send(self, command, **kwargs):
        text = command.decode()
        self.sent.append((text, kwargs.get("prompt"), kwargs.get("answer")))
        if text == self.fail_on:
            raise AnsibleConnectionFailure(
                "% Unrecognized command found at '^' position.",
            )
        return self.answers.get(text, b"")

    def get_prompt(self):
        return self.prompt

    def queue_message(self, *args):
        pass


def sent(connection):
    return [entry[0] for entry in connection.sent]


def test_edit_config_enters_system_view_sends_each_command_and_returns():
    connection = FakeConnection()
    result = Cliconf(connection).edit_config(["bgp 65000", "router-id 198.51.100.1", "quit"])
    assert sent(connection) == [
        "system-view",
        "bgp 65000",
        "router-id 198.51.100.1",
        "quit",
        "return",
    ]
    assert result["request"] == ["bgp 65000", "router-id 198.51.100.1", "quit"]


def test_a_confirmation_prompt_is_answered_as_given():
    connection = FakeConnection()
    Cliconf(connection).edit_config(
        [{"command": "undo bgp 65000", "prompt": r"\[Y/N\]:", "answer": "Y"}]
    )
    assert connection.sent[1] == ("undo bgp 65000", rb"\[Y/N\]:", b"Y")


def test_a_rejected_command_stops_the_run_returns_to_user_view_and_is_named():
    connection = FakeConnection(fail_on="peer NODES enable")
    with pytest.raises(AnsibleConnectionFailure) as caught:
        Cliconf(connection).edit_config(
            ["bgp 65000", "address-family ipv4 unicast", "peer NODES enable", "quit", "quit"]
        )
    assert sent(connection) == [
        "system-view",
        "bgp 65000",
        "address-family ipv4 unicast",
        "peer NODES enable",
        "return",
    ]
    assert "Comware rejected 'peer NODES enable' (after 2 command(s) applied)" in str(caught.value)
    assert "Unrecognized command" in str(caught.value)


def test_there_is_no_candidate_configuration():
    with pytest.raises(ValueError, match="commit=False"):
        Cliconf(FakeConnection()).edit_config(["bgp 65000"], commit=False)
    with pytest.raises(ValueError, match="replace is not supported"):
        Cliconf(FakeConnection()).edit_config(["bgp 65000"], replace=True)


def test_get_config_displays_the_current_or_saved_configuration():
    connection = FakeConnection(answers={"display current-configuration": b"#\nbgp 65000\n#"})
    assert Cliconf(connection).get_config() == b"#\nbgp 65000\n#"
    assert config_command("running", ["configuration bgp"]) == (
        "display current-configuration configuration bgp"
    )
    assert config_command("startup") == "display saved-configuration"
    with pytest.raises(ValueError, match="source 'candidate'"):
        config_command("candidate")


def test_session_commands_wrap_strings_and_dicts():
    assert session_commands(["a", {"command": "b", "answer": "Y"}]) == [
        {"command": "system-view"},
        {"command": "a"},
        {"command": "b", "answer": "Y"},
        {"command": "return"},
    ]


def test_device_info_from_display_version_and_the_prompt():
    with open(os.path.join(FIXTURES, "display_version.txt")) as stream:
        text = stream.read()
    assert device_info(text, "<tor1>") == {
        "network_os": "comware",
        "network_os_version": "7.1.070 Release 2612",
        "network_os_model": "S6800-54QF",
        "network_os_hostname": "tor1",
    }
    assert device_info("", "[tor1-bgp-default]")["network_os_hostname"] == "tor1"


def test_capabilities_say_no_commit_no_replace():
    connection = FakeConnection(answers={"display version": b"H3C Comware Software"})
    capabilities = json.loads(Cliconf(connection).get_capabilities())
    assert capabilities["network_api"] == "cliconf"
    assert capabilities["device_operations"]["supports_commit"] is False
    assert capabilities["device_operations"]["supports_replace"] is False
    assert "edit_config" in capabilities["rpc"]


def test_prompt_context_leaves_system_view_with_return():
    connection = FakeConnection(prompt=b"[tor1-bgp-default]")
    cliconf = Cliconf(connection)

    def send(command, **kwargs):
        FakeConnection.send(connection, command, **kwargs)
        connection.prompt = b"<tor1>"
        return b""

    connection.send = send
    cliconf.set_cli_prompt_context()
    assert sent(connection) == ["return"]
