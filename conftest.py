"""pytest setup for the whole suite (tests/ and the notebooks under nbval).

* hflib is imported from this checkout, and TensorFlow without its start-up log lines.
* MNIST: HFLIB_DATA_DIR if set, else the shared copy beside the checkout when there is one (test
  code may name it; the library never does). Tests and notebooks that need MNIST are skipped with
  the reason and the fix when it cannot be found, except under CI=true, where missing data fails.
"""
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hflib.quiet import import_tensorflow  # noqa: E402

import_tensorflow()

_SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
if not os.environ.get("HFLIB_DATA_DIR") and _SHARED_MNIST.is_dir():
    os.environ["HFLIB_DATA_DIR"] = str(_SHARED_MNIST)

_NEEDS_MNIST = re.compile(r"load_mnist|mnist_data|task_data\(\\\"(mnist|autoencoder)|\\\"mnist-(mlp|cnn)\\\"|"
                          r"experiments\.(mnist_compare|damping_trace|pcg_vs_cg|autoencoder)")
HOW = ("MNIST not found: set HFLIB_DATA_DIR to a folder with the four IDX files, or run `make data` "
       "(downloads and verifies it once into ~/.cache/hflib/mnist)")


def pytest_configure(config):
    config.addinivalue_line("markers", "mnist: needs the MNIST files (skipped with a hint when they are absent)")


def _needs_mnist(item):
    if item.get_closest_marker("mnist"):
        return True
    path = Path(str(item.fspath))
    return path.suffix == ".ipynb" and bool(_NEEDS_MNIST.search(path.read_text()))


def pytest_collection_modifyitems(config, items):
    from hflib.data import locate

    if locate() is not None:
        return
    needing = [item for item in items if _needs_mnist(item)]
    if not needing:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise pytest.UsageError(f"{HOW} ({len(needing)} tests and notebook cells need it; CI must provide it)")
    skip = pytest.mark.skip(reason=HOW)
    for item in needing:
        item.add_marker(skip)
