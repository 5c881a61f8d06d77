"""Generate the student copies of the course notebooks: notebooks/student/NN_topic_student.ipynb.

A small nbconvert preprocessor of our own that honours nbgrader's solution markers (we do not
depend on nbgrader: it would pull a Jupyter server, SQLAlchemy and Alembic in for these lines).
A student copy differs from its instructor notebook in five ways (notebooks/CONVENTIONS.md):

1. its name ends in ``_student`` and its first cell is a banner, "Student copy — solutions removed";
2. in every exercise cell (the code cell after the markdown heading ``### Exercise N — title``)
   the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` become the block's ``# Hint:`` lines, ``# YOUR CODE HERE`` and
   ``raise NotImplementedError("Exercise N is not solved yet: implement `name` above")``, so that
   the check cell of an unsolved exercise fails with that plain sentence;
3. cells tagged ``model-answer`` are removed (hint cells, tagged ``hint``, stay collapsed);
4. check cells (tag ``exercise-check``) get the tag ``raises-exception``, so that "Run All" in
   JupyterLab runs past an unsolved exercise and every later exercise can still be checked;
5. outputs are cleared, and links to other notebooks point at their student copies.

    python tools/student_copies.py            # write notebooks/student/*_student.ipynb
    python tools/student_copies.py --check    # exit 1 if a copy is missing or out of date
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks"
TARGET = SOURCE / "student"
SUFFIX = "_student"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
# "### Exercise 2 — title" (the convention) or "**Exercise 2 — title.**" (older notebooks)
EXERCISE_HEADING = re.compile(r"^(?:#{2,4}\s+|\*\*)Exercise\s+(\d+)\b")
CHECK_TAG, HINT_TAG, ANSWER_TAG, BANNER_TAG = "exercise-check", "hint", "model-answer", "student-banner"
RUN_PAST_TAG = "raises-exception"          # JupyterLab (and nbval) let "Run All" continue past it
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


CONVENTIONS_KEY, CONVENTIONS_VERSION = "hflib_course", 2


def follows_conventions(nb) -> bool:
    """True when the notebook's metadata declares it follows notebooks/CONVENTIONS.md
    (``"hflib_course": {"conventions": 2}``); the stricter checks apply to those notebooks."""
    return nb.get("metadata", {}).get(CONVENTIONS_KEY, {}).get("conventions") == CONVENTIONS_VERSION


def sources():
    """The instructor notebooks, in course order."""
    return sorted(SOURCE.glob("[0-9][0-9]_*.ipynb"))


def student_path(source: Path) -> Path:
    return TARGET / f"{source.stem}{SUFFIX}.ipynb"


def not_solved_message(number, name):
    """The sentence an unsolved exercise raises (and its check cell therefore shows)."""
    return f"Exercise {number} is not solved yet: implement `{name}` above"


def exercise_number(markdown: str):
    """N when a markdown cell starts with the heading ``### Exercise N — title``, else None."""
    match = EXERCISE_HEADING.match(markdown.lstrip())
    return int(match.group(1)) if match else None


def strip_solutions(source: str, number: int) -> str:
    """Replace every solution block by its hints and a NotImplementedError naming the exercise.

    The name is that of the innermost function that encloses the block (a solution must sit in a
    function body, so that no other cell can depend on it).
    """
    out, inside, hints, indent, name = [], False, [], "", None
    functions = []                                  # (indent, name) of the enclosing defs
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(f"nested {BEGIN!r}")
            indent = line[: len(line) - len(line.lstrip())]
            enclosing = [n for i, n in functions if len(i) < len(indent)]
            if not enclosing:
                raise ValueError(f"Exercise {number}: the {BEGIN!r} block must sit inside a function body")
            inside, hints, name = True, [], enclosing[-1]
        elif stripped.startswith(END):
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r}")
            message = not_solved_message(number, name).replace('"', '\\"')
            out += hints + [f"{indent}# YOUR CODE HERE", f'{indent}raise NotImplementedError("{message}")']
            inside = False
        elif inside:
            if stripped.startswith("# Hint:"):
                hints.append(line)
        else:
            match = _DEF.match(line)
            if match:
                functions = [(i, n) for i, n in functions if len(i) < len(match.group(1))]
                functions.append((match.group(1), match.group(2)))
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return "\n".join(out)


