"""Checkpoints of a training run (layer 3): the model, the updater's state, the History, the
position in the data and the settings, in one folder.

Checkpoint N (N = the updater's update counter) is the TensorFlow files ``ckpt-N.index`` and
``ckpt-N.data-*`` (model and updater variables), then ``ckpt-N.json`` (position, settings,
configuration and History), written atomically and *last*: a checkpoint exists only once its JSON
file does, so a run killed at any moment leaves the previous checkpoint intact. Restoring takes the
newest complete checkpoint; one whose files are damaged, or whose JSON file is missing while its
TensorFlow files exist, is reported and the next older one is used; when checkpoint files exist but
none can be restored, restoring fails rather than starting afresh over them. A fresh (not resumed)
run refuses a folder holding checkpoints newer than its updater, whose pruning would delete its own.
A resumed run must use the settings it was saved with: a changed setting is refused, naming it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings

import tensorflow as tf

from .history import History, atomic_write, strict_json

FORMAT = 1
_NAME = re.compile(r"^ckpt-(\d+)\.json$")
_FILES = re.compile(r"^ckpt-(\d+)(\.index|\.data-\d+-of-\d+|\.json)$")
_LEFTOVER = re.compile(r"(_temp|^\.tmp-)")
_META_KEYS = {"format", "update", "position", "settings", "config", "history"}


class CheckpointStore:
    """Save and restore checkpoints of `updater` (which has `model`, `iterations`, `get_config()`
    and is a `tf.Module`) in `directory`, keeping the newest `max_to_keep`."""

    def __init__(self, directory, updater, max_to_keep=3):
        self.directory = os.fspath(directory)
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"checkpoint_dir: {self.directory} exists and is not a folder")
        self.updater = updater
        self.max_to_keep = max_to_keep
        self._checkpoint = tf.train.Checkpoint(model=updater.model, updater=updater)

    def numbers(self):
        """The update numbers of the complete checkpoints, newest first."""
        if not os.path.isdir(self.directory):
            return []
        found = (_NAME.match(n) for n in os.listdir(self.directory))
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def _all_numbers(self):
        """The update numbers of every checkpoint with any file in the folder, complete or not."""
        if not os.path.isdir(self.directory):
            return set()
        found = (_FILES.match(n) for n in os.listdir(self.directory))
        return {int(m.group(1)) for m in found if m}

    def check_fresh_start(self):
        """Refuse to start a new run in a folder holding checkpoints newer than the updater's
        counter: its saves would mix with them and pruning would delete the new ones."""
        newer = [n for n in self._all_numbers() if n > int(self.updater.iterations.numpy())]
        if newer:
            raise ValueError(f"checkpoint_dir: {self.directory} holds checkpoints of another run (up to "
                             f"ckpt-{max(newer)}); pass resume=True to continue it, or use another folder")

    def _prefix(self, number):
        return os.path.join(self.directory, f"ckpt-{number}")

    def save(self, history, position, settings):
        """Write checkpoint N = the updater's update counter; returns its path prefix."""
        os.makedirs(self.directory, exist_ok=True)
        number = int(self.updater.iterations.numpy())
        prefix = self._prefix(number)
        self._checkpoint.write(prefix)
        meta = {"format": FORMAT, "update": number, "position": position, "settings": settings,
                "config": self.updater.get_config(), "history": History(history.records).records}
        atomic_write(prefix + ".json", json.dumps(strict_json(meta), indent=1, allow_nan=False))
        self._prune()
        return prefix

    def _prune(self):
        keep = set(self.numbers()[:self.max_to_keep])
        for name in os.listdir(self.directory):
            m = _FILES.match(name)
            if m and int(m.group(1)) not in keep and int(m.group(1)) < max(keep, default=0):
                os.remove(os.path.join(self.directory, name))

    def clean_leftovers(self):
        """Remove what an interrupted save left: TensorFlow's ``*_temp*`` folders and ``.tmp-*`` files."""
        if not os.path.isdir(self.directory):
            return []
        removed = []
        for name in os.listdir(self.directory):
            if _LEFTOVER.search(name):
                path = os.path.join(self.directory, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                removed.append(name)
        return removed

    def restore(self, settings):
        """Restore the newest intact checkpoint; returns (number, History, position), or None when the
        folder holds no checkpoint. Refuses (ValueError) a checkpoint saved with other settings or
        another configuration, and raises when checkpoint files exist but none can be restored."""
        self.clean_leftovers()
        numbers = self.numbers()
        newest = max(numbers, default=-1)
        errors = [f"ckpt-{n}: no ckpt-{n}.json (its save did not finish)"
                  for n in sorted(self._all_numbers() - set(numbers), reverse=True) if n > newest]
        for number in numbers:
            prefix = self._prefix(number)
            try:
                meta = _read_meta(prefix + ".json")
            except (OSError, ValueError) as e:
                errors.append(f"ckpt-{number}.json: {e}")
                continue
            _refuse_changes(meta, self.updater.get_config(), settings, number)
            try:
                self._checkpoint.read(prefix).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError) as e:
                errors.append(f"ckpt-{number}: {type(e).__name__}: {str(e).splitlines()[0]}")
                continue
            if errors:
                warnings.warn(f"hflib: skipped damaged checkpoint(s) in {self.directory} ({'; '.join(errors)}); "
                              f"resumed from the older ckpt-{number}", RuntimeWarning, stacklevel=3)
            return number, meta["history"], meta["position"]
        if errors:
            raise ValueError(f"checkpoint_dir: no checkpoint in {self.directory} can be restored "
                             f"({'; '.join(errors)}); move the folder away to start afresh")
        return None


def _read_meta(path):
    """The JSON part of a checkpoint (its History as a `History`), refusing a file that is not one."""
    with open(path) as fh:
        meta = json.load(fh)
    if not isinstance(meta, dict) or not _META_KEYS <= set(meta) or meta["format"] != FORMAT:
        raise ValueError(f"not an hflib checkpoint of format {FORMAT}")
    meta["history"] = History.from_jsonable(meta["history"])
    return meta


def _refuse_changes(meta, config, settings, number):
    """Raise a ValueError naming every setting that differs from the checkpoint's."""
    saved = {**meta.get("config", {}), **meta.get("settings", {})}
    now = {**config, **settings}
    changed = [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in sorted(set(saved) | set(now))
               if _normal(saved.get(k)) != _normal(now.get(k))]
    if changed:
        raise ValueError(f"resume: ckpt-{number} was saved with other settings ({'; '.join(changed)}). "
                         f"Resume with the same settings, or start a new run in another folder")


def _normal(value):
    """JSON round trip, so 1 == 1.0 and tuples == lists compare equal."""
    return json.loads(json.dumps(value))
