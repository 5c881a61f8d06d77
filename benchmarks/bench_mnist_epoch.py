"""One HF epoch on MNIST with the report's MLP 784-800-10 at batch 1000 (issue "MNIST for real").

Reports wall time, seconds per update, mean CG iterations per update, peak memory growth and
the test error after the epoch.

    python benchmarks/bench_mnist_epoch.py            # full MNIST, one epoch (60 updates)
    python benchmarks/bench_mnist_epoch.py --quick    # 2,000-image subset; no RESULTS.md entry
"""
from __future__ import annotations

from common import is_quick, parser, peak_rss_delta, write_results  # noqa: I001

import numpy as np

import hflib
from hflib import experiments


def main():
    p = parser(__doc__)
    p.add_argument("--batch-size", type=int, default=1000)
    args = p.parse_args()
    quick = is_quick(args)
    if quick:
        args.no_write = True
    mnist = experiments.mnist_data(quick)
    result = {}

    def epoch():
        result["run"] = experiments.run("mnist-mlp", "hf", batch_size=args.batch_size, epochs=1, quick=quick,
                                        task=mnist, eval_every=10 ** 9, progress=False)

    memory = peak_rss_delta(epoch)
    run = result["run"]
    h = run.history
    test = hflib.evaluate(run.model, "softmax_cross_entropy", *mnist[1])
    lines = ["| images | batch | updates | wall time (training) | s / update | mean CG iterations | peak memory growth | test error after the epoch |",
             "|---|---|---|---|---|---|---|---|",
             f"| {len(mnist[0][0]):,} | {args.batch_size} | {len(h)} | {h['time'][-1]:.1f} s | {h['time'][-1] / len(h):.2f} | "
             f"{np.mean(h['cg_iters']):.1f} | {memory / 2**20:.0f} MiB | {100 * test['error']:.2f}% |",
             "", f"HF with the mnist-mlp preset: {run.settings}. Wall time excludes compilation and evaluation; peak memory is the "
             "growth of the process's peak RSS during the epoch (data already loaded)."]
    write_results("bench_mnist_epoch.py — one HF epoch, MLP 784-800-10", lines, args)


if __name__ == "__main__":
    main()
