"""`# try:` suggestions (tools/try_suggestions.py): their machine-readable form, what a replay runs, and
the replay itself.

Every suggestion of every notebook that follows notebooks/CONVENTIONS.md is replayed during the nbval
run of the course (notebooks/conftest.py: before nbval runs a cell, its suggestions run in the same
kernel, so each notebook executes once). Notebooks 04–08 are covered the moment their metadata declares
the conventions. Here: the static checks of all notebooks, the parts of the replay on synthetic
notebooks, and the plugin end to end on tiny notebooks.
"""
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import student_copies  # noqa: E402
import try_suggestions as ts  # noqa: E402
from test_notebook_noise import use_course_conftest, write_notebook  # noqa: E402

pytest_plugins = ["pytester"]
NOTEBOOKS = student_copies.sources()
CONVERTED = [p for p in NOTEBOOKS if student_copies.follows_conventions(nbformat.read(p, as_version=4))]


# ------------------------------------------------------------------ the form
@pytest.mark.parametrize("line,expected", [
    ("# try: kappa = 100", ("", "kappa = 100", ("kappa",))),
    ("    # try: eta = 1.0  # no zig-zag", ("", "eta = 1.0", ("eta",))),
    ("# try[slow]: BATCH = 1000", ("slow", "BATCH = 1000", ("BATCH",))),
    ("# try[fails]: R = 3.0  # breaks the λ check", ("fails", "R = 3.0", ("R",))),
    ("# try: a, b = 1, (2, 3)", ("", "a, b = (1, (2, 3))", ("a", "b"))),
    ("# try: start = np.array([0.0, 2.0])", ("", "start = np.array([0.0, 2.0])", ("start",))),
])
def test_try_lines_parse(line, expected):
    assert ts.parse_line(line) == expected


@pytest.mark.parametrize("line", ["x = 1", "# tries: x = 1", "# a try: x = 1", "print('# try: x = 1')"])
def test_other_lines_are_not_suggestions(line):
    assert ts.parse_line(line) is None


@pytest.mark.parametrize("line,message", [
    ("# try: LAM = 1e-3 or LAM = 10", "one Python assignment"),
    ("# try: a bigger batch", "one Python assignment"),
    ("# try: x += 1", "exactly one assignment"),
    ("# try: x = 1; y = 2", "exactly one assignment"),
    ("# try: d['k'] = 1", "plain names"),
    ("# try[often]: x = 1", "unknown mark"),
])
def test_free_text_suggestions_are_refused(line, message):
    with pytest.raises(ts.SuggestionError, match=message):
        ts.parse_line(line)


@pytest.mark.parametrize("path", CONVERTED, ids=lambda p: p.name)
def test_every_suggestion_of_a_converted_notebook_is_machine_readable(path):
    nb = nbformat.read(path, as_version=4)
    suggestions = ts.find_suggestions(nb)
    for s in suggestions:                       # the cell assigns what the suggestion changes
        assert s.statement in ts.variant_source(nb.cells[s.cell].source, s)
        ts.replay_cells(nb, s)
    lines = [line for cell in nb.cells if cell.cell_type == "code" for line in cell.source.splitlines()
             if line.lstrip().startswith("# try")]
    assert len(lines) == len(suggestions)


@pytest.mark.parametrize("path", CONVERTED, ids=lambda p: p.name)
def test_each_converted_notebook_invites_changes(path):
    assert ts.find_suggestions(nbformat.read(path, as_version=4)), f"{path.name}: no `# try:` suggestion"


# ------------------------------------------------------------------ what a replay runs
def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, *tags in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def test_variant_assigns_after_the_first_binding():
    s = ts.Suggestion(0, 0, "n = 3", ("n",), "")
    source = "# try: n = 3\nimport math\nn, m = 10, 2\nn = n + 1\ntotal = n * m"
    assert ts.variant_source(source, s).splitlines()[2:5] == ["n, m = 10, 2", "n = 3", "n = n + 1"]
    with pytest.raises(ts.SuggestionError, match="never assigns"):
        ts.variant_source("m = 1", s)


