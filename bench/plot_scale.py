"""Plot bench/results/peers_scale.json (bench/peers_scale.py) into docs/peers-scale.png.

Four panels against the number of Services, one line per system and node count (solid: the
larger node count, dashed: the smaller): cold start to the last route in the router's FIB,
first start to the last IP in status (with the floor: one status write per Service at the
rate this machine's API server took them in the same run), CPU seconds and RSS of everything
the system ran during the cold start.

    python -m pip install -r requirements/bench.txt   # matplotlib, once
    python bench/plot_scale.py [--results bench/results/peers_scale.json] [--out docs/...]
    python bench/plot_scale.py --markdown   # the README's table from the same results
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERIES = {  # key in a point -> (label, colour)
    "cold porter-lb node": ("porter-lb, node mode", "tab:blue"),
    "cold porter-lb central": ("porter-lb, central mode", "tab:green"),
    "cold metallb": ("MetalLB", "tab:red"),
}
FIRST = {
    "first porter-lb": ("porter-lb", "tab:blue"),
    "first metallb": ("MetalLB", "tab:red"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench/results/peers_scale.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/peers-scale.png")
    parser.add_argument("--markdown", action="store_true", help="print the table, no plot")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.results.read_text())["points"]))
        return 0
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: python -m pip install -r requirements/bench.txt")
        return 2
    document = json.loads(args.results.read_text())
    points: list[dict[str, Any]] = document["points"]
    node_counts = sorted({p["nodes"] for p in points})
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        (axes[0][0], "cold start -> every route in the FIB", "s", SERIES, "seconds"),
        (axes[0][1], "first start -> every IP in status (log scale)", "s", FIRST, "seconds"),
        (axes[1][0], "CPU used by the cold start (all processes)", "CPU s", SERIES, "cpu_s"),
        (axes[1][1], "RSS after the cold start (all processes)", "MB", SERIES, "rss_mb"),
    ]
    for axis, title, unit, series, field in panels:
        for nodes in node_counts:
            style = "-" if nodes == node_counts[-1] else "--"
            mine = sorted((p for p in points if p["nodes"] == nodes), key=lambda p: p["services"])
            xs = [p["services"] for p in mine]
            for key, (label, colour) in series.items():
                # Not measured (or timed out): a gap in the line.
                ys = [_value(p.get(key, {}).get(field)) for p in mine]
                axis.plot(xs, ys, style, color=colour, marker="o", label=f"{label}, {nodes} nodes")
            if series is FIRST:
                floor = [
                    p["services"] / p["first porter-lb"]["floor_writes_per_s"]
                    if "first porter-lb" in p
                    else math.nan
                    for p in mine
                ]
                axis.plot(xs, floor, style, color="grey", label=f"floor, {nodes} nodes")
        if series is FIRST:
            axis.set_yscale("log")  # MetalLB's first start is ten times porter-lb's
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("Services")
        axis.set_ylabel(unit)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    machine = document.get("machine", {})
    figure.suptitle(
        f"porter-lb and MetalLB v0.15.2 side by side, one run ({document.get('when', '')}, "
        f"{machine.get('cpus', '?')} CPUs)",
        fontsize=11,
    )
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=90)
    print(f"written to {args.out}")
    return 0


def _value(value: float | None) -> float:
    return math.nan if value is None else float(value)


def markdown(points: list[dict[str, Any]]) -> str:
    """One row per point: first start (with the floor), cold start of each run with the
    ratio to MetalLB, CPU and RSS per node of the node-mode runs."""

    def get(point: dict[str, Any], key: str, field: str) -> float | None:
        value = point.get(key, {}).get(field)
        return None if value is None else float(value)

    def mark(point: dict[str, Any], key: str) -> str:
        """A figure the results call disturbed (another job ran meanwhile) gets a star."""
        return "*" if point.get(key, {}).get("disturbed") else ""

    def num(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    def ratio(mine: float | None, peer: float | None) -> str:
        return "-" if mine is None or not peer else f"{mine / peer:.2f}"

    lines = [
        "| Services x nodes | first start: porter-lb / MetalLB (floor) | cold start: porter-lb"
        " node / central / MetalLB | ratio node / central | CPU of the cold start: porter-lb"
        " node / MetalLB | RSS per node: porter-lb / MetalLB |",
        "|---|---|---|---|---|---|",
    ]
    for point in sorted(points, key=lambda p: (p["nodes"], p["services"])):
        first_mine = get(point, "first porter-lb", "seconds")
        first_peer = get(point, "first metallb", "seconds")
        rate = get(point, "first porter-lb", "floor_writes_per_s")
        floor = point["services"] / rate if rate else None
        node = get(point, "cold porter-lb node", "seconds")
        central = get(point, "cold porter-lb central", "seconds")
        peer = get(point, "cold metallb", "seconds")
        timed_out = point.get("cold metallb", {}).get("timed_out_after_s")
        peer_text = f"> {timed_out:,}" if timed_out else num(peer)
        lines.append(
            f"| {point['services']:,} x {point['nodes']} "
            f"| {num(first_mine)}{mark(point, 'first porter-lb')} / {num(first_peer)} s "
            f"({num(floor)} s) "
            f"| {num(node)} / {num(central)}{mark(point, 'cold porter-lb central')} / "
            f"{peer_text} s "
            f"| {ratio(node, peer)} / {ratio(central, peer)} "
            f"| {num(get(point, 'cold porter-lb node', 'cpu_s'), 0)} / "
            f"{num(get(point, 'cold metallb', 'cpu_s'), 0)} s "
            f"| {num(get(point, 'cold porter-lb node', 'node_rss_mb'), 0)} / "
            f"{num(get(point, 'cold metallb', 'node_rss_mb'), 0)} MB |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
