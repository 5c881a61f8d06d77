"""hflib against its peers, side by side in one run (issue 12): one HF epoch on MNIST, MLP 784-800-10,
batch 1000, against the report's own code, and per update and per G·v against
ltatzel/PyTorchHessianFree.

    python benchmarks/bench_peers.py --report-code PATH [--torch-python PATH]
    python benchmarks/bench_peers.py --quick      # 5 updates each on 5,000 images (torch peer: 2); no RESULTS.md entry

--report-code PATH: the report's `Hessian_free_MNIST.py`, a folder holding it, or a git repository
  of the report (the file is read at HEAD). The code is never copied into this repository: it is
  patched in memory — three fixes for TF 2.21 / Keras 3 and local MNIST (see PATCHES), plus
  `epochs = 1` (and `data_size` in quick mode) — written to a temporary folder and run there, in its
  own process, with its default `fmv_version` and CG settings. Its shuffle is unseeded.
--torch-python PATH: a Python with torch, BackPACK and ltatzel's `hessianfree` package; it runs
  `benchmarks/peers/ltatzel_driver.py` (our driver) on the same network, initial weights and data.

Either peer is skipped, with a message, when its path is not given or does not work. The machine's
load drifts, so the peers are interleaved with hflib: each peer process is paused (SIGSTOP) while
hflib trains and hflib waits while a peer runs; after every hflib update each peer catches up to its
share of the run, in chunks. hflib's epoch runs with the library's defaults and with the mnist-mlp
preset, each from arrays and from a `tf.data.Dataset`.
"""
from __future__ import annotations

from common import is_quick, median_time, parser, sync, write_results  # noqa: I001

import hashlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import hflib
from hflib import curvature, experiments
from hflib.vectors import dot, scale

LOSS = "softmax_cross_entropy"
BATCH = 1000
DRIVER = Path(__file__).resolve().parent / "peers" / "ltatzel_driver.py"
REPORT_FILE = "Hessian_free_MNIST.py"

# (why, text in the report's code, replacement); each must occur in the code.
MNIST_SHIM = """import numpy as _np
import hflib.data as _hflib_data


class mnist:  # bench_peers.py: MNIST from local IDX files (HFLIB_DATA_DIR), as Keras' uint8 arrays
    @staticmethod
    def load_data():
        return tuple((_np.rint(x * 255).astype(_np.uint8).reshape(-1, 28, 28), y)
                     for x, y in _hflib_data.load_mnist())
"""
PATCHES = (
    ("Keras 3: Input(shape=...) takes a tuple", "tf.keras.Input(shape=(model_neurons[0]))",
     "tf.keras.Input(shape=(model_neurons[0],))"),
    ("TF 2.21: ForwardAccumulator needs the variables' values",
     "tf.autodiff.ForwardAccumulator(model.trainable_variables,",
     "tf.autodiff.ForwardAccumulator([w.value for w in model.trainable_variables],"),
    ("no network: MNIST from local IDX files via hflib.data.load_mnist", "from keras.datasets import mnist",
     MNIST_SHIM),
)
REPORT_TIME = re.compile(r"estimated time for one batch update in epoch \S+: (\d+(?:\.\d+)?)")
REPORT_ACCURACY = re.compile(r"test accuracy: (\d+(?:\.\d+)?)")


# ------------------------------------------------------------------ the report's code
def read_report_code(path):
    """The text of the report's script from a file, a folder holding it, or a git repository (HEAD).
    Returns (text, where it came from)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path.read_text(), str(path)
    if (path / REPORT_FILE).is_file():
        return (path / REPORT_FILE).read_text(), str(path / REPORT_FILE)
    if path.is_dir():
        done = subprocess.run(["git", "-C", str(path), "show", f"HEAD:{REPORT_FILE}"], capture_output=True, text=True)
        if done.returncode == 0:
            head = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip()
            return done.stdout, f"{path} at {head}"
    raise FileNotFoundError(f"--report-code: no {REPORT_FILE} at {path} (give the file, a checkout or a git repository)")


def patched_report_code(text, data_size):
    """The report's code with PATCHES applied, one epoch and `data_size` training images."""
    for why, old, new in PATCHES:
        if old not in text:
            raise ValueError(f"--report-code: cannot apply the patch '{why}': {old!r} not found")
        text = text.replace(old, new)
    for name, value in (("epochs", 1), ("data_size", data_size)):
        text, n = re.subn(rf"^{name} = \d+", f"{name} = {value}", text, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f"--report-code: no line '{name} = N' to set")
    return text


