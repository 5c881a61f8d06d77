"""Run the course notebooks top to bottom and record how long each takes, in lecture and in quick mode.

Targets (issue 13): lecture mode (the default, HFLIB_QUICK unset) ≤ 8 minutes per notebook and ≤ 40 minutes
for the course; quick mode (HFLIB_QUICK=1, CI) ≤ 10 minutes for all notebooks together. Widget cells are
skipped (nbval and the browser test run them); recorded figures are replayed, live reruns stay off.

    python benchmarks/bench_notebooks.py                           # both modes, every notebook
    python benchmarks/bench_notebooks.py --modes quick             # quick mode only
    python benchmarks/bench_notebooks.py --modes lecture 04 05     # lecture mode, notebooks 04 and 05
"""
from __future__ import annotations

from common import ROOT, load, parser, write_results  # noqa: I001

import os
import time

import nbformat
from nbclient import NotebookClient

MODES = {"lecture": "0", "quick": "1"}
TARGETS_S = {"lecture": 8 * 60, "quick": 60}


def run_notebook(path, mode):
    """Wall time of one top-to-bottom run of the notebook at `path` in `mode` (seconds)."""
    os.environ["HFLIB_QUICK"] = MODES[mode]
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    # widget cells are skipped: nbclient can wait on their comms until its timeout (jupyter/nbclient#312)
    NotebookClient(nb, timeout=1200, kernel_name="python3", skip_cells_with_tag="widget",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - t0


def main():
    p = parser(__doc__)
    p.add_argument("--modes", default="lecture,quick", help="comma-separated: lecture, quick")
    p.add_argument("notebooks", nargs="*", help="notebook numbers or names (default: all)")
    args = p.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        p.error(f"--modes: expected a comma-separated subset of {sorted(MODES)}, got {args.modes!r}")
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        paths = [q for q in paths if any(q.name.startswith(n) for n in args.notebooks)]
        if not paths:
            p.error(f"no notebook matches {args.notebooks}")
    times = {m: {} for m in modes}
    for path in paths:
        for mode in modes:
            times[mode][path.name] = run_notebook(path, mode)
            print(f"{path.name} {mode}: {times[mode][path.name]:.0f} s (load {load():.1f})", flush=True)
    header = "| notebook | " + " | ".join(f"{m} mode" for m in modes) + " |"
    lines = [header, "|---|" + "---|" * len(modes)]
    for path in paths:
        lines.append(f"| {path.name} | " + " | ".join(
            f"{times[m][path.name]:.0f} s" + ("" if times[m][path.name] <= TARGETS_S[m] else " (over target)")
            for m in modes) + " |")
    totals = {m: sum(times[m].values()) for m in modes}
    lines.append("| **all** | " + " | ".join(f"**{totals[m]:.0f} s**" for m in modes) + " |")
    lines += ["", "Targets: lecture mode ≤ 480 s per notebook and ≤ 2400 s in all; quick mode ≤ 600 s in all "
              "(≤ 60 s each is the style guide's aim). Widget cells skipped; recorded figures replayed, live "
              "reruns off. The machine is shared: the load average is printed above."]
    if len(paths) < 9:
        lines.append(f"Only {len(paths)} notebook(s) run in this entry; the totals cover those.")
    write_results("bench_notebooks.py — notebook run times, lecture and quick mode", lines, args)


if __name__ == "__main__":
    main()
