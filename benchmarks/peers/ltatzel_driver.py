"""Drive ltatzel/PyTorchHessianFree (package `hessianfree`) on hflib's MNIST MLP, one command at a time.

Run with a Python that has torch, BackPACK and `hessianfree` installed (not hflib's):

    TORCH_PYTHON benchmarks/peers/ltatzel_driver.py DATA.npz [THREADS]

THREADS sets torch.set_num_threads (default: torch's own choice, one per core).

DATA.npz (written by bench_peers.py) holds the training batches in the order to use (`x`, `y`),
the test set (`xt`, `yt`), the batch size and the initial weights of hflib's 784-800-10 ReLU
network (`kernel0`, `bias0`, `kernel1`, `bias1`, Keras layout: kernels are (in, out)).

It answers `{"ready": ...}` once set up, then reads one command per line on stdin and answers
each with one JSON line on stdout (so the caller can interleave it with other work):

    step            one `HessianFree.step` (its defaults: no preconditioner) on the next batch
    products REPS   medians over REPS of: one G·v on a recorded forward pass (BackPACK's product,
                    as CG calls it), forward pass + G·v, and forward + backward (a gradient)
    evaluate        mean loss and classification error on the test set
    quit
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import torch
from hessianfree.optimizer import HessianFree


def network(data):
    """784-800-10 ReLU with the given Keras-layout weights."""
    net = torch.nn.Sequential(torch.nn.Linear(784, 800), torch.nn.ReLU(), torch.nn.Linear(800, 10))
    with torch.no_grad():
        for layer, i in ((net[0], 0), (net[2], 1)):
            layer.weight.copy_(torch.from_numpy(data[f"kernel{i}"].T))
            layer.bias.copy_(torch.from_numpy(data[f"bias{i}"]))
    return net.eval()


class Driver:
    def __init__(self, path):
        data = np.load(path)
        self.x, self.y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"]).long()
        self.xt, self.yt = torch.from_numpy(data["xt"]), torch.from_numpy(data["yt"]).long()
        self.batch = int(data["batch_size"])
        self.net = network(data)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.opt = HessianFree(self.net.parameters())
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.updates = 0
        self._gv = self.opt._Gv
        self.gv_calls, self.gv_seconds = 0, 0.0
        self.opt._Gv = self._timed_gv        # the instance attribute shadows the static method

    def _timed_gv(self, *args):
        t0 = time.perf_counter()
        out = self._gv(*args)
        self.gv_seconds += time.perf_counter() - t0
        self.gv_calls += 1
        return out

    def _batch(self, i):
        start = (i * self.batch) % len(self.x)
        return self.x[start:start + self.batch], self.y[start:start + self.batch]

    def step(self):
        xb, yb = self._batch(self.updates)

        def forward():
            out = self.net(xb)
            return self.loss_fn(out, yb), out

        self.gv_calls, self.gv_seconds = 0, 0.0
        t0 = time.perf_counter()
        loss_after = self.opt.step(forward=forward)
        seconds = time.perf_counter() - t0
        self.updates += 1
        state = self.opt.state
        return {"seconds": seconds, "cg_iters": state["num_cg_iters"][-1], "gv_calls": self.gv_calls,
                "gv_seconds": self.gv_seconds, "loss_before": state["init_losses"][-1],
                "loss_after": None if loss_after is None else float(loss_after),
                "damping": state["dampings"][-1]}

    def products(self, reps):
        xb, yb = self._batch(0)
        out = self.net(xb)
        loss = self.loss_fn(out, yb)
        d = sum(p.numel() for p in self.params)
        v = torch.randn(d, generator=torch.Generator().manual_seed(0))

        def gv_recorded():
            self._gv(loss, out, self.params, v)

        def gv_with_forward():
            o = self.net(xb)
            self._gv(self.loss_fn(o, yb), o, self.params, v)

        def gradient():
            torch.autograd.grad(self.loss_fn(self.net(xb), yb), self.params)

        return {name: 1e3 * median_time(fn, reps) for name, fn in
                (("gv_ms", gv_recorded), ("gv_forward_ms", gv_with_forward), ("gradient_ms", gradient))}

    @torch.no_grad()
    def evaluate(self):
        out = self.net(self.xt)
        return {"loss": float(self.loss_fn(out, self.yt)),
                "error": float((out.argmax(1) != self.yt).double().mean())}


def median_time(fn, reps):
    """Median wall time of fn() after one warm-up call (benchmarks/common.py has the same rule, but
    importing it needs TensorFlow, which this Python lacks)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    if len(sys.argv) > 2:
        torch.set_num_threads(int(sys.argv[2]))
    driver = Driver(sys.argv[1])
    answer({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "params": sum(p.numel() for p in driver.params)})
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "step":
            answer(driver.step())
        elif words[0] == "products":
            answer(driver.products(int(words[1])))
        elif words[0] == "evaluate":
            answer(driver.evaluate())
        else:
            answer({"failure": f"unknown command {words[0]!r}"})


if __name__ == "__main__":
    main()
