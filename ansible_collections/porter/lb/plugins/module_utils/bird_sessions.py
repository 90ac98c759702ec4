# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The live BGP sessions of a BIRD 2 router, read from ``birdc show protocols all``
(bird_bgp's ``gathered``; re-exported by bird_bgp.py).

Pure Python: standard library only, no I/O, no Ansible imports.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Session", "parse_show_protocols_all"]


@dataclasses.dataclass(frozen=True)
class Session:
    """One BGP protocol as ``birdc show protocols all`` reports it."""

    name: str
    neighbor: str | None
    state: str  # the BGP state: Idle, Connect, Active, OpenSent, OpenConfirm, Established
    protocol_state: str  # BIRD's: up, start, down
    neighbor_as: int | None = None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def parse_show_protocols_all(text: str) -> list[Session]:
    """The BGP protocols in ``birdc show protocols all`` output, in the order shown."""
    sessions: list[Session] = []
    current: dict[str, object] | None = None

    def flush() -> None:
        if current is not None:
            sessions.append(Session(**current))  # type: ignore[arg-type]

    for raw in text.splitlines():
        if raw and not raw[0].isspace():
            fields = raw.split()
            flush()
            current = None
            if len(fields) >= 4 and fields[1] == "BGP":
                current = {
                    "name": fields[0],
                    "neighbor": None,
                    "state": fields[5] if len(fields) > 5 else "",
                    "protocol_state": fields[3],
                    "neighbor_as": None,
                }
            continue
        if current is None:
            continue
        line = raw.strip()
        if line.startswith("BGP state:"):
            current["state"] = line.split(":", 1)[1].strip()
        elif line.startswith("Neighbor address:"):
            current["neighbor"] = line.split(":", 1)[1].strip().split("%")[0]
        elif line.startswith("Neighbor AS:"):
            current["neighbor_as"] = int(line.split(":", 1)[1].strip())
    flush()
    return sessions
