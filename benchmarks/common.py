"""Shared helpers of the benchmark scripts: timing by medians, peak memory, and RESULTS.md.

Timings are medians of repeated runs measured in one process, and figures are
reported as ratios measured in the same run, because the machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hflib.quiet import import_tensorflow  # noqa: E402

import_tensorflow()
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
RECORDED = ROOT / "notebooks" / "recorded"     # the runs notebooks replay (hflib.notebook.recorded)


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small smoke-test mode (also HFLIB_QUICK=1)")
    p.add_argument("--no-write", action="store_true", help="print only; do not touch RESULTS.md")
    return p


def recorded_argument(p, name, what):
    """--json: where to write the recording NAME (default notebooks/recorded/NAME), holding `what`."""
    p.add_argument("--json", default=str(RECORDED / name), help=f"where to write the recording ({what})")


def is_quick(args):
    from hflib.experiments import quick_mode
    return args.quick or quick_mode()


def median_time(fn, repeats=7, warmup=2):
    """Median wall time of fn() (fn must synchronise, e.g. by calling .numpy())."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(fns, repeats=7, warmup=1):
    """Median wall time of each fn() in `fns` (a dict), timed round-robin in a rotating order so that
    a drift of the machine's load hits every entry alike. Returns {name: seconds}."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def load():
    """The 1-minute load average (the machine is shared: a high value means noisy timings)."""
    return os.getloadavg()[0]


def sync(tensors):
    """Force the results to the host (ends asynchronous execution)."""
    import tensorflow as tf
    for t in tf.nest.flatten(tensors):
        t.numpy()


def rss_bytes():
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmRSS:\s+(\d+) kB", fh.read()).group(1)) * 1024


def peak_rss_delta(fn):
    """Peak resident memory added while fn() runs (Linux: resets VmHWM through clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return float("nan")
    before = rss_bytes()
    fn()
    with open("/proc/self/status") as fh:
        peak = int(re.search(r"VmHWM:\s+(\d+) kB", fh.read()).group(1)) * 1024
    return peak - before


def machine():
    import tensorflow as tf
    from hflib.device import describe
    return f"{describe()}; {os.cpu_count()} logical cores; {platform.platform()}; TF {tf.__version__}"


def command():
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def write_results(section, lines, args):
    """Append a dated entry under `## section` in RESULTS.md (newest first), unless --no-write."""
    entry = ([f"### {datetime.date.today().isoformat()} — `{command()}`", "",
              f"Machine: {machine()}; load average at the end {load():.1f}", ""] + lines + [""])
    print("\n".join(entry))
    if args.no_write:
        return
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nEach section is written by the script it names; newest entry first.\n"
    header = f"## {section}"
    if header in text:
        start = text.index(header) + len(header)
        text = text[:start] + "\n\n" + "\n".join(entry) + "\n" + text[start:].lstrip("\n")
    else:
        text = text.rstrip("\n") + f"\n\n{header}\n\n" + "\n".join(entry)
    RESULTS.write_text(text.rstrip("\n") + "\n")


def write_recorded(path, runs, **extra):
    """Write the recorded runs a notebook replays (notebooks/recorded/NAME.json): `{"stamp": …, "runs": …}`.

    The stamp names the command, the machine, the date, hflib's version and the load average at the
    end (notebooks/CONVENTIONS.md, "recorded runs"); `extra` adds fields to it. Non-finite numbers
    become null (strict JSON)."""
    import json

    import hflib
    from hflib.history import atomic_write, strict_json
    stamp = {"command": command(), "machine": hflib.device.describe(), "date": datetime.date.today().isoformat(),
             "hflib": hflib.__version__, "load_average_end": load(), **extra}
    atomic_write(path, json.dumps({"stamp": stamp, "runs": _significant(strict_json(runs))}, allow_nan=False))


def _significant(value, digits=7):
    """Floats rounded to `digits` significant digits (float32's precision), in nested lists and dicts."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _significant(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_significant(v, digits) for v in value]
    return value
