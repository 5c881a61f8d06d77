"""MNIST (report §V.B), read from the original IDX files and verified.

MNIST is read from the original IDX files, each checked against the SHA-256
sums this package carries (``mnist_sha256.idx``, sums of the *uncompressed*
files). Sources, in order:

1. a folder given as ``path=`` or by the env var ``HFLIB_DATA_DIR``;
2. the user cache (``~/.cache/hflib/mnist``, or ``cache_dir=`` /
   ``HFLIB_CACHE_DIR``), holding the IDX files or a Keras ``mnist.npz``;
3. a download of Keras' ``mnist.npz`` (hash-checked, with a timeout), stored
   atomically in the cache.

Nothing is ever unpickled, and a file that fails a check raises a
``ValueError`` naming it instead of being used.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .. import checks

__all__ = ["load_mnist", "locate"]

DATA_DIR_ENV = "HFLIB_DATA_DIR"
CACHE_DIR_ENV = "HFLIB_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/hflib/mnist")

IMAGE_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
NUM_CLASSES = 10

# name -> (magic, shape) of the four original files.
IDX_FILES = {
    "train-images-idx3-ubyte": (IMAGE_MAGIC, (60000, 28, 28)),
    "train-labels-idx1-ubyte": (LABEL_MAGIC, (60000,)),
    "t10k-images-idx3-ubyte": (IMAGE_MAGIC, (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": (LABEL_MAGIC, (10000,)),
}
_SUMS_FILE = Path(__file__).resolve().parent.parent / "mnist_sha256.idx"

NPZ_NAME = "mnist.npz"
NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


DOWNLOAD_TIMEOUT = 60  # seconds without an answer before the download gives up


def load_mnist(
    path=None,
    *,
    flatten=True,
    one_hot=False,
    dtype="float32",
    cache_dir=None,
    download=True,
    center=False,
):
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)`` (report §V.B).

    Images are scaled to [0, 1] in ``dtype``: shape (N, 784) when ``flatten``,
    else NHWC (N, 28, 28, 1). With ``center``, the training images' per-pixel
    mean is subtracted from both sets (pixels then lie in [-1, 1]). Labels are
    int64 (N,), or one-hot (N, 10) in ``dtype`` when ``one_hot``. Parsed files
    are cached in-process; every call returns fresh arrays. See the module
    docstring for the source order.
    """
    checks.boolean(flatten, "flatten")
    checks.boolean(one_hot, "one_hot")
    checks.boolean(download, "download")
    checks.boolean(center, "center")
    dtype = checks.float_dtype(dtype)
    raw = _load_raw(path, cache_dir, download)
    (x, y), (xt, yt) = (
        (_scale_images(x, flatten, dtype), _format_labels(y, one_hot, dtype))
        for x, y in raw
    )
    if center:
        mean = x.mean(axis=0, dtype=np.float64).astype(dtype)
        x -= mean
        xt -= mean
    return (x, y), (xt, yt)


# --------------------------------------------------------------------------
# Finding the source
# --------------------------------------------------------------------------


def locate(path=None, cache_dir=None):
    """Where `load_mnist` would read MNIST from without downloading: a folder of IDX files or a
    cached ``mnist.npz``, or None when neither is there. Nothing is read or verified."""
    try:
        data_dir = _data_dir(path)
    except FileNotFoundError:
        return None
    if data_dir is not None:
        return data_dir if _idx_paths(data_dir, required=False) is not None else None
    cache = _cache_dir(cache_dir)
    if _idx_paths(cache, required=False) is not None:
        return cache
    return cache / NPZ_NAME if (cache / NPZ_NAME).is_file() else None


def _load_raw(path, cache_dir, download):
    """Raw uint8 ``((x_train, y_train), (x_test, y_test))`` from the first source."""
    data_dir = _data_dir(path)
    if data_dir is not None:
        return _read_idx_dir(_idx_paths(data_dir, required=True))

    cache = _cache_dir(cache_dir)
    idx_paths = _idx_paths(cache, required=False)
    if idx_paths is not None:
        return _read_idx_dir(idx_paths)
    npz = cache / NPZ_NAME
    if npz.is_file():
        return _read_npz_file(npz)
    if not download:
        raise FileNotFoundError(
            "MNIST was not found and download=False. " + _how_to_provide(cache)
        )
    return _read_npz_file(_download_npz(cache))


def _data_dir(path):
    """The folder named by ``path=`` or ``HFLIB_DATA_DIR``, or None."""
    if path is None:
        path = os.environ.get(DATA_DIR_ENV) or None
        origin = f"${DATA_DIR_ENV}"
    else:
        origin = "path="
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST folder {folder} (from {origin}) does not exist. "
            + _how_to_provide(None)
        )
    return folder


def _cache_dir(cache_dir):
    """The user cache folder: ``cache_dir``, ``$HFLIB_CACHE_DIR`` or the default."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
    elif not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(
            f"cache_dir must be a str or os.PathLike, got {type(cache_dir).__name__}"
        )
    return Path(cache_dir).expanduser()


def _idx_paths(folder, *, required):
    """Map each IDX name to its raw (preferred) or ``.gz`` file in ``folder``.

    Returns None when files are missing and not ``required``; otherwise a
    missing file raises FileNotFoundError listing the missing names.
    """
    found, missing = {}, []
    for name in IDX_FILES:
        raw, gz = folder / name, folder / f"{name}.gz"
        if raw.is_file():
            found[name] = raw
        elif gz.is_file():
            found[name] = gz
        else:
            missing.append(name)
    if not missing:
        return found
    if required:
        raise FileNotFoundError(
            f"MNIST folder {folder} lacks {', '.join(missing)} (raw or .gz). "
            + _how_to_provide(None)
        )
    return None


def _how_to_provide(cache):
    where = f" into {cache}" if cache is not None else ""
    return (
        "To provide MNIST, do one of: set HFLIB_DATA_DIR to a folder holding "
        "the four IDX files (" + ", ".join(IDX_FILES) + "), raw or .gz; or "
        "pass load_mnist(path=<that folder>); or run `make data` / `python -m hflib data`, "
        f"which downloads and verifies {NPZ_NAME}{where} once (needs network)."
    )


# --------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------


def _read_idx_dir(paths):
    """Verified, parsed IDX arrays, memoised on the files' identity."""
    key = tuple((name, *_file_identity(p)) for name, p in paths.items())
    return _read_idx_files(key)


