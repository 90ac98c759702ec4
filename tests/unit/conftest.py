"""Hypothesis profiles for the property-based tests (tests/unit/test_properties_*.py).

* ``dev`` (the default): a modest number of examples per test, so every property file runs
  in seconds on a 2-core machine.
* ``ci`` (chosen when ``CI`` is set to ``true``): the same budget, derandomized, so a CI run
  explores the same examples every time and a failure reproduces.
* ``long``: for a deeper local search, e.g.
  ``HYPOTHESIS_PROFILE=long pytest tests/unit/test_properties_allocator.py``
  (thousands of examples per test; expect minutes).

``HYPOTHESIS_PROFILE`` names the profile explicitly and wins over ``CI``. Failing examples
are saved outside the checkout, in ``$PORTER_LB_CACHE/hypothesis`` (default
``~/.cache/porter-lb``), and replayed first on the next local run; CI saves none.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

_CACHE = Path(os.environ.get("PORTER_LB_CACHE") or Path.home() / ".cache/porter-lb")

settings.register_profile(
    "dev",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=DirectoryBasedExampleDatabase(_CACHE / "hypothesis"),
)
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True, database=None)
settings.register_profile(
    "long", parent=settings.get_profile("dev"), max_examples=3000, print_blob=True
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)
