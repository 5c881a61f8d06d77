"""The log-noise check of notebooks/conftest.py: TensorFlow's lines on a cell's stderr fail that cell.

The check itself runs on every nbval cell of the course (`pytest --nbval-lax notebooks/...`), so each
notebook executes once. Here: the detector on real TensorFlow lines, and the plugin end to end on
tiny notebooks — including output written straight to file descriptor 2, which is how TensorFlow's
C++ code writes and what ipykernel must forward for the check to see it.
"""
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebook_noise  # noqa: E402
import student_copies  # noqa: E402

pytest_plugins = ["pytester"]

TENSORFLOW_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796195317.758476    7583 port.cc:153] oneDNN custom operations are on. You may see slightly",
    "E0000 00:00:1796198182.901469   20652 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
    "I0000 00:00:1796195317.764217    7583 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
    "2026-11-28 10:00:00.000000: W tensorflow/core/grappler/optimizers/loop_optimizer.cc:933] Not handling type "
    "DT_DOUBLE for node",
    "WARNING:tensorflow:5 out of the last 5 calls to <function f at 0x7f> triggered tf.function retracing.",
    "This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.",
]
QUIET_LINES = [
    "/work/hflib/optimizer.py:210: UserWarning: update rejected: the loss is not finite; λ raised to 1.5",
    "  warnings.warn(",
    "100%|██████████| 40/40 [00:03<00:00, 12.1it/s, loss=0.0123]",
    "hf1000: 12.0/60 s of its budget",
    "Initial value of λ: 1.0",
]


@pytest.mark.parametrize("line", TENSORFLOW_LINES)
def test_tensorflow_lines_are_noise(line):
    assert notebook_noise.noise_lines(f"ok\n{line}\nok") == [line]


@pytest.mark.parametrize("line", QUIET_LINES)
def test_warnings_and_progress_bars_are_not_noise(line):
    assert notebook_noise.noise_lines(line) == []


def test_only_stderr_streams_count():
    outputs = [nbformat.v4.new_output("stream", name="stdout", text=TENSORFLOW_LINES[2] + "\n"),
               nbformat.v4.new_output("stream", name="stderr", text=["fine\n", TENSORFLOW_LINES[1] + "\n"]),
               nbformat.v4.new_output("display_data", data={"text/plain": TENSORFLOW_LINES[0]})]
    assert notebook_noise.output_noise(outputs) == [TENSORFLOW_LINES[1]]


def test_kernel_env_drops_the_variable_that_stops_fd_forwarding(monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "x.py::test (call)")
    monkeypatch.setenv("HFLIB_QUICK", "1")
    env = notebook_noise.kernel_env()
    assert "PYTEST_CURRENT_TEST" not in env and env["HFLIB_QUICK"] == "1"


def write_notebook(directory, name, cells, converted=True):
    """A tiny notebook of code cells (strings) in `directory`; returns its path."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if converted:
        nb.metadata[student_copies.CONVENTIONS_KEY] = {"conventions": student_copies.CONVENTIONS_VERSION}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = Path(directory) / name
    nbformat.write(nb, path)
    return path


def use_course_conftest(pytester):
    """Load notebooks/conftest.py (the real plugin) into a pytester directory."""
    real = str(ROOT / "notebooks" / "conftest.py")
    pytester.makeconftest("import runpy\n"
                          f"globals().update({{k: v for k, v in runpy.run_path({real!r}).items() if k[:2] != '__'}})\n")


def test_plugin_fails_a_cell_whose_stderr_holds_tensorflow_lines(pytester):
    use_course_conftest(pytester)
    write_notebook(pytester.path, "noisy.ipynb", [
        "import os\nos.write(2, b'E0000 00:00:1 cuda_platform.cc:52] failed call to cuInit: CUDA error\\n')",
        "import sys\nprint('WARNING:tensorflow:5 out of the last 5 calls triggered tf.function retracing', file=sys.stderr)",
        "import warnings\nwarnings.warn('a real warning of hflib')",
        "print('all good')",
    ])
    result = pytester.runpytest_subprocess("--nbval-lax", "noisy.ipynb", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*noisy.ipynb::Cell 0*", "*TensorFlow log lines on stderr*"])
    assert "failed call to cuInit" in result.stdout.str()


def test_plugin_leaves_unconverted_notebooks_to_plain_nbval(pytester):
    use_course_conftest(pytester)
    write_notebook(pytester.path, "legacy.ipynb", ["import os\nos.write(2, b'E0000 00:00:1 x.cc:1] cuInit\\n')"],
                   converted=False)
    pytester.runpytest_subprocess("--nbval-lax", "legacy.ipynb", "-p", "no:cacheprovider").assert_outcomes(passed=1)
