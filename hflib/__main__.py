"""Command line: `python -m hflib train …` and `python -m hflib demo`.

    python -m hflib demo                                   # HF vs SGD on the sine task
    python -m hflib train --task mnist --optimizer hf --batch-size 1000 --epochs 3
    python -m hflib train --task sine --optimizer sgd --lr 0.1 --epochs 50
    python -m hflib train --task mnist --optimizer hf --checkpoint-dir ckpt --resume
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_BATCH = {("sine", "hf"): 1000, ("sine", "sgd"): 100, ("sine", "adam"): 100,
                 ("mnist", "hf"): 1000, ("mnist", "sgd"): 100, ("mnist", "adam"): 128}
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}
DEFAULT_DAMPING = {"sine": 0.01, "mnist": 1.0}
DEFAULT_DAMPING_MIN = {"sine": 1e-6, "mnist": 0.1}


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m hflib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one model with one optimizer",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--task", choices=["sine", "mnist"], default="sine",
                       help="sine: report §V.A (1-15-15-1 ReLU, squared error); mnist: §V.B")
    train.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                       help="mnist only: the report's 784-800-10 MLP or the small CNN")
    train.add_argument("--optimizer", choices=["hf", "sgd", "adam"], default="hf",
                       help="Hessian-free (Algorithm 1) or a first-order baseline")
    train.add_argument("--batch-size", type=int, default=None,
                       help="default: HF 1000, SGD 100, Adam 100 (sine) / 128 (mnist)")
    train.add_argument("--curvature-batch-size", type=int, default=None,
                       help="HF: use only this many examples of each batch for G·v (Martens)")
    train.add_argument("--epochs", type=int, default=None, help="default: sine 100, mnist 3 (quick: fewer)")
    train.add_argument("--r", type=float, default=1.5, help="HF: LM factor of eq. (26)")
    train.add_argument("--eps", type=float, default=5e-4, help="HF: CG tolerance ε")
    train.add_argument("--damping", type=float, default=None, help="HF: initial λ₀ (default: sine 0.01, mnist 1)")
    train.add_argument("--damping-min", type=float, default=None,
                       help="HF: floor of λ (default: sine 1e-6, mnist 0.1 — on small MNIST batches the LM rule, "
                            "judging ρ on the batch it fits, drives λ so low that steps overfit the batch)")
    train.add_argument("--min-iters", type=int, default=3, help="HF: minimum CG iterations")
    train.add_argument("--max-iters", type=int, default=250, help="HF: maximum CG iterations")
    train.add_argument("--preconditioner", choices=["martens", "report", "chapelle_erhan", "none"],
                       default="martens", help="HF: CG preconditioner")
    train.add_argument("--lr", type=float, default=None, help="SGD/Adam learning rate (default: SGD 0.1, Adam 1e-3)")
    train.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the data order")
    train.add_argument("--eval-every", type=int, default=None,
                       help="evaluate on the test set every N updates (default: each epoch)")
    train.add_argument("--max-seconds", type=float, default=None, help="stop after this much training time")
    train.add_argument("--checkpoint-dir", default=None, help="write checkpoints here (atomically)")
    train.add_argument("--checkpoint-every", type=int, default=None, help="updates between checkpoints (default: epoch)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint-dir")
    train.add_argument("--data-dir", default=None, help="MNIST IDX files (default: $HFLIB_DATA_DIR, cache, download)")
    train.add_argument("--out", default=None, help="folder for history.json/.csv and the plot (default: runs/TASK-OPT)")
    train.add_argument("--quick", action="store_true", help="small quick mode (also HFLIB_QUICK=1)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="HF vs SGD on the sine task: table and plot",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--epochs", type=int, default=None, help="default: 100 (quick: 20)")
    demo.add_argument("--out", default="runs/demo", help="folder for the plot and histories")
    demo.add_argument("--quick", action="store_true", help="small quick mode (also HFLIB_QUICK=1)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        os.environ["HFLIB_QUICK"] = "1"
    import matplotlib
    matplotlib.use("Agg")
    import hflib
    print(f"hflib {hflib.__version__} on {hflib.device.describe()}", flush=True)
    if args.command == "demo":
        return demo(args)
    return train(args)


def train(args):
    from hflib import data, experiments, models, plotting
    from hflib.optimizer import HessianFree
    from hflib.training import FirstOrder

    quick = experiments.is_quick()
    if args.task == "sine":
        x, y = data.make_sine_data(seed=args.seed)
        validation = (x, y)
        model, loss = models.sine_mlp(seed=args.seed), "squared_error"
        epochs = args.epochs or (20 if quick else 100)
    else:
        (x, y), validation = experiments.mnist_data(quick, path=args.data_dir, flatten=args.model == "mlp")
        model = models.mnist_mlp(seed=args.seed) if args.model == "mlp" else models.mnist_cnn(seed=args.seed)
        loss = "softmax_cross_entropy"
        epochs = args.epochs or (1 if quick else 3)
    batch = args.batch_size or DEFAULT_BATCH[(args.task, args.optimizer)]
    batch = min(batch, len(x))
    if args.optimizer == "hf":
        trainer = HessianFree(model, loss, seed=args.seed, damping=args.damping or DEFAULT_DAMPING[args.task],
                              damping_min=args.damping_min or DEFAULT_DAMPING_MIN[args.task], r=args.r, tol=args.eps,
                              min_iters=args.min_iters, max_iters=args.max_iters,
                              preconditioner=args.preconditioner, curvature_batch_size=args.curvature_batch_size)
    else:
        trainer = FirstOrder(model, loss, args.optimizer, learning_rate=args.lr or DEFAULT_LR[args.optimizer],
                             seed=args.seed)
    history = trainer.fit((x, y), epochs=epochs, batch_size=batch, validation_data=validation,
                          validation_every=args.eval_every, checkpoint_dir=args.checkpoint_dir,
                          checkpoint_every=args.checkpoint_every, resume=args.resume,
                          max_seconds=args.max_seconds, progress=not args.no_progress)
    out = Path(args.out or f"runs/{args.task}-{args.optimizer}")
    out.mkdir(parents=True, exist_ok=True)
    history.to_json(out / "history.json")
    history.to_csv(out / "history.csv")
    plotting.use_lecture_style()
    fig = plotting.plot_run_summary(history, title=f"{args.task}: {args.optimizer} (batch {batch})")
    fig.savefig(out / "history.png", dpi=110, bbox_inches="tight")
    final = {k: history.last(k) for k in ("loss", "val_loss", "val_error", "time") if k in history.keys()}
    print(json.dumps({"updates": len(history), **final}, indent=1))
    print(f"wrote {out}/history.json, history.csv, history.png")
    return 0


def demo(args):
    from hflib import experiments, plotting

    plotting.use_lecture_style()
    runs = experiments.sine(epochs=args.epochs, progress=False)
    summary = experiments.sine_summary(runs)
    print(f"\nNoisy sine (report §V.A): HF batch 1000 vs SGD batch 100 (learning rate chosen from "
          f"{sorted(runs['sgd_grid'])} by final loss: η = {runs['sgd'].settings['learning_rate']})")
    print(f"target: the loss both reach, {summary['target_loss']:.4f}\n")
    print(f"{'method':8} {'epochs to target':>17} {'seconds to target':>18} {'final loss':>11} {'train s':>8}")
    for name in ("hf", "sgd"):
        s = summary[name]
        print(f"{name.upper():8} {s['epochs']:>17.1f} {s['seconds']:>18.2f} {s['final_loss']:>11.5f} "
              f"{s['train_seconds']:>8.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = plotting.plot_sine_comparison(runs)
    fig.savefig(out / "sine.png", dpi=110, bbox_inches="tight")
    for name in ("hf", "sgd"):
        runs[name].history.to_json(out / f"{name}_history.json")
    print(f"\nwrote {out}/sine.png and the histories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
