"""Shared by the benchmarks: percentiles, and writing results as JSON plus a readable table."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def report(
    name: str,
    rows: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    *,
    table: bool = True,
) -> Path:
    """Write bench/results/<name>.json and print a table of metric, value, target, verdict
    (`table=False`: the caller prints its own).

    Each row: {"metric", "value", "unit", "target" (same unit, upper bound, or None)}.
    """
    RESULTS.mkdir(exist_ok=True)
    for row in rows:
        target = row.get("target")
        row["meets_target"] = None if target is None else row["value"] <= target
    document = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "results": rows,
        **(extra or {}),
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    if not table:
        print(f"(written to {path.relative_to(RESULTS.parent.parent)})")
        return path
    width = max(len(r["metric"]) for r in rows)
    print(f"\n{name}")
    print(f"{'metric':<{width}}  {'value':>12}  {'target':>12}  verdict")
    for row in rows:
        value = f"{row['value']:.4g} {row['unit']}"
        target = "-" if row.get("target") is None else f"<= {row['target']:g} {row['unit']}"
        verdict = {True: "ok", False: "MISSED", None: ""}[row["meets_target"]]
        print(f"{row['metric']:<{width}}  {value:>12}  {target:>12}  {verdict}")
    print(f"(written to {path.relative_to(RESULTS.parent.parent)})")
    return path


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def print_side_by_side(rows: list[dict[str, Any]]) -> None:
    """Print rows of {"metric", "value" (porter-lb), "metallb", "ratio", "unit"} as a table;
    a figure not measured (None) shows as "-"."""

    def cell(value: float | None, unit: str) -> str:
        return f"{'-':>9}   " if value is None else f"{value:>9.4g} {unit:<2}"

    width = max(len(r["metric"]) for r in rows)
    print(f"\n{'metric':<{width}}  {'porter-lb':>12}  {'MetalLB':>12}  {'ratio':>6}")
    for row in rows:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(
            f"{row['metric']:<{width}}  {cell(row['value'], row['unit'])}"
            f"  {cell(row['metallb'], row['unit'])}  {ratio:>6}"
        )


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
