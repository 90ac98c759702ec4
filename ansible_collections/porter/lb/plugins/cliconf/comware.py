# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Cliconf plugin for H3C Comware 7: read the configuration, push commands in system-view.

Comware has no candidate configuration: each command takes effect as it is entered.
``edit_config`` therefore enters ``system-view``, sends the commands one by one (the
terminal plugin turns a ``%`` error line into a failure), and goes back to user view with
``return`` - also after a failure, so the next call starts from user view.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: comware
short_description: Cliconf plugin for H3C Comware 7 switches (porter.lb)
description:
  - Reads the configuration with C(display current-configuration) and sends configuration
    commands in C(system-view), one at a time, stopping at the first one the switch rejects
    and returning to user view (C(return)) either way.
  - Used through C(ansible_network_os=porter.lb.comware) with
    C(ansible.netcommon.network_cli), by M(porter.lb.comware_bgp). Written from H3C's
    Comware 7 documentation; not yet run against a switch (see the collection's
    docs/comware.md).
version_added: 0.1.0
author:
  - porter-lb maintainers (@porter-lb)
"""

import contextlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
from collections.abc import Mapping  # noqa: E402

from ansible.errors import AnsibleConnectionFailure  # noqa: E402
from ansible.module_utils.common.text.converters import to_text  # noqa: E402

from ansible_collections.ansible.netcommon.plugins.plugin_utils.cliconf_base import CliconfBase  # noqa: E402

SOURCES = {"running": "display current-configuration", "startup": "display saved-configuration"}


def config_command(source="running", flags=None):
    """The display command for a configuration source, with filter flags appended
    (e.g. ``["configuration bgp"]``)."""
    if source not in SOURCES:
        raise ValueError(
            f"source {source!r}: Comware has {' and '.join(sorted(SOURCES))} configurations"
        )
    return " ".join([SOURCES[source], *(flags or [])])


def session_commands(candidate):
    """The command dicts sent for a candidate: ``system-view``, the commands, ``return``."""
    commands = [{"command": "system-view"}]
    for command in candidate:
        commands.append(dict(command) if isinstance(command, Mapping) else {"command": command})
    commands.append({"command": "return"})
    return commands


def device_info(version_text, prompt):
    """network_os facts from ``display version`` and the prompt."""
    info = {"network_os": "comware"}
    match = re.search(r"Comware Software, Version (\S+?),? Release (\S+)", version_text)
    if match:
        info["network_os_version"] = f"{match.group(1)} Release {match.group(2)}"
    match = re.search(r"^(?:H3C|HPE?) (\S+) uptime is", version_text, re.M)
    if match:
        info["network_os_model"] = match.group(1)
    match = re.search(r"[<\[]([^<>\[\]\s-]+)", prompt or "")
    if match:
        info["network_os_hostname"] = match.group(1)
    return info


class Cliconf(CliconfBase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._device_info = {}

    def get_device_info(self):
        if not self._device_info:
            version = to_text(self.get("display version"), errors="surrogate_or_strict")
            prompt = to_text(self._connection.get_prompt(), errors="surrogate_or_strict")
            self._device_info = device_info(version, prompt)
        return self._device_info

    def get_config(self, source="running", flags=None, format=None):
        if format not in (None, "text"):
            raise ValueError(f"format {format!r}: Comware configurations are text")
        return self.send_command(config_command(source, flags))

    def edit_config(self, candidate=None, commit=True, replace=None, diff=False, comment=None):
        operations = self.get_device_operations()
        self.check_edit_config_capability(operations, candidate, commit, replace, comment)
        if not commit:
            raise ValueError(
                "commit=False: Comware applies each command as it is entered; there is no "
                "candidate configuration to discard"
            )
        requests, responses = [], []
        commands = session_commands(candidate)
        for command in commands[:-1]:
            try:
                responses.append(self.send_command(**command))
            except AnsibleConnectionFailure as exc:
                self._leave_system_view()
                raise AnsibleConnectionFailure(
                    f"Comware rejected {command['command']!r} "
                    f"(after {len(requests)} command(s) applied): {exc}"
                ) from exc
            if command["command"] != "system-view":
                requests.append(command["command"])
        self.send_command(**commands[-1])
        return {"request": requests, "response": responses}

    def _leave_system_view(self):
        # the connection may be failing anyway; the original error is the one to report
        with contextlib.suppress(AnsibleConnectionFailure):
            self.send_command("return")

    def get_device_operations(self):
        return {
            "supports_diff_replace": False,
            "supports_commit": False,
            "supports_rollback": False,
            "supports_defaults": False,
            "supports_onbox_diff": False,
            "supports_commit_comment": False,
            "supports_multiline_delimiter": False,
            "supports_diff_match": False,
            "supports_diff_ignore_lines": False,
            "supports_generate_diff": False,
            "supports_replace": False,
        }

    def get_option_values(self):
        return {"format": ["text"], "diff_match": [], "diff_replace": [], "output": []}

    def get_capabilities(self):
        result = super().get_capabilities()
        result["device_operations"] = self.get_device_operations()
        result.update(self.get_option_values())
        return json.dumps(result)

    def set_cli_prompt_context(self):
        """Make sure the CLI is in user view (``<sysname>``), leaving any system view."""
        if self._connection.connected:
            self._update_cli_prompt_context(config_context="]", exit_command="return")
