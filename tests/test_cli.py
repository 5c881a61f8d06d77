"""The command line `python -m hflib`: one-line errors with exit status 2 for bad values and library
errors, the output folder checked before training, SIGTERM saving the work, a checked resume, the
help, `presets`, `data` and the quick demo.

Most tests call `hflib.cli.main(argv)` in this process (TensorFlow is already imported); the
SIGTERM test runs the real command in a subprocess.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hflib import cli, training
from hflib.experiments import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def main(capsys, *argv):
    """(exit status, stdout, stderr) of `python -m hflib ARGV` run in this process."""
    try:
        status = cli.main(list(argv))
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


def assert_usage_error(status, err, *words):
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert lines[0].startswith("python -m hflib") and "error:" in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setenv("HFLIB_QUICK", "1")        # restored afterwards even if --quick sets it


# ------------------------------------------------------------------ bad values
FLAGS = ["--epochs", "--batch-size", "--initial-damping", "--damping-min", "--lr", "--r", "--eval-every",
         "--checkpoint-every", "--max-seconds", "--max-updates", "--tol", "--max-iters"]


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
@pytest.mark.parametrize("flag", FLAGS)
def test_zero_negative_and_nan_values_are_refused_in_one_line(capsys, monkeypatch, flag, value):
    monkeypatch.setattr(training, "fit", _no_training)
    status, out, err = main(capsys, "train", "--task", "sine", flag, value)
    assert_usage_error(status, err, flag, repr(value) if value == "nan" and flag in _COUNTS else "")


_COUNTS = {"--epochs", "--batch-size", "--eval-every", "--checkpoint-every", "--max-updates", "--max-iters"}


def _no_training(*args, **kwargs):
    raise AssertionError("training started")


@pytest.mark.parametrize("argv, words", [
    (["--initial-damping", "1e-9"], ["initial_damping", "damping_min"]),     # HFConfig's own check
    (["--damping-min", "2", "--damping-max", "1"], ["damping_min"]),
    (["--optimizer", "hf", "--lr", "0.1"], ["--lr"]),
    (["--optimizer", "sgd", "--r", "2"], ["--r", "sgd"]),
    (["--resume"], ["--resume", "--checkpoint-dir"]),
    (["--task", "cifar"], ["--task"]),
    (["--window", "sliding"], ["--window"]),
    (["--warm-start", "1.5"], ["--warm-start"]),
])
def test_library_errors_are_one_line_too(capsys, monkeypatch, tmp_path, argv, words):
    monkeypatch.setattr(training, "fit", _no_training)
    status, out, err = main(capsys, "train", "--out", str(tmp_path / "out"), *argv)
    assert_usage_error(status, err, *words)
    assert "Traceback" not in err


def test_an_out_that_is_a_file_is_refused_before_training(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(training, "fit", _no_training)
    (tmp_path / "taken").write_text("not a folder")
    status, out, err = main(capsys, "train", "--task", "sine", "--out", str(tmp_path / "taken"))
    assert_usage_error(status, err, "--out", "not a folder")
    assert (tmp_path / "taken").read_text() == "not a folder"


# ------------------------------------------------------------------ help, presets, data
def test_help_documents_every_option(capsys):
    status, out, err = main(capsys, "train", "--help")
    assert status == 0
    for flag in ["--task", "--optimizer", "--seed", "--checkpoint-dir", "--resume", "--data-dir", "--out",
                 "--quick", "--no-progress", *FLAGS, *cli.HF_OPTIONS]:
        assert flag in out, flag
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == {"train", "demo", "presets", "data"}
    for name, sub in commands.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help text"
    for flag, (field, kind, text) in cli.HF_OPTIONS.items():      # each says HFConfig's default
        assert "HFConfig" in next(a.help for a in commands["train"]._actions if flag in a.option_strings)


def test_presets_lists_each_preset_and_why(capsys):
    status, out, err = main(capsys, "presets")
    assert status == 0
    for p in PRESETS.values():
        assert f"{p.name}: {p.description}" in out and p.why in out


@pytest.mark.mnist
def test_data_verifies_the_mnist_folder(capsys):
    status, out, err = main(capsys, "data", "--data-dir", os.environ["HFLIB_DATA_DIR"])
    assert status == 0 and "MNIST verified (SHA-256): 60000 training and 10000 test images" in out


def test_data_with_a_missing_folder_is_one_line(capsys, tmp_path):
    status, out, err = main(capsys, "data", "--data-dir", str(tmp_path / "nowhere"))
    assert_usage_error(status, err, "nowhere")


# ------------------------------------------------------------------ training runs
@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """`train` in a subprocess, sent SIGTERM once its first checkpoint is on disk."""
    folder = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "hflib", "train", "--task", "sine", "--epochs", "100000", "--no-progress",
           "--checkpoint-dir", str(folder / "ckpt"), "--checkpoint-every", "1", "--out", str(folder / "out")]
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (folder / "ckpt" / "ckpt-1.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint after 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return folder, proc.returncode, out, err


def test_sigterm_during_train_saves_the_history_and_a_checkpoint(interrupted):
    folder, status, out, err = interrupted
    assert status == 130, err[-3000:]
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    history = json.loads((folder / "out" / "history.json").read_text())
    assert len(history) >= 1 and [r["update"] for r in history] == list(range(1, len(history) + 1))
    newest = max(int(p.stem.split("-")[1]) for p in (folder / "ckpt").glob("ckpt-*.json"))
    assert newest == len(history)                                  # the checkpoint holds every update
    saved = json.loads((folder / "ckpt" / f"ckpt-{newest}.json").read_text())
    assert saved["history"] == history
    assert "CPU" in out or "GPU" in out


def test_resume_with_a_changed_r_is_refused_naming_r(capsys, interrupted):
    folder = interrupted[0]
    status, out, err = main(capsys, "train", "--task", "sine", "--epochs", "100000", "--no-progress", "--r", "3",
                            "--checkpoint-dir", str(folder / "ckpt"), "--resume", "--out", str(folder / "r3"))
    assert_usage_error(status, err, "r: checkpoint 1.01, now 3.0")


def test_resume_continues_and_says_so(capsys, interrupted):
    folder = interrupted[0]
    before = json.loads((folder / "out" / "history.json").read_text())
    status, out, err = main(capsys, "train", "--task", "sine", "--epochs", "100000", "--no-progress",
                            "--checkpoint-dir", str(folder / "ckpt"), "--resume", "--max-updates", "1",
                            "--out", str(folder / "resumed"))
    assert status == 0, err
    assert f"resumed from {folder / 'ckpt'}/ckpt-{len(before)}" in out
    after = json.loads((folder / "resumed" / "history.json").read_text())
    assert after[:-1] == before and after[-1]["update"] == len(before) + 1
    assert (folder / "resumed" / "history.csv").read_text().startswith("loss,")


def test_train_first_order(capsys, tmp_path):
    status, out, err = main(capsys, "train", "--task", "sine", "--optimizer", "adam", "--epochs", "1",
                            "--no-progress", "--out", str(tmp_path))
    assert status == 0, err
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 2000 // PRESETS["sine"].adam["batch_size"]
    assert (tmp_path / "history.png").stat().st_size > 10_000


def test_quick_demo(capsys, tmp_path):
    status, out, err = main(capsys, "demo", "--quick", "--epochs", "1", "--out", str(tmp_path))
    assert status == 0, err
    assert "HF" in out and "SGD" in out and "final loss" in out and "epochs to target" in out
    assert (tmp_path / "sine.png").stat().st_size > 10_000
    assert len(json.loads((tmp_path / "hf_history.json").read_text())) == 2
