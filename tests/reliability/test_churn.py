"""Churn soak: up to 10,000 random steps (90 s at most) against the running system, then
nothing may drift (porter_lab.reliability.churn runs it; bench/churn_soak.py reports its
figures).

Whatever the timing, once the walk stops and the system has settled: the router's kernel FIB
is exactly the desired routes of the final cluster state, no IP is leaked or double-booked,
the allocator would change nothing, no porter-lb process crashed or logged an error, and
their memory stayed flat over the second half of the walk.
"""

from __future__ import annotations

from pathlib import Path

from porter_lab.reliability.churn import STEP_KINDS, ChurnConfig, fib_summary, run_churn

# Memory is a behaviour check with a generous margin: RSS at the end of the walk within 25%
# of RSS half way (the bench's target is 10%).
RSS_GROWTH_BOUND = 0.25


def test_churn_soak_ends_with_the_fib_equal_to_the_desired_routes_and_nothing_leaked(
    bed_prerequisites: None, tmp_path: Path
) -> None:
    # 10,000 steps take 100-210 s on this 2-core machine, depending on what else runs; the
    # walk stops at 90 s whatever the count (several thousand steps, every kind many times
    # over), to keep the suite short; bench/churn_soak.py has no such cap.
    result = run_churn(ChurnConfig(steps=10_000, seed=7, max_seconds=90), tmp_path)
    print(
        f"{result.steps} steps in {result.seconds:.0f} s ({result.steps_per_second:.0f}/s), "
        f"quiescent after {result.quiesce_seconds} s; {result.by_kind}; final {result.final}; "
        f"memory {result.memory}"
    )
    assert result.steps >= 1000, "the walk did too little to mean anything"
    assert set(result.by_kind) == set(STEP_KINDS), result.by_kind
    assert result.api_errors == [], result.api_errors[:10]
    assert result.crashed == [], f"porter-lb processes exited: {result.crashed}"
    assert result.log_problems == [], result.log_problems[:10]
    assert result.checks.routes["in_sync"], fib_summary(result.checks.routes)
    assert result.checks.leaks == [], result.checks.leaks[:10]
    assert result.checks.unsettled == [], result.checks.unsettled[:10]
    assert result.checks.metrics == [], result.checks.metrics
    assert result.quiesce_seconds is not None, "the checks passed, but never for long"
    assert result.final["desired_prefixes"] > 0, "nothing announced at the end: a vacuous check"
    for name, memory in result.memory.items():
        assert memory.growth < RSS_GROWTH_BOUND, f"{name}: RSS grew {memory}"
