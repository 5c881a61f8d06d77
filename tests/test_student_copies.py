"""Student copies: generated from the instructor notebooks, up to date, named and bannered as copies,
without model answers, and failing only at check cells, each with a sentence naming its exercise."""
import ast
import builtins
import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebook_noise  # noqa: E402
import student_copies as sc  # noqa: E402

SOURCES = sc.sources()
# Notebooks that declare they follow notebooks/CONVENTIONS.md (metadata "hflib_course": {"conventions": 2}).
# The others are not converted yet: their check cells may read results of earlier cells (so their copies
# run in full), their thinking exercises need no model answers, and their outputs are not checked for noise.
CONVERTED = [p for p in SOURCES if sc.follows_conventions(nbformat.read(p, as_version=4))]
LEGACY = {p.stem for p in SOURCES} - {p.stem for p in CONVERTED}


def _cell(kind, source, tags=()):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


# ------------------------------------------------------------------ the transformation
def test_strip_solutions_keeps_indentation_and_hints_and_names_the_exercise():
    src = ("def f(x):\n"
           "    ### BEGIN SOLUTION\n"
           "    # Hint: square it\n"
           "    return x * x\n"
           "    ### END SOLUTION\n"
           "\n"
           "y = 1")
    assert sc.strip_solutions(src, 2) == ("def f(x):\n"
                                          "    # Hint: square it\n"
                                          "    # YOUR CODE HERE\n"
                                          '    raise NotImplementedError("Exercise 2 is not solved yet: implement `f` above")\n'
                                          "\n"
                                          "y = 1")


def test_the_innermost_enclosing_function_is_named():
    src = ("def outer():\n    def helper(v):\n        ### BEGIN SOLUTION\n        return v\n        ### END SOLUTION\n"
           "    return helper\n")
    assert "implement `helper` above" in sc.strip_solutions(src, 1)


@pytest.mark.parametrize("src", ["def f():\n    ### BEGIN SOLUTION\n    x = 1", "x = 1\n### END SOLUTION",
                                 "def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION",
                                 "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"])
def test_malformed_solution_blocks_are_refused(src):
    with pytest.raises(ValueError, match="SOLUTION"):
        sc.strip_solutions(src, 1)


def test_student_copy_banner_answers_hints_checks_and_links():
    nb = nbformat.v4.new_notebook()
    hint = _cell("markdown", "**Hint.** use a loop", ["hint"])
    hint.metadata["jupyter"] = {"source_hidden": True}
    nb.cells = [
        _cell("markdown", "[next](01_newton.ipynb) · [readme](../README.md) · [web](https://example.org) · [top](#x)"),
        _cell("markdown", "### Exercise 3 — squares"),
        hint,
        _cell("code", "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION"),
        _cell("code", "# Check your solution\nassert square(3) == 9", ["exercise-check"]),
        _cell("markdown", "### Exercise 4 — why (no code)"),
        _cell("markdown", "**Model answer.** because", ["model-answer"]),
    ]
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="old output")]
    copy = sc.student_copy(nb, "00_index.ipynb")
    assert "Student copy — solutions removed" in copy.cells[0].source and "student-banner" in _tags(copy.cells[0])
    assert "[next](01_newton_student.ipynb)" in copy.cells[1].source
    assert "(../../README.md)" in copy.cells[1].source and "(https://example.org)" in copy.cells[1].source
    assert "(#x)" in copy.cells[1].source
    assert not any("model-answer" in _tags(c) for c in copy.cells)
    kept_hint = [c for c in copy.cells if "hint" in _tags(c)]
    assert len(kept_hint) == 1 and kept_hint[0].metadata["jupyter"]["source_hidden"] is True
    exercise = next(c for c in copy.cells if c.cell_type == "code" and "def square" in c.source)
    assert "x * x" not in exercise.source and "Exercise 3 is not solved yet: implement `square` above" in exercise.source
    check = next(c for c in copy.cells if "exercise-check" in _tags(c))
    assert "raises-exception" in _tags(check) and check.outputs == []
    assert nb.cells[4].outputs, "the instructor notebook must be left unchanged"


def test_an_exercise_without_its_heading_is_refused():
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell("code", "def f():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION")]
    with pytest.raises(ValueError, match="### Exercise N"):
        sc.student_copy(nb)


# ------------------------------------------------------------------ the generated copies
def test_there_are_notebooks():
    assert len(SOURCES) >= 9, [p.name for p in SOURCES]
    assert {"00_index", "01_newton", "02_gauss_newton", "03_fast_products"} <= {p.stem for p in CONVERTED}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_student_copy_is_up_to_date(path):
    target = sc.student_path(path)
    assert target.name == f"{path.stem}_student.ipynb"
    assert target.exists(), f"{target} missing: run `make student`"
    assert target.read_text() == sc.render(path), f"{target.name} is out of date: run `make student`"


def test_no_other_notebooks_in_the_student_folder():
    expected = {sc.student_path(p).name for p in SOURCES}
    stray = sorted(p.name for p in sc.TARGET.glob("*.ipynb") if p.name not in expected)
    assert not stray, f"not generated from an instructor notebook (old names?): {stray}; run `make student`"


