"""Run every course notebook in quick mode (HFLIB_QUICK=1) and record how long each takes.
The target: all of them together in ≤ 10 minutes on 2 cores.

    python benchmarks/bench_notebooks.py            # quick mode, all notebooks
    python benchmarks/bench_notebooks.py --full     # full (lecture) mode
"""
from __future__ import annotations

from common import ROOT, parser, write_results  # noqa: I001

import os
import time

import nbformat
from nbclient import NotebookClient


def main():
    p = parser(__doc__)
    p.add_argument("--full", action="store_true", help="lecture mode instead of quick mode")
    args = p.parse_args()
    os.environ["HFLIB_QUICK"] = "0" if args.full else "1"
    rows, total = [], 0.0
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        # widget cells are skipped: nbclient can wait on their comms until its timeout (jupyter/nbclient#312);
        # nbval and the browser test run them
        NotebookClient(nb, timeout=600, kernel_name="python3", skip_cells_with_tag="widget",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        dt = time.perf_counter() - t0
        total += dt
        rows.append(f"| {path.name} | {dt:.0f} s |")
        print(rows[-1], flush=True)
    mode = "full" if args.full else "quick (HFLIB_QUICK=1)"
    lines = [f"Mode: {mode}.", "", "| notebook | run time |", "|---|---|"] + rows + [f"| **all** | **{total:.0f} s** |"]
    if not args.full:
        lines += ["", f"Target ≤ 600 s: {'met' if total <= 600 else 'missed'}."]
    write_results(f"bench_notebooks.py — notebook run times, {'full' if args.full else 'quick'} mode", lines, args)


if __name__ == "__main__":
    main()
