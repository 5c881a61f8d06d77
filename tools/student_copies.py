"""Generate student copies of the course notebooks (notebooks/student/).

A small nbconvert preprocessor of our own that honours nbgrader's markers:
the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` are replaced
by the block's ``# Hint:`` lines, ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` (same indentation), and all outputs are
cleared. We do not depend on nbgrader itself: it would pull a Jupyter server,
SQLAlchemy and Alembic into the environment for these thirty lines.

    python tools/student_copies.py            # write notebooks/student/*.ipynb
    python tools/student_copies.py --check    # exit 1 if a copy is out of date
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks"
TARGET = SOURCE / "student"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def strip_solutions(source: str) -> str:
    """Replace every solution block in a cell's source by hints and a NotImplementedError."""
    out, inside, hints, indent = [], False, [], ""
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(f"nested {BEGIN!r}")
            inside, hints, indent = True, [], line[: len(line) - len(line.lstrip())]
        elif stripped.startswith(END):
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r}")
            out += hints + [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
            inside = False
        elif inside:
            if stripped.startswith("# Hint:"):
                hints.append(line)
        else:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return "\n".join(out)


class ClearSolutions(Preprocessor):
    """nbconvert preprocessor: strip solution blocks and clear outputs."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
        return cell, resources


def student_copy(notebook):
    nb = nbformat.from_dict(notebook) if isinstance(notebook, dict) else notebook
    nb, _ = ClearSolutions().preprocess(nb, {})
    return nb


def sources():
    return sorted(SOURCE.glob("[0-9][0-9]_*.ipynb"))


def render(path: Path) -> str:
    return nbformat.writes(student_copy(nbformat.read(path, as_version=4))) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the copies are up to date")
    args = parser.parse_args(argv)
    TARGET.mkdir(exist_ok=True)
    stale = []
    for src in sources():
        dst = TARGET / src.name
        text = render(src)
        if args.check:
            if not dst.exists() or dst.read_text() != text:
                stale.append(dst.name)
        else:
            dst.write_text(text)
    expected = {s.name for s in sources()}
    extra = sorted(p.name for p in TARGET.glob("*.ipynb") if p.name not in expected)
    if args.check:
        if stale or extra:
            print(f"student copies out of date: {stale + extra}; run `make student`", file=sys.stderr)
            return 1
        print(f"student copies up to date ({len(expected)} notebooks)")
        return 0
    for name in extra:
        (TARGET / name).unlink()
    print(f"wrote {len(expected)} student notebooks to {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