class Paused:
    """A child process that runs only inside `resumed()`: SIGSTOP otherwise, so that it never
    competes with the timed hflib work."""

    def __init__(self, args, log, **popen):
        self.log = log
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, encoding="utf-8", errors="replace",
                                     **popen)
        self._stop()

    def _stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def _continue(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def readline(self):
        line = self.proc.stdout.readline()
        if not line:
            self.log.flush()
            tail = Path(self.log.name).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.proc.args[1]} ended early (exit {self.proc.wait()}); its stderr ends:\n{tail}")
        return line

    def close(self):
        if self.proc.poll() is None:
            self._continue()
            self.proc.kill()
            self.proc.wait()


class ReportPeer(Paused):
    """The report's script running in its own process, paused between chunks of updates."""

    name, key = "the report's code (TF eager)", "report"

    def __init__(self, text, source, total, chunk, workdir):
        script = Path(workdir) / REPORT_FILE
        script.write_text(text)
        self.source, self.sha256 = source, hashlib.sha256(text.encode()).hexdigest()[:12]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONUNBUFFERED": "1",
               "PYTHONIOENCODING": "utf-8", "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.setdefault("HFLIB_DATA_DIR", "/work/shared/data/mnist")
        super().__init__([sys.executable, str(script)], open(Path(workdir) / "report.stderr", "w"), cwd=workdir,
                         env=env)
        self.total, self.chunk, self.times, self.accuracy = total, chunk, [], None

    def advance(self, n):
        """Let the script run until it has printed the time of `n` more updates, then pause it."""
        self._continue()
        target = len(self.times) + n
        try:
            while len(self.times) < target:
                match = REPORT_TIME.search(self.readline())
                if match:
                    self.times.append(float(match.group(1)))
        finally:
            self._stop()

    def finish(self):
        self._continue()
        for line in self.proc.stdout:
            match = REPORT_ACCURACY.search(line)
            if match:
                self.accuracy = float(match.group(1))
        self.proc.wait()
        if self.accuracy is None:
            raise RuntimeError("the report's code printed no 'test accuracy'")