@functools.lru_cache(maxsize=4)
def _read_idx_files(key):
    arrays = {name: _read_idx(Path(p)) for name, p, _, _ in key}
    return (
        (arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]),
        (arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]),
    )


def _read_idx(path):
    """Read one IDX file (raw or .gz), check its SHA-256, parse it."""
    name = path.name.removesuffix(".gz")
    data = _read_bytes(path)
    _check_sha256(data, _expected_sums()[name], path)
    magic, shape = IDX_FILES[name]
    return _parse_idx(data, magic, shape, path)


def _read_bytes(path):
    """The uncompressed bytes of ``path``; a broken gzip stream is a ValueError."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from e


def _check_sha256(data, expected, path):
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ValueError(
            f"{path}: SHA-256 of the uncompressed file is {actual}, expected "
            f"{expected}; the file is corrupt, truncated or not the original "
            "MNIST file. Replace it with a fresh copy."
        )


def _parse_idx(data, magic, shape, path):
    """Parse IDX bytes: big-endian int32 magic and dims, then uint8 values."""
    ndim = len(shape)
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    fields = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(fields[0]) != magic:
        raise ValueError(f"{path}: IDX magic number {int(fields[0])}, expected {magic}")
    dims = tuple(int(d) for d in fields[1:])
    if dims != shape:
        raise ValueError(f"{path}: IDX dimensions {dims}, expected {shape}")
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(
            f"{path}: {len(data) - header} data bytes, expected {int(np.prod(shape))}"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    if magic == LABEL_MAGIC:
        _check_labels(array, path)
    return _read_only(array)


@functools.lru_cache(maxsize=1)
def _expected_sums():
    """``{file name: sha256}`` from the carried ``mnist_sha256.idx``."""
    sums = {}
    for line in _SUMS_FILE.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest.lower()
    missing = set(IDX_FILES) - set(sums)
    if missing:
        raise RuntimeError(f"{_SUMS_FILE} lacks sums for {sorted(missing)}")
    return sums


# --------------------------------------------------------------------------
# Keras mnist.npz
# --------------------------------------------------------------------------


def _read_npz_file(path):
    """Verified arrays of a Keras ``mnist.npz``, memoised on the file's identity."""
    return _read_npz(*_file_identity(path))


@functools.lru_cache(maxsize=2)
def _read_npz(path, size, mtime_ns):
    path = Path(path)
    data = path.read_bytes()
    _check_sha256(data, NPZ_SHA256, path)
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        arrays = {key: f[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    for split, n in (("train", 60000), ("test", 10000)):
        _check_array(arrays[f"x_{split}"], (n, 28, 28), f"{path}[x_{split}]")
        _check_array(arrays[f"y_{split}"], (n,), f"{path}[y_{split}]")
        _check_labels(arrays[f"y_{split}"], f"{path}[y_{split}]")
    return tuple(
        (_read_only(arrays[f"x_{s}"]), _read_only(arrays[f"y_{s}"]))
        for s in ("train", "test")
    )


def _download_npz(cache):
    """Fetch ``mnist.npz`` into ``cache``: a temporary file in the cache, the SHA-256 check, then
    os.replace. A server that stops answering for DOWNLOAD_TIMEOUT seconds ends the download."""
    target = cache / NPZ_NAME
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
            fetched = Path(tmp) / NPZ_NAME
            _fetch(NPZ_URL, fetched, DOWNLOAD_TIMEOUT)
            _check_sha256(fetched.read_bytes(), NPZ_SHA256, fetched)
            os.replace(fetched, target)
    except ValueError as e:
        raise ValueError(f"Download of {NPZ_URL} failed its check: {e}") from e
    except Exception as e:
        raise RuntimeError(
            f"Downloading {NPZ_URL} into {cache} failed ({e}). " + _how_to_provide(cache)
        ) from e
    return target


def _fetch(url, path, timeout):
    """Copy `url` to `path`; `timeout` bounds each wait for the server (connect and every read)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _file_identity(path):
    st = Path(path).stat()
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def _read_only(array):
    array.setflags(write=False)
    return array


def _check_array(array, shape, where):
    if array.dtype != np.uint8 or array.shape != shape:
        raise ValueError(f"{where}: {array.dtype}{array.shape}, expected uint8{shape}")


def _check_labels(labels, where):
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise ValueError(f"{where}: label {int(labels.max())} is not a digit 0-9")


def _scale_images(x, flatten, dtype):
    shape = (len(x), 28 * 28) if flatten else (len(x), 28, 28, 1)
    images = x.reshape(shape).astype(dtype)
    images /= 255
    return images


def _format_labels(y, one_hot, dtype):
    if one_hot:
        return np.eye(NUM_CLASSES, dtype=dtype)[y]
    return y.astype(np.int64)