def banner(source_name: str):
    """The first cell of every student copy."""
    cell = nbformat.v4.new_markdown_cell(
        f"> **Student copy — solutions removed.** This is `{Path(source_name).stem}{SUFFIX}.ipynb`; the "
        f"instructor notebook with the solutions is [`{source_name}`](../{source_name}).\n"
        "> Every exercise raises `NotImplementedError` until you solve it, and its check cell then says "
        "plainly which exercise is not solved yet. \"Run All\" runs past those cells, so each exercise "
        "can be solved and checked on its own.")
    cell.metadata["tags"] = [BANNER_TAG]
    cell["id"] = BANNER_TAG                         # fixed, so that a copy is reproducible byte for byte
    return cell


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _relink(markdown, known):
    """Links from notebooks/ seen from notebooks/student/: notebooks to their copies, the rest one up."""
    def replace(match):
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):          # a URL, an anchor, an absolute path
            return match.group(0)
        path, _, anchor = target.partition("#")
        if path in known:
            path = f"{Path(path).stem}{SUFFIX}.ipynb"
        else:
            path = f"../{path}"
        return f"{match.group(1)}{path}{'#' + anchor if anchor else ''}{match.group(3)}"
    return _LINK.sub(replace, markdown)


class StudentCopy(Preprocessor):
    """nbconvert preprocessor: strip solutions, drop model answers, clear outputs, relink."""

    def preprocess(self, nb, resources):
        known = resources.get("notebooks", set())
        cells, number = [], None
        for cell in nb.cells:
            if cell.cell_type == "markdown" and exercise_number(cell.source) is not None:
                number = exercise_number(cell.source)
            if ANSWER_TAG in _tags(cell):
                continue
            cell = copy.deepcopy(cell)
            if cell.cell_type == "code":
                if BEGIN in cell.source:
                    if number is None:
                        raise ValueError("an exercise cell must follow a markdown cell headed '### Exercise N — "
                                         f"title': {cell.source[:60]!r}")
                    cell.source = strip_solutions(cell.source, number)
                    number = None                        # one exercise cell per heading
                if CHECK_TAG in _tags(cell) and RUN_PAST_TAG not in _tags(cell):
                    cell.metadata["tags"] = [*_tags(cell), RUN_PAST_TAG]
                cell.outputs = []
                cell.execution_count = None
            elif cell.cell_type == "markdown":
                cell.source = _relink(cell.source, known)
            cells.append(cell)
        nb.cells = [banner(resources["source_name"]), *cells]
        return nb, resources


def student_copy(notebook, source_name="notebook.ipynb"):
    """The student copy of a notebook (a NotebookNode or a dict); the input is left unchanged."""
    nb = copy.deepcopy(nbformat.from_dict(notebook) if isinstance(notebook, dict) else notebook)
    resources = {"source_name": source_name, "notebooks": {p.name for p in sources()}}
    nb, _ = StudentCopy().preprocess(nb, resources)
    return nb


def render(path: Path) -> str:
    return nbformat.writes(student_copy(nbformat.read(path, as_version=4), path.name)) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the copies are up to date")
    args = parser.parse_args(argv)
    TARGET.mkdir(exist_ok=True)
    expected = {student_path(s).name: s for s in sources()}
    stale = []
    for name, src in expected.items():
        dst, text = TARGET / name, render(src)
        if args.check:
            if not dst.exists() or dst.read_text() != text:
                stale.append(name)
        else:
            dst.write_text(text)
    extra = sorted(p.name for p in TARGET.glob("*.ipynb") if p.name not in expected)
    if args.check:
        if stale or extra:
            print(f"student copies out of date: {stale}; not generated from a notebook: {extra}; "
                  f"run `make student`", file=sys.stderr)
            return 1
        print(f"student copies up to date ({len(expected)} notebooks)")
        return 0
    for name in extra:                               # e.g. copies under the old names NN_topic.ipynb
        (TARGET / name).unlink()
    print(f"wrote {len(expected)} student notebooks to {TARGET.relative_to(ROOT)}"
          + (f"; removed {extra}" if extra else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
