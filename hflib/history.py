"""The record of a training run: one dict per update (layer 3).

`history["loss"]` is a NumPy column (NaN where a record lacks the key), `history.records` the
raw list. JSON files are strict JSON: non-finite numbers (NaN, ±∞) are written as ``null`` and
read back as NaN. Files are written atomically (a temporary file renamed over the target) with
the permissions of the user's umask.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile

import numpy as np


class History:
    """One record (a dict of numbers, booleans or strings) per update."""

    def __init__(self, records=None):
        self.records = [dict(r) for r in (records or [])]

    def append(self, record):
        self.records.append(dict(record))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        return np.array([_number(r.get(key)) for r in self.records], dtype=float)

    def keys(self):
        seen = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def last(self, key, default=math.nan):
        """The most recent value of `key` (e.g. the last validation error)."""
        for r in reversed(self.records):
            if key in r and r[key] is not None:
                return r[key]
        return default

    def to_json(self, path):
        atomic_write(path, json.dumps(strict_json(self.records), indent=1, allow_nan=False))

    @classmethod
    def from_json(cls, path):
        with open(path) as fh:
            return cls.from_jsonable(json.load(fh))

    @classmethod
    def from_jsonable(cls, records):
        """A History from records read from strict JSON: null (a non-finite number) becomes NaN."""
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError("history: expected a JSON list of records (objects)")
        return cls([{k: math.nan if v is None else v for k, v in r.items()} for r in records])

    def to_csv(self, path):
        keys = self.keys()
        with atomic_open(path) as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            for r in self.records:
                writer.writerow({k: r.get(k, "") for k in keys})

    def __repr__(self):
        return f"History({len(self)} updates, keys={self.keys()})"


def _number(v):
    if v is None or isinstance(v, str):
        return math.nan
    return float(v)


def strict_json(value):
    """The same structure with non-finite floats replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def atomic_write(path, text):
    with atomic_open(path) as fh:
        fh.write(text)


class atomic_open:
    """Write to a temporary file in the same folder, then rename it over `path`; the file gets
    the default permissions (0666 minus the umask), not mkstemp's 0600."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __enter__(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(self.path))
        os.chmod(self.tmp, 0o666 & ~_umask())
        self.fh = os.fdopen(fd, "w", newline="")
        return self.fh

    def __exit__(self, exc_type, exc, tb):
        self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
