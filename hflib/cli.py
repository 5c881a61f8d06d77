"""Command line (layer 4): `python -m hflib train|demo|presets|data`.

    python -m hflib demo                                       # HF vs SGD on the sine task
    python -m hflib train --task mnist-mlp --epochs 3          # HF with the preset's settings
    python -m hflib train --task sine --optimizer sgd --lr 0.1 --epochs 50
    python -m hflib train --task mnist-mlp --checkpoint-dir ckpt --resume
    python -m hflib presets                                    # every preset and why it differs
    python -m hflib data                                       # fetch and verify MNIST once

Every HF option left out takes the preset's value, else HFConfig's default. A bad value ends with
a one-line usage error and exit status 2; Ctrl-C or SIGTERM during `train` stops after the
current update, writes what was done (History files, and a checkpoint with --checkpoint-dir) and
exits with status 130.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from . import checks

# HFConfig fields exposed as options: flag -> (field, type, help)
HF_OPTIONS = {
    "--initial-damping": ("initial_damping", "positive", "λ₀, the damping at the first update (eq. 20)"),
    "--r": ("r", "factor", "LM factor r > 1 of eq. (26)"),
    "--tol": ("tol", "positive", "ε of CG's stopping rule"),
    "--min-iters": ("min_iters", "count", "minimum CG iterations"),
    "--max-iters": ("max_iters", "count", "maximum CG iterations"),
    "--window": ("window", ("martens", "report"), "CG stopping window"),
    "--warm-start": ("warm_start", "fraction", "factor on the previous CG solution used as CG's start"),
    "--preconditioner": ("preconditioner", ("martens", "report", "chapelle_erhan", "none"), "CG preconditioner"),
    "--damping-min": ("damping_min", "positive", "floor of λ"),
    "--damping-max": ("damping_max", "positive", "ceiling of λ"),
    "--curvature-batch-size": ("curvature_batch_size", "count", "examples of each batch used for G·v and ρ"),
    "--weight-decay": ("weight_decay", "nonnegative", "L2 weight cost w (objective + ½w‖θ‖²)"),
    "--rho-denominator": ("rho_denominator", ("damped", "undamped"), "quadratic model used in ρ"),
    "--backtracking": ("backtracking", "bool", "Martens' CG backtracking"),
    "--line-search": ("line_search", "bool", "Armijo line search"),
}


def _type(kind, flag):
    """An argparse type that refuses bad values with a message naming the flag."""
    def parse(text):
        try:
            value = int(text) if kind == "count" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {parse.__name__}, got {text!r}") from None
        try:
            if kind == "count":
                return checks.integer(value, flag, low=1)
            if kind == "positive":
                return checks.positive(value, flag)
            if kind == "factor":
                return checks.factor(value, flag)
            if kind == "fraction":
                return checks.number(value, flag, low=0.0, high=1.0)
            return checks.number(value, flag, low=0.0)
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None
    parse.__name__ = {"count": "an integer ≥ 1", "factor": "a number > 1", "positive": "a number > 0",
                      "fraction": "a number in [0, 1]"}.get(kind, "a number ≥ 0")
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: `prog: error: message (see --help)`, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from .optimizer import HFConfig

    defaults = HFConfig()
    parser = _Parser(prog="python -m hflib", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train one network with one optimizer")
    train.add_argument("--task", default="sine", choices=_preset_names(),
                       help="a preset (see `python -m hflib presets`); default: sine")
    train.add_argument("--optimizer", choices=["hf", "sgd", "adam"], default="hf",
                       help="Hessian-free (Algorithm 1) or a first-order baseline; default: hf")
    train.add_argument("--batch-size", type=_type("count", "--batch-size"), help="default: the preset's")
    train.add_argument("--epochs", type=_type("count", "--epochs"), help="default: the preset's (quick: fewer)")
    hf = train.add_argument_group("Hessian-free options (default: the preset's value, else HFConfig's)")
    for flag, (field, kind, text) in HF_OPTIONS.items():
        default = getattr(defaults, field)
        if kind == "bool":
            hf.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, dest=field,
                            help=f"{text} (HFConfig: {'on' if default else 'off'})")
        elif isinstance(kind, tuple):
            hf.add_argument(flag, choices=kind, default=None, dest=field, help=f"{text} (HFConfig: {default})")
        else:
            shown = "100 / batch size" if field == "damping_min" and default is None else default
            hf.add_argument(flag, type=_type(kind, flag), default=None, dest=field,
                            help=f"{text} (HFConfig: {shown})")
    train.add_argument("--lr", type=_type("positive", "--lr"), help="SGD/Adam learning rate (default: the preset's)")
    train.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the data order; default: 0")
    train.add_argument("--eval-every", type=_type("count", "--eval-every"),
                       help="evaluate on the validation set every N updates (default: each epoch)")
    train.add_argument("--max-seconds", type=_type("positive", "--max-seconds"), help="stop after this much training time")
    train.add_argument("--max-updates", type=_type("count", "--max-updates"), help="stop after this many updates")
    train.add_argument("--checkpoint-dir", help="write checkpoints here (atomically)")
    train.add_argument("--checkpoint-every", type=_type("count", "--checkpoint-every"),
                       help="updates between checkpoints (default: each epoch, and at the end)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --checkpoint-dir (its settings must be the same)")
    train.add_argument("--data-dir", help="MNIST IDX files (default: $HFLIB_DATA_DIR, cache, download)")
    train.add_argument("--out", help="folder for history.json/.csv and the plot (default: runs/TASK-OPTIMIZER)")
    train.add_argument("--quick", action="store_true", help="small quick mode (also HFLIB_QUICK=1)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="HF vs SGD on the sine task: table and plot")
    demo.add_argument("--epochs", type=_type("count", "--epochs"), help="default: 100 (quick: 20)")
    demo.add_argument("--out", default="runs/demo", help="folder for the plot and histories; default: runs/demo")
    demo.add_argument("--quick", action="store_true", help="small quick mode (also HFLIB_QUICK=1)")

    sub.add_parser("presets", help="list the presets and how each differs from HFConfig's defaults")
    data = sub.add_parser("data", help="fetch MNIST into the cache once and verify it")
    data.add_argument("--data-dir", help="verify this folder of IDX files instead")
    return parser


def _preset_names():
    from .experiments import PRESETS
    return sorted(PRESETS)


def main(argv=None):
    from .quiet import import_tensorflow
    import_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quick", False):
        os.environ["HFLIB_QUICK"] = "1"
    import matplotlib
    matplotlib.use("Agg")
    from . import device
    device.enable_memory_growth()
    command = {"train": train, "demo": demo, "presets": presets, "data": fetch_data}[args.command]
    try:
        return command(args)
    except (ValueError, TypeError, OSError) as e:
        parser.error(" ".join(str(e).split()))


def _out_folder(path):
    """Create the output folder now (not after training) and check that it is writable."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out: cannot write into {out}")
    return out