def _exercises(nb):
    """[(number, exercise cell index or None, check cell index or None, has model answer)] in order."""
    found, current = [], None
    for i, cell in enumerate(nb.cells):
        number = sc.exercise_number(cell.source) if cell.cell_type == "markdown" else None
        if number is not None:
            current = [number, None, None, False]
            found.append(current)
        elif current is not None:
            if cell.cell_type == "code" and sc.BEGIN in cell.source:
                current[1] = i
            elif sc.CHECK_TAG in _tags(cell):
                current[2] = i
            elif sc.ANSWER_TAG in _tags(cell):
                current[3] = True
    return [tuple(e) for e in found]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_each_exercise_cell_is_followed_by_its_check_cell(path):
    nb = nbformat.read(path, as_version=4)
    coded = [e for e in _exercises(nb) if e[1] is not None]
    if path.name[:2] >= "02":
        assert len(coded) >= 2, f"{path.name}: at least two coding exercises expected"
    assert len(coded) == sum(sc.BEGIN in c.source for c in nb.cells if c.cell_type == "code")
    for number, exercise, check, _ in coded:
        nxt = next(j for j in range(exercise + 1, len(nb.cells)) if nb.cells[j].cell_type == "code")
        assert nxt == check, f"{path.name}: Exercise {number} (cell {exercise}) is not followed by its check cell"
        assert nb.cells[check].source.startswith("# Check your solution")


@pytest.mark.parametrize("path", CONVERTED, ids=lambda p: p.name)
def test_exercises_are_numbered_and_thinking_exercises_have_model_answers(path):
    exercises = _exercises(nbformat.read(path, as_version=4))
    assert [e[0] for e in exercises] == list(range(1, len(exercises) + 1)), f"{path.name}: numbering"
    for number, exercise, _, answered in exercises:
        assert exercise is not None or answered, f"{path.name}: Exercise {number} has neither code nor a model answer"


def _top_level_bindings(source):
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
            names |= {a.arg for a in node.args.args + node.args.kwonlyargs}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.comprehension):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("path", CONVERTED, ids=lambda p: p.name)
def test_check_cells_use_only_the_setup_cell_and_their_exercise(path):
    """A check cell must not wait for a heavy cell: it may read only names of the setup cell, of its own
    exercise cell and its own."""
    nb = nbformat.read(path, as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    allowed = set(dir(builtins)) | _top_level_bindings(setup.source)
    for number, exercise, check, _ in _exercises(nb):
        if check is None:
            continue
        own = allowed | _top_level_bindings(nb.cells[exercise].source) | _top_level_bindings(nb.cells[check].source)
        reads = {n.id for n in ast.walk(ast.parse(nb.cells[check].source))
                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert reads <= own, f"{path.name}: the check of Exercise {number} reads {sorted(reads - own)} from earlier cells"


def _expected_messages(nb):
    """{check cell index: the sentence its unsolved exercise raises}."""
    out = {}
    for number, exercise, check, _ in _exercises(nb):
        if exercise is not None:
            stripped = sc.strip_solutions(nb.cells[exercise].source, number)
            name = stripped.split("implement `", 1)[1].split("`", 1)[0]
            out[check] = sc.not_solved_message(number, name)
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_student_copy_fails_only_at_check_cells_with_a_plain_message(path, monkeypatch):
    """Run the student copy: exactly the check cells fail, each saying which exercise is not solved yet,
    and no cell prints TensorFlow log lines. Converted notebooks run only the setup, exercise and check
    cells (their checks need nothing else); legacy ones run in full, widget cells excepted."""
    from nbclient import NotebookClient

    copy = nbformat.reads(sc.render(path), as_version=4)
    source_nb = nbformat.read(path, as_version=4)
    # the copy has the banner first and no model answers: map check cells through their sources
    expected = {nb_index: message for nb_index, message in _expected_messages(source_nb).items()}
    checks = {source_nb.cells[i].source: message for i, message in expected.items()}
    if path.stem in LEGACY:
        keep = [c for c in copy.cells if c.cell_type == "code"]
    else:
        first_code = next(c for c in copy.cells if c.cell_type == "code")
        keep = [first_code] + [c for c in copy.cells if c.cell_type == "code"
                               and ("NotImplementedError(" in c.source or sc.CHECK_TAG in _tags(c))]
    run = nbformat.v4.new_notebook(metadata=copy.metadata)
    run.cells = keep
    monkeypatch.setenv("HFLIB_QUICK", os.environ.get("HFLIB_QUICK", "1"))
    # widget cells are skipped: they hold no exercise, and nbclient can stall on widget comms (nbclient#312)
    client = NotebookClient(run, timeout=900, kernel_name="python3", allow_errors=True, skip_cells_with_tag="widget",
                            resources={"metadata": {"path": str(sc.TARGET)}})
    client.execute(env=notebook_noise.kernel_env())       # a kernel that forwards fd 2, as JupyterLab's does
    failed = {}
    for cell in run.cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            failed[cell.source] = (errors[0]["ename"], errors[0]["evalue"])
    assert set(failed) == set(checks), (f"{path.name}: failing cells {[s[:40] for s in failed]} "
                                        f"vs check cells {[s[:40] for s in checks]}")
    for src, (ename, evalue) in failed.items():
        assert (ename, evalue) == ("NotImplementedError", checks[src]), (ename, evalue)
    noise = notebook_noise.notebook_noise(run)
    if path.stem not in LEGACY:
        assert not noise, f"{path.name}: TensorFlow log lines in the student copy: {noise}"
