"""Two checks that ride on nbval's own run of each notebook (so every notebook executes once).

For every cell that nbval executes (``pytest --nbval-lax notebooks/NN_topic.ipynb``):

1. **try replay** — before nbval runs the cell, each ``# try:`` suggestion in it is replayed in
   nbval's kernel (tools/try_suggestions.py): the changed cell, the rest of its Step and every
   later cell the change reaches. An unannounced error fails *this* cell's test, after nbval has
   run the cell itself, so later cells still see the notebook's own state.
2. **quiet outputs** — after nbval has run the cell, its stderr must hold no TensorFlow log line
   (tools/notebook_noise.py); the cell's test fails and lists them otherwise.

Both apply to notebooks that declare they follow notebooks/CONVENTIONS.md (notebook metadata
``"hflib_course": {"conventions": 2}``); notebooks not converted yet run under plain nbval.
``--no-try-replay`` switches the replay off (for a quick look at one notebook).

nbval's kernel is started without ``PYTEST_CURRENT_TEST`` in its environment: otherwise ipykernel does
not forward what TensorFlow's C++ code writes to file descriptor 2, and the noise check could not see
the lines a student sees in JupyterLab.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbval.kernel
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import notebook_noise  # noqa: E402
import student_copies  # noqa: E402
import try_suggestions  # noqa: E402

_start_nbval_kernel = nbval.kernel.start_new_kernel


def _start_kernel_that_forwards_fd_output(*args, **kwargs):
    kwargs.setdefault("env", notebook_noise.kernel_env())
    return _start_nbval_kernel(*args, **kwargs)


nbval.kernel.start_new_kernel = _start_kernel_that_forwards_fd_output


def pytest_addoption(parser):
    parser.addoption("--no-try-replay", action="store_true", default=False,
                     help="do not replay the notebooks' `# try:` suggestions during the nbval run")


def _checked_cell(item):
    """An nbval cell of a notebook that follows the conventions."""
    return (hasattr(item, "test_outputs") and hasattr(item, "cell") and hasattr(item.parent, "nb")
            and student_copies.follows_conventions(item.parent.nb))


def _replay_problems(item):
    nb = item.parent.nb
    index = next(i for i, cell in enumerate(nb.cells) if cell is item.cell)
    suggestions = [s for s in try_suggestions.find_suggestions(nb) if s.cell == index]
    if not suggestions:
        return []
    execute = try_suggestions.kernel_executor(item.parent.kernel.kc,
                                              timeout=item.config.option.nbval_cell_timeout or 900)
    problems = []
    for suggestion in suggestions:
        outcome = try_suggestions.replay(nb, suggestion, execute)
        problem = outcome.problem(try_suggestions.budget_s())
        if problem:
            problems.append(problem)
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if not _checked_cell(item):
        return (yield)
    problems = [] if item.config.getoption("--no-try-replay") else _replay_problems(item)
    result = yield                                   # nbval runs the cell itself
    noise = notebook_noise.output_noise(item.test_outputs)
    if noise:
        problems.append("TensorFlow log lines on stderr (use `QUICK = hflib.notebook.setup()` in the setup "
                        "cell; never import TensorFlow before it):\n  " + "\n  ".join(noise))
    if problems:
        item.raise_cell_error("; ".join(p.splitlines()[0] for p in problems), "\n\n".join(problems))
    return result