def test_replay_runs_the_step_and_every_later_cell_the_change_reaches():
    nb = _notebook(
        ("code", "import numpy as np"),                                              # 0 setup
        ("markdown", "## Step 1"),
        ("code", "# try: n = 5\nn = 3\nsquares = [i * i for i in range(n)]"),        # 2 the suggestion
        ("code", "assert len(squares) == n"),                                        # 3 same Step
        ("code", "unrelated = 1"),                                                   # 4 same Step
        ("markdown", "## Step 2"),
        ("code", "helper = lambda v: 2 * v\nlimit = 10"),                            # 6 needed by 8 only
        ("code", "other = np.ones(4)"),                                              # 7 unrelated
        ("code", "total = helper(sum(squares))\nassert total < limit ** 3"),         # 8 reads `squares`
        ("code", "double = 2 * total"),                                              # 9 reads `total`
        ("code", "for i in range(3):\n    other[i] = i"),                           # 10 rebinds `i` only
        ("code", "squares = [0]\nprint(squares)"),                                   # 11 rebinds first
        ("code", "display_me = n", "widget"),                                        # 12 a widget cell
    )
    s = ts.find_suggestions(nb)[0]
    assert s == ts.Suggestion(2, 0, "n = 5", ("n",), "")
    assert ts.replay_cells(nb, s) == [3, 4, 6, 8, 9]


def test_in_place_changes_and_functions_carry_the_change():
    nb = _notebook(
        ("code", "# try: scale = 2.0\nscale = 1.0"),
        ("code", "values = []\nfor k in range(3):\n    values.append(scale * k)"),     # mutates `values`
        ("code", "def f(t):\n    local = t * scale\n    return local"),               # reads `scale` at call time
        ("markdown", "## Step 2"),
        ("code", "assert values[-1] <= 4"),
        ("code", "assert f(1) > 0"),
        ("code", "def g(scale):\n    return scale\nassert g(1) == 1"),              # a parameter, not the global
    )
    assert ts.replay_cells(nb, ts.find_suggestions(nb)[0]) == [1, 2, 4, 5]


def test_outcome_sentences():
    plain, fails, slow = (ts.Suggestion(3, 0, "x = 1", ("x",), mark) for mark in ("", "fails", "slow"))
    assert ts.Outcome(plain, [], 1.0, False).problem(30) is None
    assert "breaks cell 7: AssertionError: no" in ts.Outcome(plain, [(7, "AssertionError", "no")], 1.0, False).problem(30)
    assert "mark it `# try[slow]:`" in ts.Outcome(plain, [], 31.0, False).problem(30)
    assert ts.Outcome(fails, [(7, "AssertionError", "")], 1.0, False).problem(30) is None
    assert "announced to fail" in ts.Outcome(fails, [], 1.0, False).problem(30)
    assert ts.Outcome(slow, [], 99.0, False).problem(30) is None


def test_replay_stops_at_the_first_error_and_skips_slow_suggestions():
    nb = _notebook(("code", "# try: x = 0\nx = 1"), ("code", "assert x"), ("code", "y = 1 / x"))
    calls = []

    def execute(source):
        calls.append(source)
        return ("AssertionError", "") if source == "assert x" else None

    outcome = ts.replay(nb, ts.find_suggestions(nb)[0], execute)
    assert outcome.errors == [(1, "AssertionError", "")] and len(calls) == 2
    slow = ts.Suggestion(0, 0, "x = 0", ("x",), "slow")
    assert ts.replay(nb, slow, execute, run_slow=False).skipped


# ------------------------------------------------------------------ end to end, through nbval
def test_plugin_replays_suggestions_and_reports_unannounced_failures(pytester):
    use_course_conftest(pytester)
    write_notebook(pytester.path, "tries.ipynb", [
        "# try: n = 4  # fine: the check follows n\n# try: n = 30  # breaks the limit below\n"
        "# try[fails]: n = 0  # announced: the ratio then divides by zero\n"
        "# try[fails]: n = 5  # announced, but nothing fails\nn = 3\nlimit = 10",
        "assert sum(range(n)) == n * (n - 1) // 2\nassert n < limit",
        "ratio = 1 / n",
    ])
    result = pytester.runpytest_subprocess("--nbval-lax", "tries.ipynb", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "`# try: n = 30` breaks cell 1: AssertionError" in out
    assert "`# try[fails]: n = 5`: announced to fail, but every replayed cell passed" in out
    assert "n = 4`" not in out and "n = 0`" not in out
    quiet = pytester.runpytest_subprocess("--nbval-lax", "tries.ipynb", "-p", "no:cacheprovider", "--no-try-replay")
    quiet.assert_outcomes(passed=3)