# ------------------------------------------------------------------ ltatzel/PyTorchHessianFree
def torch_python_works(python):
    """None when `python` imports torch, BackPACK and hessianfree; else the reason."""
    if not python:
        return "no --torch-python given"
    try:
        done = subprocess.run([python, "-c", "import torch, backpack, hessianfree.optimizer"], capture_output=True,
                              text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{python}: {err}"
    return None if done.returncode == 0 else f"{python} cannot import torch/backpack/hessianfree: " + \
        done.stderr.strip().splitlines()[-1]


class TorchPeer(Paused):
    """Our driver of ltatzel's optimizer in the torch Python, answering one command at a time."""

    name, key = "ltatzel/PyTorchHessianFree (PyTorch + BackPACK)", "torch"

    def __init__(self, python, data_file, total, workdir, threads=None):
        extra = [] if threads is None else [str(threads)]
        super().__init__([python, str(DRIVER), str(data_file), *extra], open(Path(workdir) / "torch.stderr", "w"),
                         stdin=subprocess.PIPE)
        self._continue()
        self.info = json.loads(self.readline())
        self._stop()
        self.total, self.chunk, self.steps = total, 1, []

    def ask(self, command):
        self._continue()
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return json.loads(self.readline())
        finally:
            self._stop()

    @property
    def times(self):
        return [s["seconds"] for s in self.steps]

    def advance(self, n):
        for _ in range(n):
            self.steps.append(self.ask("step"))


def torch_data(x, y, xt, yt, updates, path):
    """The driver's data: `updates` batches in a seeded order, the test set and hflib's initial weights."""
    order = np.random.default_rng(0).permutation(len(x))[:updates * BATCH]
    kernels = [w.numpy() for w in hflib.models.mnist_mlp().trainable_variables]
    np.savez(path, x=x[order], y=y[order], xt=xt, yt=yt, batch_size=BATCH,
             kernel0=kernels[0], bias0=kernels[1], kernel1=kernels[2], bias1=kernels[3])


# ------------------------------------------------------------------ interleaving
class Schedule:
    """After each hflib update, every peer catches up (in chunks) to the same fraction of its run."""

    def __init__(self, peers, hflib_total):
        self.peers, self.total, self.count = peers, hflib_total, 0

    def tick(self):
        self.count += 1
        for peer in self.peers:
            target = min(peer.total, math.floor(self.count * peer.total / self.total + 1e-9))
            lag = target - len(peer.times)
            if lag >= peer.chunk or (lag > 0 and self.count >= self.total):
                peer.advance(lag)


class Interleave(keras.callbacks.Callback):
    """Runs the schedule after each update of one hflib run; records the wall time of each update
    (data included, peers excluded) and the test error after `probe` updates."""

    def __init__(self, schedule, test, probe):
        super().__init__()
        self.schedule, self.test, self.probe = schedule, test, probe
        self.wall, self.probe_error, self._mark = [], None, None

    def on_train_begin(self, logs=None):
        self._mark = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.wall.append(time.perf_counter() - self._mark)
        if len(self.wall) == self.probe:
            self.probe_error = hflib.evaluate(self.model, LOSS, *self.test)["error"]
        self.schedule.tick()
        self._mark = time.perf_counter()


def hflib_runs():
    """(label, a fresh updater) for the library's defaults and the mnist-mlp preset."""
    return [("defaults", lambda: hflib.HessianFree(hflib.models.mnist_mlp(), LOSS)),
            ("mnist-mlp preset", lambda: experiments.updater("mnist-mlp", "hf")[0])]


def run_hflib(label, make, source, train, test, schedule, probe):
    """One hflib epoch with the peers interleaved; the row keeps the peers' update times of the same
    minutes (`window`), so that each ratio compares runs under the same load."""
    hf = make()
    data = (train if source == "arrays" else hflib.data.make_dataset(*train, BATCH, drop_remainder=True))
    hook = Interleave(schedule, test, probe)
    starts = {peer.key: len(peer.times) for peer in schedule.peers}
    history = hflib.fit(hf, data, epochs=1, batch_size=BATCH if source == "arrays" else None, progress=False,
                        callbacks=[hook])
    times = np.diff(history["time"], prepend=0.0)
    return {"name": f"hflib, {label}, {source}", "updates": len(history), "per_update": float(np.median(times)),
            "cg": float(np.mean(history["cg_iters"])), "epoch": float(history["time"][-1]),
            "wall": float(np.sum(hook.wall)), "error": hflib.evaluate(hf.model, LOSS, *test)["error"],
            "probe_error": hook.probe_error, "config": hf.get_config(),
            "window": {peer.key: peer.times[starts[peer.key]:] for peer in schedule.peers}}


# ------------------------------------------------------------------ G·v products
def hflib_products(x, y):
    """Timers of one compiled gradient, one G·v with its forward pass, and G·v chains of length n
    on one recorded forward pass (the marginal product, as inside CG)."""
    model, loss = hflib.models.mnist_mlp(), hflib.losses.get(LOSS)
    xb, yb = tf.constant(x[:BATCH]), tf.constant(y[:BATCH])
    variables = model.trainable_variables
    v = [tf.random.stateless_normal(w.shape, seed=[0, i]) for i, w in enumerate(variables)]

    @tf.function
    def gradient():
        return curvature.loss_and_gradient(model, loss, xb, yb)[1]

    @tf.function
    def gv_with_forward():
        return curvature.linearize(model, loss, xb).ggn_vp(v)

    @tf.function
    def gv_chain(n):
        lin = curvature.linearize(model, loss, xb)

        def body(i, u):
            g = lin.ggn_vp(u)
            return i + 1, scale(tf.math.rsqrt(dot(g, g)), g)
        return tf.while_loop(lambda i, u: i < n, body, (tf.constant(0), v))[1]

    short, long = tf.constant(1), tf.constant(11)
    return {"gradient": lambda: sync(gradient()), "gv_forward": lambda: sync(gv_with_forward()),
            "chain_short": lambda: sync(gv_chain(short)), "chain_long": lambda: sync(gv_chain(long)),
            "chain_extra": 10}


def products(torch_peer, x, y, rounds, reps):
    """Medians over interleaved rounds (order alternating) of hflib's and the torch peer's products, in ms."""
    timers = hflib_products(x, y)
    ours, theirs = {k: [] for k in ("gradient", "gv_forward", "chain_short", "chain_long")}, []
    for r in range(rounds):
        for turn in ((0, 1) if r % 2 == 0 else (1, 0)):
            if turn == 1 and torch_peer is not None:
                theirs.append(torch_peer.ask(f"products {reps}"))
            elif turn == 0:
                for key in ours:
                    ours[key].append(1e3 * median_time(timers[key], reps, 1))
    med = {k: statistics.median(v) for k, v in ours.items()}
    out = {"hflib": {"gradient_ms": med["gradient"], "gv_forward_ms": med["gv_forward"],
                     "gv_ms": (med["chain_long"] - med["chain_short"]) / timers["chain_extra"]}}
    if theirs:
        out["torch"] = {k: statistics.median(t[k] for t in theirs) for k in theirs[0]}
    return out


# ------------------------------------------------------------------ the run and its table
def load_task(quick):
    (x, y), (xt, yt) = hflib.data.load_mnist()        # [0, 1] pixels, as the report's code sees them (not centred)
    if quick:
        x, y = x[:5000], y[:5000]
    return (x, y), (xt, yt)


def main():
    p = parser(__doc__)
    p.add_argument("--report-code", help="the report's Hessian_free_MNIST.py, a checkout or a git repository of it")
    p.add_argument("--torch-python", help="a Python with torch, BackPACK and hessianfree (ltatzel) installed")
    p.add_argument("--torch-updates", type=int, default=None, help="updates of the torch peer (default 10; quick 2)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads for the torch peer (default: torch's own, one per core)")
    p.add_argument("--report-chunk", type=int, default=3, help="report updates per turn of the interleaving")
    args = p.parse_args()
    quick = is_quick(args)
    if quick:
        args.no_write = True
    load_before = os.getloadavg()
    train, test = load_task(quick)
    n_updates = len(train[0]) // BATCH
    torch_updates = args.torch_updates or (2 if quick else 10)
    runs = [(label, make, source) for label, make in hflib_runs() for source in ("arrays", "tf.data")]
    peers = []
    with tempfile.TemporaryDirectory(prefix="hflib-peers-") as workdir:
        report = torch_peer = None
        try:
            if args.report_code:
                text, where = read_report_code(args.report_code)
                chunk = min(args.report_chunk, max(1, n_updates // len(runs)))   # every run sees some
                report = ReportPeer(patched_report_code(text, len(train[0])), where, n_updates, chunk, workdir)
                peers.append(report)
            else:
                print("bench_peers: the report's code skipped (no --report-code PATH)", flush=True)
            reason = torch_python_works(args.torch_python)
            if reason is None:
                data_file = Path(workdir) / "torch_data.npz"
                torch_data(*train, *test, torch_updates, data_file)
                torch_peer = TorchPeer(args.torch_python, data_file, torch_updates, workdir, args.torch_threads)
                peers.append(torch_peer)
            else:
                print(f"bench_peers: ltatzel/PyTorchHessianFree skipped ({reason})", flush=True)
            schedule = Schedule(peers, n_updates * len(runs))
            rows = []
            for label, make, source in runs:
                rows.append(run_hflib(label, make, source, train, test, schedule, torch_updates))
                print(f"bench_peers: {rows[-1]['name']}: {rows[-1]['epoch']:.1f} s, error {rows[-1]['error']:.4f}",
                      flush=True)
            if report is not None:
                report.finish()
            torch_error = torch_peer.ask("evaluate") if torch_peer is not None else None
            prods = products(torch_peer, *train, rounds=2 if quick else 5, reps=2 if quick else 5)
        finally:
            for peer in (report, torch_peer):
                if peer is not None:
                    peer.close()
    load_after = os.getloadavg()
    lines = table(rows, report, torch_peer, torch_error, prods)
    lines += notes_lines(report, torch_peer, rows, load_before, load_after, quick, len(train[0]))
    write_results("bench_peers.py — hflib against the report's code and ltatzel/PyTorchHessianFree, side by side",
                  lines, args)


def pct(error):
    return "—" if error is None else f"{100 * error:.2f}%"


def same_minutes(row, key):
    """The peer's median s / update over the updates it ran during this hflib run, and how many."""
    window = row["window"].get(key) or []
    return (statistics.median(window), len(window)) if window else (None, 0)


def table(rows, report, torch_peer, torch_error, prods):
    lines = ["| run | updates | s / update (median) | CG its / update | epoch time (training) | epoch wall incl. data "
             "| test error after the epoch | the report's code in the same minutes: s / update (updates) "
             "| **speed-up over the report's code, same minutes**: per update · epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    if report is not None:
        r_epoch, r_med = sum(report.times), statistics.median(report.times)
        lines.append(f"| {report.name} | {len(report.times)} | {r_med:.3f} | not printed | {r_epoch:.1f} s | — "
                     f"| {pct(1 - report.accuracy)} | {r_med:.3f} (all {len(report.times)}) | 1 · 1 |")
    for row in rows:
        cells, row["speedup"] = "— | —", None
        w_med, w_n = same_minutes(row, "report")
        if w_med is not None:
            w_epoch = statistics.mean(row["window"]["report"]) * len(report.times)
            row["speedup"] = (w_med / row["per_update"], w_epoch / row["epoch"], r_epoch / row["epoch"])
            cells = f"{w_med:.3f} ({w_n}) | **{row['speedup'][0]:.2f}× · {row['speedup'][1]:.2f}×**"
        lines.append(f"| {row['name']} | {row['updates']} | {row['per_update']:.3f} | {row['cg']:.1f} | "
                     f"{row['epoch']:.1f} s | {row['wall']:.1f} s | {pct(row['error'])} | {cells} |")
    if report is not None:
        lines += ["", "Target (issue 12): one epoch ≥ 5× faster than the report's code at equal or better test error "
                      "(epoch speed-up from the report's updates timed in the same minutes, its mean × "
                      f"{len(report.times)}; in brackets against its whole epoch of {r_epoch:.1f} s, which spans all "
                      "four hflib runs):"]
        for row in filter(lambda r: r["speedup"], rows):
            same, whole = row["speedup"][1:]
            good = row["error"] <= 1 - report.accuracy
            lines.append(f"- {row['name']}: {'**met**' if same >= 5 and good else 'not met'} ({same:.2f}× "
                         f"[{whole:.2f}×]; test error {pct(row['error'])} vs {pct(1 - report.accuracy)}).")
    th = prods["hflib"]
    if torch_peer is None:
        return lines + ["", f"hflib products: G·v on a recorded forward pass {th['gv_ms']:.1f} ms, with its forward "
                            f"pass {th['gv_forward_ms']:.1f} ms, gradient {th['gradient_ms']:.1f} ms "
                            "(ltatzel/PyTorchHessianFree not run)."]
    steps, tt = torch_peer.steps, prods["torch"]
    t_med = statistics.median(torch_peer.times)
    cg = np.mean([s["cg_iters"] for s in steps])
    in_update = 1e3 * sum(s["gv_seconds"] for s in steps) / sum(s["gv_calls"] for s in steps)
    lines += ["", f"Per update and per product against ltatzel/PyTorchHessianFree ({len(steps)} updates, same "
                  "network, initial weights and batch size; products timed in alternating rounds):", "",
              "| run | s / update (median) | CG its / update | s per CG iteration | G·v on a recorded forward pass "
              "| G·v with its forward pass | gradient | G·v in gradients | test error after "
              f"{len(steps)} updates | ltatzel in the same minutes: s / update (updates) "
              "| **ltatzel ÷ hflib, per update, same minutes** |",
              "|---|---|---|---|---|---|---|---|---|---|---|",
              f"| {torch_peer.name} | {t_med:.2f} | {cg:.1f} | {t_med / cg:.3f} | {tt['gv_ms']:.1f} ms "
              f"(inside its updates: {in_update:.1f} ms) | {tt['gv_forward_ms']:.1f} ms | {tt['gradient_ms']:.1f} ms "
              f"| {tt['gv_ms'] / tt['gradient_ms']:.2f} | {pct(torch_error['error'])} | {t_med:.2f} (all "
              f"{len(steps)}) | 1 |"]
    for row in rows:
        w_med, w_n = same_minutes(row, "torch")
        ratio = f"**{w_med / row['per_update']:.1f}×**" if w_med else "—"
        window = f"{w_med:.2f} ({w_n})" if w_med else "— (0)"
        lines.append(f"| {row['name']} | {row['per_update']:.3f} | {row['cg']:.1f} | "
                     f"{row['per_update'] / row['cg']:.3f} | {th['gv_ms']:.1f} ms | {th['gv_forward_ms']:.1f} ms "
                     f"| {th['gradient_ms']:.1f} ms | {th['gv_ms'] / th['gradient_ms']:.2f} | "
                     f"{pct(row['probe_error'])} | {window} | {ratio} |")
    lines += ["", f"**ltatzel ÷ hflib, per product** (medians of the alternating rounds): G·v on a recorded forward "
                  f"pass **{tt['gv_ms'] / th['gv_ms']:.1f}×**, G·v with its forward pass "
                  f"{tt['gv_forward_ms'] / th['gv_forward_ms']:.1f}×, gradient {tt['gradient_ms'] / th['gradient_ms']:.1f}× "
                  "(the last is the frameworks' own speed on this CPU, not HF's)."]
    return lines


def notes_lines(report, torch_peer, rows, load_before, load_after, quick, n_images):
    loads = lambda la: ", ".join(f"{v:.2f}" for v in la)  # noqa: E731
    out = ["", f"Mode: {'quick' if quick else 'full'}, {n_images:,} training images, batch {BATCH}, one epoch; "
               "test error on the 10,000 test images.",
           f"Load average (1, 5, 15 min) on this {os.cpu_count()}-core machine: {loads(load_before)} at the start, "
           f"{loads(load_after)} at the end" + (" — other jobs were using the CPU, so absolute times are inflated; "
                                                 "the ratios come from interleaved runs"
                                                 if max(load_before[0], load_after[0]) > 1.5 * os.cpu_count() / 2
                                                 else "") + ".",
           "", "How it was measured: the peers run in their own processes, paused with SIGSTOP while hflib trains, "
               "and hflib waits while a peer runs; after each hflib update each peer catches up to the same "
               "fraction of its run (the report's code in chunks of updates, the torch peer one update at a "
               "time), so all runs span the same minutes. hflib's 'epoch time' is `fit`'s training time (compilation, "
               "evaluation and the peers excluded); 'epoch wall incl. data' adds the batch pipeline and hflib's "
               "own hooks. hflib's per-G·v figure is the marginal cost of one more product on a recorded "
               "forward pass (a compiled chain of 11 products minus a chain of 1, divided by 10), timed in "
               "rounds alternating with the torch driver's medians."]
    if report is not None:
        out.append(f"The report's code: {report.source} (sha256 of the patched text {report.sha256}), run as a "
                   "script with its defaults (fmv_version 2, CG_steps 3, acc_CG 5e-4, λ₀ = 1, lam_up 1.5, "
                   "preconditioner (g² + λ)^0.75), patched: " + "; ".join(why for why, _, _ in PATCHES) +
                   "; epochs = 1. Its epoch time is the sum of its printed per-update times (its own measure; "
                   "its test evaluations after each update are outside it); its shuffle is unseeded and its "
                   "CG iterations are not printed.")
    if torch_peer is not None:
        info = torch_peer.info
        out.append(f"ltatzel/PyTorchHessianFree: torch {info['torch']} ({info['threads']} threads), "
                   "`HessianFree(model.parameters())` with its defaults (GGN via BackPACK, λ₀ = 1, adaptive damping, "
                   "CG ≤ 250 with Martens' test, backtracking, line search, no preconditioner), driven by "
                   "benchmarks/peers/ltatzel_driver.py on hflib's initial weights and the same batch size, "
                   "batches in a seeded order.")
    if rows:
        out.append(f"hflib: `HessianFree(mnist_mlp(), '{LOSS}')` at the library's defaults (λ₀ = "
                   f"{rows[0]['config']['initial_damping']}, preconditioner {rows[0]['config']['preconditioner']}) "
                   f"and `experiments.updater('mnist-mlp', 'hf')` ({experiments.preset('mnist-mlp').hf}); `fit(hf, (x, y), epochs=1, "
                   "batch_size=1000)` from arrays, and from `data.make_dataset(x, y, 1000, drop_remainder=True)`.")
    return out


if __name__ == "__main__":
    main()
