"""Network namespaces as porter-lb's `--netns` options name them: "" (the process's own), a
name under /run/netns, or an absolute path. The one helper of the agent's host rules and of
layer 2 (and of the lab, which runs agents in the host namespace beside their nodes')."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["entered", "netns_path"]


def netns_path(netns: str) -> str:
    """The namespace's path: "" (own namespace), a name under /run/netns, or a path."""
    if not netns or netns.startswith("/"):
        return netns
    return f"/run/netns/{netns}"


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """Run the block with THIS thread in network namespace `netns` ("" : stay), then return."""
    path = netns_path(netns)
    if not path:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            os.setns(target, os.CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            os.setns(own, os.CLONE_NEWNET)
    finally:
        os.close(own)