def train(args):
    from . import __version__, device, experiments, plotting

    p = experiments.preset(args.task)
    out = _out_folder(args.out or f"runs/{args.task}-{args.optimizer}")
    hf_options = {field: getattr(args, field) for field, _, _ in HF_OPTIONS.values()
                  if getattr(args, field) is not None}
    if hf_options and args.optimizer != "hf":
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in hf_options)}: HF options, "
                         f"but --optimizer is {args.optimizer}")
    if args.lr is not None and args.optimizer == "hf":
        raise ValueError("--lr: only for --optimizer sgd or adam")
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume: needs --checkpoint-dir")
    (x, y), validation = experiments.task_data(p, path=args.data_dir, seed=args.seed)
    updater, default_batch = experiments.updater(p, args.optimizer, seed=args.seed, learning_rate=args.lr,
                                                 **hf_options)
    batch = min(args.batch_size or default_batch, len(x))
    epochs = args.epochs or (p.quick_epochs if experiments.quick_mode() else p.epochs)
    print(f"hflib {__version__} on {device.describe()}", flush=True)
    print(f"{args.task}: {args.optimizer}, batch {batch}, {epochs} epochs, settings {updater.get_config()}",
          flush=True)
    from .training import fit

    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        history = fit(updater, (x, y), epochs=epochs, batch_size=batch, validation_data=validation,
                      validation_every=args.eval_every, checkpoint_dir=args.checkpoint_dir,
                      checkpoint_every=args.checkpoint_every, resume=args.resume, max_seconds=args.max_seconds,
                      max_updates=args.max_updates, progress=False if args.no_progress else f"{args.task} {args.optimizer}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    history.to_json(out / "history.json")
    history.to_csv(out / "history.csv")
    if len(history):
        plotting.use_lecture_style()
        fig = plotting.plot_run_summary(history, title=f"{args.task}: {args.optimizer} (batch {batch})")
        fig.savefig(out / "history.png", dpi=110, bbox_inches="tight")
    final = {k: history.last(k) for k in ("loss", "val_loss", "val_error", "time") if k in history.keys()}
    print(json.dumps({"updates": len(history), **final}, indent=1))
    print(f"wrote {out}/history.json, history.csv" + (", history.png" if len(history) else ""))
    if history.interrupted:
        print("interrupted: the History above is what was done" +
              (f"; resume with --resume --checkpoint-dir {args.checkpoint_dir}" if args.checkpoint_dir else ""),
              file=sys.stderr)
        return 130
    return 0


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def demo(args):
    from . import __version__, device, experiments, plotting

    print(f"hflib {__version__} on {device.describe()}", flush=True)
    out = _out_folder(args.out)
    plotting.use_lecture_style()
    runs = experiments.sine(epochs=args.epochs, progress=False)
    summary = experiments.sine_summary(runs)
    print(f"\nNoisy sine (report §V.A): HF batch 1000 vs SGD batch 100 (learning rate chosen from "
          f"{sorted(runs['sgd_grid'])} by final loss: η = {runs['sgd'].settings['learning_rate']:g})")
    print(f"target: the loss both reach, {summary['target_loss']:.4f}\n")
    print(f"{'method':8} {'epochs to target':>17} {'seconds to target':>18} {'final loss':>11} {'train s':>8}")
    for name in ("hf", "sgd"):
        s = summary[name]
        print(f"{name.upper():8} {s['epochs']:>17.1f} {s['seconds']:>18.2f} {s['final_loss']:>11.5f} "
              f"{s['train_seconds']:>8.2f}")
    fig = plotting.plot_sine_comparison(runs)
    fig.savefig(out / "sine.png", dpi=110, bbox_inches="tight")
    for name in ("hf", "sgd"):
        runs[name].history.to_json(out / f"{name}_history.json")
    print(f"\nwrote {out}/sine.png and the histories")
    return 0


def presets(args):
    from .experiments import PRESETS

    for p in PRESETS.values():
        print(f"{p.name}: {p.description}\n  HF batch {p.batch_size}; options beyond HFConfig's defaults: "
              f"{p.hf or 'none'}\n  why: {p.why}\n  SGD: {p.sgd}; Adam: {p.adam}")
    return 0


def fetch_data(args):
    from .data import load_mnist

    (x, _), (xt, _) = load_mnist(args.data_dir)
    print(f"MNIST verified (SHA-256): {len(x)} training and {len(xt)} test images")
    return 0

