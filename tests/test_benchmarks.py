"""Smoke tests: every benchmark script runs in its quick mode and leaves RESULTS.md alone."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["bench_products.py", "bench_sine.py", "bench_mnist_epoch.py", "bench_time_to_accuracy.py"]


@pytest.mark.mnist
@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode_runs(script):
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    env = {**os.environ, "HFLIB_QUICK": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--no-write"],
                         capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "|" in out.stdout                                  # printed its table
    after = results.read_text() if results.exists() else None
    assert before == after
