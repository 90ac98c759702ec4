# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Make ``ansible_collections.porter.lb`` importable under plain pytest.

ansible-test units puts the collection root on sys.path itself; a plain
``pytest ansible_collections/porter/lb/tests/unit`` run from a checkout does
not, so add the directory that holds ``ansible_collections/`` (a namespace
package) when it is not importable yet.
"""

from __future__ import annotations

import importlib.util
import os
import sys

# .../<root>/ansible_collections/porter/lb/tests/unit/conftest.py -> <root>
_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *([os.pardir] * 5)))

if importlib.util.find_spec("ansible_collections") is None and _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
