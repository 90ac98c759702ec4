"""`porter-lb speaker-status`: one gobgpd's sessions and announced routes, as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any


def add_command(commands: Any) -> None:
    """Register `porter-lb speaker-status`."""
    status = commands.add_parser(
        "speaker-status", help="show a gobgpd's BGP sessions and locally announced routes"
    )
    status.add_argument(
        "--gobgp",
        default="unix:///run/porter-lb/gobgp.sock",
        help="gRPC target of gobgpd (default: %(default)s)",
    )
    status.add_argument("--timeout", type=float, default=5.0, help="seconds (default: %(default)s)")
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from porter_lb.routing.gobgp import GoBGP, GoBGPError  # grpcio: only for this command

    try:
        with GoBGP(args.gobgp, timeout=args.timeout) as speaker:
            speaker.wait_ready(args.timeout)
            peers = speaker.peers()
            routes = speaker.routes()
    except GoBGPError as error:
        print(f"porter-lb: {error}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "peers": [vars(p) for p in peers],
                "routes": [dataclasses.asdict(r) for r in routes],
            },
            indent=2,
        )
    )
    return 0
