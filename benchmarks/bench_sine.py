"""The sine experiment (report §V.A, Fig. 2): HF at batch 1000 vs SGD at batch 100 with the best
learning rate of a small grid; epochs and seconds to reach a training loss both reach, and the
final losses.

    python benchmarks/bench_sine.py            # 100 epochs
    python benchmarks/bench_sine.py --quick    # 20 epochs; no RESULTS.md entry
"""
from __future__ import annotations

from common import is_quick, parser, write_results  # noqa: I001

from hflib import experiments


def main():
    args = parser(__doc__).parse_args()
    quick = is_quick(args)
    if quick:
        args.no_write = True
    runs = experiments.sine(quick=quick, progress=False)
    s = experiments.sine_summary(runs)
    lines = [f"Target training loss (the loss both reach, ×1.05): {s['target_loss']:.4f}. SGD grid "
             f"{ {k: round(v, 4) for k, v in runs['sgd_grid'].items()} } → η = {runs['sgd'].settings['learning_rate']}.", "",
             "| method | batch | epochs to target | updates to target | seconds to target | final loss | training seconds |",
             "|---|---|---|---|---|---|---|"]
    for name in ("hf", "sgd"):
        r = s[name]
        lines.append(f"| {runs[name].label} | {runs[name].settings['batch_size']} | {r['epochs']:.0f} | {r['updates']:.0f} | "
                     f"{r['seconds']:.2f} | {r['final_loss']:.5f} | {r['train_seconds']:.2f} |")
    lines += ["", f"HF settings: {runs['hf'].settings}. Loss is ½·mean squared error on all 2000 points "
              "(noise floor ½·0.1² = 0.005); time excludes compilation and evaluation."]
    write_results("bench_sine.py — noisy sine, HF vs SGD (Fig. 2)", lines, args)


if __name__ == "__main__":
    main()
