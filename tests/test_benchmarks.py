"""Smoke tests: every benchmark script runs in its quick mode, leaves RESULTS.md alone, and prints
figures that are sane (parsed from its markdown table), not merely a table."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tables(text):
    """Every markdown table in `text` as a list of {header: cell} rows."""
    tables, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header, rows = cells, []
            tables.append(rows)
        elif not set("".join(cells)) <= set("-: "):
            rows.append(dict(zip(header, cells)))
    return tables


def _number(cell):
    """The first number in a cell ('12.5 ms (1.19×)' -> 12.5, '18.30%' -> 18.3, '1,000' -> 1000)."""
    match = re.search(r"-?\d[\d,]*\.?\d*(?:e-?\d+)?", cell.replace("**", ""))
    assert match, f"no number in {cell!r}"
    return float(match.group(0).replace(",", ""))


def _times(cell):
    """The ratio in '… (1.19×)' or '**1.27×**'."""
    return float(re.search(r"(\d+\.?\d*)×", cell).group(1))


def check_products(tables):
    main = tables[0][0]
    assert 0.3 < _times(main["**G·v per CG iteration (cached, vector work incl.)**"]) < 5
    profile = tables[1]
    costs = [_number(r["cost in gradients"]) for r in profile]
    assert all(2 < c < 60 for c in costs), costs           # each update costs more than a gradient
    memory = [_times(r["peak memory (× gradient step)"]) for r in profile]
    assert all(0.5 < m < 100 for m in memory), memory
    floor = [_times(r["peak memory (× gradient step)"]) for r in tables[2]]
    assert len(floor) == 4 and all(0.2 < m < 100 for m in floor), floor


def check_sine(tables):
    rows = {r["method"].split(" ")[0]: r for r in tables[0]}
    assert 0.004 < _number(rows["HF"]["final loss"]) < 0.02 and 0.004 < _number(rows["SGD"]["final loss"]) < 0.05


def check_mnist_epoch(tables):
    row = tables[0][0]
    assert 0 < _number(row["test error after the epoch"]) < 50 and _number(row["mean CG iterations"]) >= 1


def check_time_to_accuracy(tables):
    for row in tables[0]:
        assert 0 < _number(row["best test error (at s)"]) < 50, row


def check_fisher(tables):
    exact = [r for r in tables[0] if r["method"].startswith("exact")]
    assert exact and all(0.2 < _times(r["in gradients"]) < 10 for r in exact)


def check_cg(tables):
    new = [r for r in tables[0] if "**new**" in r["CG"]]
    assert new and all(_number(r["× gradient"]) > 0 for r in new)


def check_peers(tables):
    rows = [r for r in tables[0] if r and "hflib" in " ".join(r.values())]
    assert rows, tables[0]


def check_batch_study(tables):
    rows = tables[0]
    assert len(rows) == 6 and all(0 < _number(r["best test error (updates run)"]) < 60 for r in rows)


def check_defaults(tables):
    rows = tables[0]
    assert len(rows) == 15 and all(0 < _number(r["validation loss"]) < 1000 for r in rows)
    seeds, adam = tables[1], tables[2]
    assert [r["seed"] for r in seeds] == ["0", "1", "2", "mean"]
    assert all(0 < _number(r[k]) < 60 for r in seeds for k in ("arrays", "tf.data.Dataset"))
    assert len(adam) == 2 and all(0 < _number(r[k]) < 60 for r in adam for k in ("centred", "[0, 1]"))
    caps = tables[3]
    assert len(caps) == 2 and all(0 < _number(r["best test error"]) < 60 for r in caps)


def check_mnist_race(tables):
    race, trace = tables[0], tables[1]
    assert [r["key"] for r in race] == ["hf75", "hf250", "hf1000", "sgd", "adam", "pcg", "cg"]
    assert all(0 < _number(r["best test error (at s)"]) < 60 and _number(r["updates"]) >= 1 for r in race)
    assert len(trace) == 2 and all(_number(r["smallest λ"]) <= _number(r["largest λ"]) for r in trace)


def check_autoencoder(tables):
    rows = {r["method"]: r for r in tables[0]}
    assert set(rows) == {"HF", "HF, Martens' CG rule alone", "Adam", "SGD + Nesterov"}
    assert all(0 < _number(r["test squared error per image"]) < 784 and _number(r["updates"]) >= 1
               for r in rows.values())


def check_distributed(tables):
    rows = tables[0]
    assert len(rows) == 2 and all(_number(r["s / update"]) > 0 for r in rows)


CHECKS = {"bench_products.py": check_products, "bench_sine.py": check_sine, "bench_mnist_epoch.py": check_mnist_epoch,
          "bench_time_to_accuracy.py": check_time_to_accuracy, "bench_fisher.py": check_fisher,
          "bench_cg.py": check_cg, "bench_distributed.py": check_distributed,
          "bench_peers.py": check_peers, "bench_batch_study.py": check_batch_study,
          "bench_defaults.py": check_defaults, "bench_mnist_race.py": check_mnist_race,
          "bench_autoencoder.py": check_autoencoder}


@pytest.mark.mnist
@pytest.mark.parametrize("script", sorted(CHECKS))
def test_quick_mode_runs_and_prints_sane_figures(script):
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    env = {**os.environ, "HFLIB_QUICK": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--no-write"],
                         capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    tables = _tables(out.stdout)
    assert tables and tables[0], out.stdout[-2000:]
    CHECKS[script](tables)
    assert (results.read_text() if results.exists() else None) == before


def test_table_parser_on_a_hand_made_table():
    text = "x\n| a | b |\n|---|---|\n| 1,000 | 12.5 ms (1.19×) |\n\n| c |\n|---|\n| **2.5×** |\n"
    first, second = _tables(text)
    assert _number(first[0]["a"]) == 1000 and _times(first[0]["b"]) == 1.19 and _times(second[0]["c"]) == 2.5
