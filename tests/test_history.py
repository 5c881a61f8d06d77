"""`hflib.History`: NumPy columns, `last`, strict JSON (non-finite numbers as null), CSV, atomic
files with the umask's permissions, and the History of a real run."""
import csv
import json
import math
import os
import stat

import numpy as np
import pytest

import hflib
from hflib.history import History

from loop_helpers import BATCH, assert_records_equal, fresh, sine_data


def _hand_history():
    return History([
        {"update": 1, "loss": 1.5, "accepted": True, "rho": -math.inf, "epoch": 0.5, "cg_stop": "tol"},
        {"update": 2, "loss": 0.75, "accepted": False, "rho": math.nan, "epoch": 1.0, "val_loss": 0.8},
        {"update": 3, "loss": 0.5, "accepted": True, "rho": math.inf, "epoch": 1.5},
    ])


def _refuse(constant):
    raise ValueError(f"not strict JSON: {constant}")


def test_columns_keys_and_last():
    h = _hand_history()
    assert len(h) == 3 and h.keys() == ["update", "loss", "accepted", "rho", "epoch", "cg_stop", "val_loss"]
    loss = h["loss"]
    assert isinstance(loss, np.ndarray) and loss.dtype == float
    np.testing.assert_array_equal(loss, [1.5, 0.75, 0.5])
    np.testing.assert_array_equal(h["accepted"], [1.0, 0.0, 1.0])
    assert np.isnan(h["val_loss"][[0, 2]]).all() and h["val_loss"][1] == 0.8
    assert np.isnan(h["cg_stop"]).all()                       # strings are not numbers
    assert np.isnan(h["missing"]).all() and len(h["missing"]) == 3
    assert h.last("val_loss") == 0.8 and h.last("loss") == 0.5
    assert math.isnan(h.last("missing")) and h.last("missing", default=None) is None
    assert "3 updates" in repr(h)
    h.append({"update": 4, "loss": 0.25})
    assert len(h) == 4 and h.last("loss") == 0.25 and h.last("val_loss") == 0.8


def test_records_are_copies():
    record = {"update": 1, "loss": 1.0}
    h = History([record])
    record["loss"] = 2.0
    h.append(record)
    record["loss"] = 3.0
    np.testing.assert_array_equal(h["loss"], [1.0, 2.0])


def test_json_is_strict_and_non_finite_numbers_come_back_as_nan(tmp_path):
    h = _hand_history()
    path = tmp_path / "h.json"
    h.to_json(path)
    raw = json.loads(path.read_text(), parse_constant=_refuse)       # no NaN / Infinity tokens
    assert [r["rho"] for r in raw] == [None, None, None]
    back = History.from_json(path)
    assert all(math.isnan(r["rho"]) for r in back.records)          # ±∞ too: strict JSON has no ∞
    assert back.records[1]["accepted"] is False and back.records[0]["cg_stop"] == "tol"
    assert_records_equal(back.records, [{**r, "rho": math.nan} for r in h.records], skip=())
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]       # no temporary file left behind


def test_from_json_refuses_what_is_not_a_list_of_records(tmp_path):
    for text in ('{"loss": 1}', "[1, 2]"):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ValueError, match="history"):
            History.from_json(tmp_path / "bad.json")


def test_csv(tmp_path):
    h = _hand_history()
    h.to_csv(tmp_path / "h.csv")
    with open(tmp_path / "h.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == h.keys()
    assert [float(r["loss"]) for r in rows] == [1.5, 0.75, 0.5]
    assert rows[0]["val_loss"] == "" and float(rows[1]["val_loss"]) == 0.8
    assert math.isnan(float(rows[1]["rho"])) and float(rows[0]["rho"]) == -math.inf
    assert rows[0]["accepted"] == "True" and rows[0]["cg_stop"] == "tol"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_permissions_of_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _hand_history().to_json(tmp_path / "h.json")
        _hand_history().to_csv(tmp_path / "h.csv")
    finally:
        os.umask(old)
    for name in ("h.json", "h.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "h.json"
    _hand_history().to_json(path)
    before = path.read_bytes()
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        History([{"loss": 9.0}]).to_json(path)
    assert path.read_bytes() == before

    def broken_writerow(self, row):
        raise OSError("disk full")

    monkeypatch.setattr(csv.DictWriter, "writerow", broken_writerow)
    with pytest.raises(OSError):
        History([{"loss": 9.0}]).to_csv(tmp_path / "h.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]        # no partial CSV, no temporary


def test_history_of_a_real_run_round_trips(tmp_path):
    x, y = sine_data()
    h = hflib.fit(fresh("hf"), (x, y), epochs=1, batch_size=BATCH, validation_data=(x, y), progress=False)
    h.to_json(tmp_path / "run.json")
    back = History.from_json(tmp_path / "run.json")
    assert_records_equal(back.records, h.records, skip=())
    for key in h.keys():
        np.testing.assert_array_equal(back[key], h[key])
