"""Record notebook 07's long MNIST experiments, so that a lecture can replay them (notebooks/recorded/).

Three experiments, each run as `hflib.experiments` runs it in the notebook, one after another:
- the race of the report's Fig. 3: HF at batch 75, 250 and 1000, SGD and Adam, `--seconds` training
  seconds each (evaluation and compilation excluded) -> notebooks/recorded/mnist_race.json;
- PCG against plain CG (Fig. 4), batch 100, `--pcg-seconds` each -> notebooks/recorded/mnist_pcg.json;
- the λ trace at batch 75 (Fig. 1) for r = 1.5 and 1.01, `--trace-updates` updates each, without the
  default floor of λ (100/B = 1.33 at B = 75 would hold λ there; the report has no floor)
  -> notebooks/recorded/mnist_damping_trace.json.

    python benchmarks/bench_mnist_race.py                 # 300 s per race run, 180 s per PCG run, 800 updates
    python benchmarks/bench_mnist_race.py --quick         # smoke test on the quick subsets; writes nothing
"""
from __future__ import annotations

from common import RECORDED, is_quick, parser, write_recorded, write_results  # noqa: I001

import time

import numpy as np

from hflib import experiments

TRACE_FLOOR = 1e-6   # the report's setting: no floor of λ to speak of


def thin(records, every=10):
    """HF's records whole (the notebook reads λ, CG iterations and the step rate of every update); of a
    first-order run's thousands of updates, the evaluations and every `every`-th update."""
    if any("damping" in r for r in records):
        return records
    return [r for i, r in enumerate(records) if i % every == 0 or r.get("val_error") is not None]


def as_recorded(runs):
    """{key: {label, settings, history records}} for write_recorded."""
    return {key: {"label": run.label, "settings": run.settings, "history": thin(run.history.records)}
            for key, run in runs.items()}


def row(key, run):
    h = run.history
    err = np.asarray(h["val_error"], dtype=float)
    best = int(np.nanargmin(err))
    cg = f"{np.nanmean(h['cg_iters']):.1f}" if "cg_iters" in h.keys() else "—"
    return (f"| {key} | {run.label} | {len(h)} | {h['epoch'][-1]:.1f} | {h['time'][-1]:.0f} | {1000 * h['time'][-1] / len(h):.1f} | {cg} | "
            f"{100 * err[best]:.2f}% ({h['time'][best]:.0f} s) | {100 * h.last('val_error'):.2f}% |")


def main():
    p = parser(__doc__)
    p.add_argument("--seconds", type=float, default=300, help="training seconds per race run")
    p.add_argument("--pcg-seconds", type=float, default=180, help="training seconds per PCG/CG run")
    p.add_argument("--trace-updates", type=int, default=800, help="updates per λ-trace run")
    args = p.parse_args()
    quick = is_quick(args)
    if quick:
        args.no_write = True
        args.seconds, args.pcg_seconds, args.trace_updates = 5, 5, 20
    start = time.perf_counter()
    task = experiments.mnist_data(quick)
    race = experiments.mnist_compare(seconds=args.seconds, quick=quick, task=task)
    pcg = experiments.pcg_vs_cg(batch_size=100, seconds=args.pcg_seconds, quick=quick, task=task)
    trace = experiments.damping_trace(batch_size=75, rs=(1.5, 1.01), updates=args.trace_updates, quick=quick,
                                      task=task, damping_min=TRACE_FLOOR)
    wall = time.perf_counter() - start
    lines = ["| key | run | updates | epochs | training s | ms per update | CG iterations per update | "
             "best test error (at s) | last test error |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [row(k, r) for k, r in {**race, **pcg}.items()]
    lines += ["", "| λ trace (batch 75) | updates | λ at the end | smallest λ | largest λ |", "|---|---|---|---|---|"]
    for r in trace.values():
        lam = np.asarray(r.history["damping"], dtype=float)
        lines.append(f"| {r.label} | {len(lam)} | {lam[-1]:.3g} | {lam.min():.3g} | {lam.max():.3g} |")
    data = "quick subsets" if quick else "all 60,000 training images, test error on the 10,000 test images"
    lines += ["", f"MNIST 784-800-10, {data}; race "
              f"{args.seconds:.0f} s and PCG/CG {args.pcg_seconds:.0f} s of training per run (evaluation and "
              f"compilation excluded; a run also ends at the preset's epochs), λ traces {args.trace_updates} updates with λ ≥ {TRACE_FLOOR:g}; wall time {wall:.0f} s. Recorded in "
              "`notebooks/recorded/mnist_race.json`, `mnist_pcg.json`, `mnist_damping_trace.json` "
              "(notebook 07 replays them)."]
    if not args.no_write:
        extra = {"wall_seconds": round(wall, 1)}
        write_recorded(RECORDED / "mnist_race.json", as_recorded(race), seconds_per_run=args.seconds, **extra)
        write_recorded(RECORDED / "mnist_pcg.json", as_recorded(pcg), seconds_per_run=args.pcg_seconds, **extra)
        write_recorded(RECORDED / "mnist_damping_trace.json", as_recorded(trace), updates=args.trace_updates,
                       **extra)
    write_results("bench_mnist_race.py — notebook 07's recorded experiments (race, PCG vs CG, λ trace)", lines,
                  args)


if __name__ == "__main__":
    main()
