"""`porter-lb` command line: one entry point for the controller, the agent and operator checks.

Each command lives in its own module in `porter_lb.commands`, the composition root of that
command, and registers itself here with `add_command(commands)`; its `run(args)` returns the
exit status.

A user never sees a traceback for a mistake of theirs: a bad flag, a missing file, a port that
cannot be bound or credentials that cannot be loaded end the command with one line naming what
is wrong (`CommandError`, exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from porter_lb import __version__
from porter_lb.commands import (
    agent,
    audit,
    controller,
    speaker_status,
    uninstall,
    webhook,
)
from porter_lb.commands.startup import CommandError


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (`porter-lb agent: --node: ...`), no usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="porter-lb", description="porter-lb: bare-metal load balancer for Kubernetes"
    )
    parser.add_argument("--version", action="version", version=f"porter-lb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command in (speaker_status, controller, webhook, agent, audit, uninstall):
        command.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CommandError as error:
        print(f"porter-lb {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
