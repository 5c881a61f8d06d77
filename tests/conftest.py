"""Test helpers live in tests/helpers_core.py; the suite-wide setup is the repository's conftest.py."""
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
