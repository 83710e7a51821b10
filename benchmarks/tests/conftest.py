"""The benchmark scripts' tests: they import the scripts as modules (``import peers``)."""

from __future__ import annotations

import sys
from pathlib import Path

# The scripts import each other as siblings (python benchmarks/x.py puts
# benchmarks/ first on sys.path); the tests import them the same way.
_BENCHMARKS = str(Path(__file__).resolve().parents[1])
if _BENCHMARKS not in sys.path:
    sys.path.insert(0, _BENCHMARKS)
