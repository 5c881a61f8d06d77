"""The command line: `python -m hflib train|demo` end to end on tiny settings."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "hflib", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_help_documents_every_option(tmp_path):
    out = run_cli("train", "--help", cwd=tmp_path)
    assert out.returncode == 0
    for option in ("--task", "--optimizer", "--batch-size", "--epochs", "--r", "--eps", "--checkpoint-dir",
                   "--resume", "--damping", "--lr", "--out", "--quick", "--max-seconds"):
        assert option in out.stdout, option
    from hflib.__main__ import build_parser
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help text"


def test_train_sine_hf_with_checkpoint_and_resume(tmp_path):
    ckpt = tmp_path / "ckpt"
    out = run_cli("train", "--task", "sine", "--optimizer", "hf", "--epochs", "3", "--no-progress",
                  "--checkpoint-dir", str(ckpt), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CPU" in out.stdout or "GPU" in out.stdout          # says where it ran
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 6                                     # 2000 points / batch 1000 × 3 epochs
    assert history[-1]["val_loss"] < history[0]["loss"]
    assert (tmp_path / "run" / "history.csv").read_text().startswith("loss,")
    assert (tmp_path / "run" / "history.png").stat().st_size > 10_000
    resumed = run_cli("train", "--task", "sine", "--optimizer", "hf", "--epochs", "5", "--no-progress",
                      "--checkpoint-dir", str(ckpt), "--resume", "--out", str(tmp_path / "run2"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history2 = json.loads((tmp_path / "run2" / "history.json").read_text())
    assert len(history2) == 10 and history2[:6] == history


@pytest.mark.parametrize("optimizer", ["adam"])
def test_train_sine_first_order(tmp_path, optimizer):
    out = run_cli("train", "--task", "sine", "--optimizer", optimizer, "--epochs", "2", "--no-progress",
                  "--out", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(json.loads((tmp_path / "history.json").read_text())) == 40


def test_bad_option_is_refused(tmp_path):
    out = run_cli("train", "--task", "cifar", cwd=tmp_path)
    assert out.returncode == 2 and "--task" in out.stderr


def test_demo_quick(tmp_path):
    out = run_cli("demo", "--quick", "--epochs", "3", "--out", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HF" in out.stdout and "SGD" in out.stdout and "final loss" in out.stdout
    assert (tmp_path / "sine.png").exists()
