"""Tests of hflib.data: the verified MNIST loader, datasets, sine data, subsets."""

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from hflib import data, experiments
from hflib.data import mnist as mnist_module

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SMALL = "t10k-labels-idx1-ubyte"  # the smallest file: cheap to corrupt


def _find_mnist_dir():
    """$HFLIB_DATA_DIR, else the sibling shared/data/mnist checkout, else None."""
    env = os.environ.get("HFLIB_DATA_DIR")
    sibling = Path(__file__).resolve().parents[2] / "shared/data/mnist"
    for folder in (Path(env) if env else None, sibling):
        if folder is not None and folder.is_dir():
            return folder
    return None


MNIST_DIR = _find_mnist_dir()
needs_mnist = pytest.mark.skipif(
    MNIST_DIR is None,
    reason="MNIST IDX files not found: set HFLIB_DATA_DIR to a folder with the four files",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the user's data/cache folders or the network."""
    monkeypatch.delenv("HFLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("HFLIB_CACHE_DIR", str(tmp_path / "empty-cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(mnist_module, "_fetch", no_network)


@pytest.fixture(scope="module")
def mnist():
    if MNIST_DIR is None:
        pytest.skip("MNIST IDX files not found")
    return data.load_mnist(MNIST_DIR, download=False)


@pytest.fixture
def idx_copy(tmp_path):
    """A temp folder with the four files as found in MNIST_DIR (raw or .gz)."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in data.IDX_FILES:
        for candidate in (MNIST_DIR / name, MNIST_DIR / f"{name}.gz"):
            if candidate.is_file():
                shutil.copy(candidate, folder / candidate.name)
                break
    return folder


def _raw_bytes(folder, name):
    raw, gz = folder / name, folder / f"{name}.gz"
    return raw.read_bytes() if raw.is_file() else gzip.decompress(gz.read_bytes())


def _replace_with_raw(folder, name, payload):
    """Put ``payload`` as the raw file ``name``, removing any .gz twin."""
    (folder / f"{name}.gz").unlink(missing_ok=True)
    (folder / name).write_bytes(payload)


def _as_uint8(images):
    return np.round(images * 255).astype(np.uint8).reshape(-1, 28, 28)


# --------------------------------------------------------------------------
# load_mnist on the real files
# --------------------------------------------------------------------------


@needs_mnist
def test_shapes_dtypes_and_ranges(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0


@needs_mnist
def test_class_counts(mnist):
    (_, y_train), (_, y_test) = mnist
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == TEST_COUNTS


@needs_mnist
def test_one_hot_nhwc_and_dtype(mnist):
    (x_train, y_train), (x_test, y_test) = data.load_mnist(
        MNIST_DIR, flatten=False, one_hot=True, dtype="float64", download=False
    )
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert x_train.dtype == np.float64
    assert y_train.shape == (60000, 10) and y_test.shape == (10000, 10)
    assert y_train.dtype == np.float64
    np.testing.assert_array_equal(y_train.sum(axis=1), 1.0)
    np.testing.assert_array_equal(y_train.argmax(axis=1), mnist[0][1])
    np.testing.assert_allclose(x_test.reshape(10000, 784), mnist[1][0], rtol=1e-6)


@needs_mnist
def test_center_subtracts_the_training_mean_from_both_sets(mnist):
    (x_train, y_train), (x_test, y_test) = data.load_mnist(MNIST_DIR, flatten=False, center=True, download=False)
    mean = mnist[0][0].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(x_train.reshape(60000, 784), mnist[0][0] - mean, atol=1e-6)
    np.testing.assert_allclose(x_test.reshape(10000, 784), mnist[1][0] - mean, atol=1e-6)   # the train mean
    assert abs(x_train.mean(axis=0, dtype=np.float64)).max() < 1e-6 and x_train.dtype == np.float32
    assert -1.0 <= x_test.min() and x_test.max() <= 1.0
    np.testing.assert_array_equal(y_train, mnist[0][1])
    np.testing.assert_array_equal(y_test, mnist[1][1])


@needs_mnist
def test_env_var_source(monkeypatch, mnist):
    monkeypatch.setenv("HFLIB_DATA_DIR", str(MNIST_DIR))
    (_, y_train), _ = data.load_mnist(download=False)
    np.testing.assert_array_equal(y_train, mnist[0][1])


@needs_mnist
def test_callers_cannot_corrupt_the_cache(mnist):
    (x_train, y_train), _ = data.load_mnist(MNIST_DIR, download=False)
    x_train[:] = -1.0
    y_train[:] = 99
    (x_again, y_again), _ = data.load_mnist(MNIST_DIR, download=False)
    np.testing.assert_array_equal(x_again[:5], mnist[0][0][:5])
    np.testing.assert_array_equal(y_again, mnist[0][1])


@needs_mnist
def test_raw_and_gz_give_the_same_arrays(tmp_path, mnist):
    raw_dir, gz_dir = tmp_path / "raw", tmp_path / "gz"
    raw_dir.mkdir()
    gz_dir.mkdir()
    for name in data.IDX_FILES:
        payload = _raw_bytes(MNIST_DIR, name)
        (raw_dir / name).write_bytes(payload)
        (gz_dir / f"{name}.gz").write_bytes(gzip.compress(payload, compresslevel=1))
    for folder in (raw_dir, gz_dir):
        (x_train, y_train), (x_test, y_test) = data.load_mnist(folder, download=False)
        np.testing.assert_array_equal(y_train, mnist[0][1])
        np.testing.assert_array_equal(x_test, mnist[1][0])


@needs_mnist
def test_cache_dir_with_idx_files(idx_copy, mnist):
    (_, y_train), _ = data.load_mnist(cache_dir=idx_copy, download=False)
    np.testing.assert_array_equal(y_train, mnist[0][1])


# --------------------------------------------------------------------------
# Integrity checks
# --------------------------------------------------------------------------


@needs_mnist
def test_flipped_byte_is_a_value_error_naming_the_file(idx_copy):
    payload = bytearray(_raw_bytes(idx_copy, SMALL))
    payload[5000] ^= 0x01
    _replace_with_raw(idx_copy, SMALL, bytes(payload))
    with pytest.raises(ValueError, match=SMALL):
        data.load_mnist(idx_copy, download=False)


@needs_mnist
def test_flipped_byte_in_gz_payload_is_rejected(idx_copy):
    payload = bytearray(_raw_bytes(idx_copy, SMALL))
    payload[-1] ^= 0x01
    (idx_copy / SMALL).unlink(missing_ok=True)
    (idx_copy / f"{SMALL}.gz").write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(ValueError, match=f"{SMALL}.*SHA-256"):
        data.load_mnist(idx_copy, download=False)


@needs_mnist
def test_truncated_raw_file_is_rejected(idx_copy):
    _replace_with_raw(idx_copy, SMALL, _raw_bytes(idx_copy, SMALL)[:-100])
    with pytest.raises(ValueError, match=SMALL):
        data.load_mnist(idx_copy, download=False)


@needs_mnist
def test_truncated_gz_file_is_rejected(idx_copy):
    compressed = gzip.compress(_raw_bytes(idx_copy, SMALL))
    (idx_copy / SMALL).unlink(missing_ok=True)
    (idx_copy / f"{SMALL}.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match=SMALL):
        data.load_mnist(idx_copy, download=False)


def test_parse_idx_checks_magic_dims_and_size(tmp_path):
    header = np.array([2049, 3], dtype=">u4").tobytes()
    good = header + bytes([1, 2, 3])
    labels = mnist_module._parse_idx(good, 2049, (3,), "f")
    assert labels.tolist() == [1, 2, 3] and not labels.flags.writeable
    with pytest.raises(ValueError, match="magic"):
        mnist_module._parse_idx(good, 2051, (3,), "f")
    with pytest.raises(ValueError, match="dimensions"):
        mnist_module._parse_idx(good, 2049, (4,), "f")
    with pytest.raises(ValueError, match="data bytes"):
        mnist_module._parse_idx(good[:-1], 2049, (3,), "f")
    with pytest.raises(ValueError, match="header"):
        mnist_module._parse_idx(b"\x00\x00", 2049, (3,), "f")


def test_carried_sums_match_the_shared_readme_copy():
    sums = mnist_module._expected_sums()
    assert set(sums) == set(data.IDX_FILES)
    if MNIST_DIR is not None and (MNIST_DIR / "SHA256SUMS.idx").is_file():
        shared = (MNIST_DIR / "SHA256SUMS.idx").read_text().split()
        assert dict(zip(shared[1::2], shared[0::2])) == sums


# --------------------------------------------------------------------------
# Missing files and the download path
# --------------------------------------------------------------------------


def test_offline_without_files_says_how_to_provide_them(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist(cache_dir=tmp_path, download=False)
    message = str(info.value)
    for hint in ("HFLIB_DATA_DIR", "path=", "make data", ".gz",
                 "train-images-idx3-ubyte"):
        assert hint in message


def test_folder_missing_a_file_names_it(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist(tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="HFLIB_DATA_DIR"):
        data.load_mnist(tmp_path / "nope", download=False)


def test_env_var_pointing_nowhere_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HFLIB_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="HFLIB_DATA_DIR"):
        data.load_mnist(download=False)


def test_failed_download_is_a_runtime_error_with_instructions(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure on mnist.npz: None -- no network")

    monkeypatch.setattr(mnist_module, "_fetch", offline)
    with pytest.raises(RuntimeError, match="HFLIB_DATA_DIR"):
        data.load_mnist(cache_dir=tmp_path / "cache", download=True)
    assert list((tmp_path / "cache").iterdir()) == []


@needs_mnist
def test_download_goes_atomically_into_the_cache(monkeypatch, tmp_path, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    npz = tmp_path / "served.npz"
    np.savez(npz, x_train=_as_uint8(x_train), y_train=y_train.astype(np.uint8),
             x_test=_as_uint8(x_test), y_test=y_test.astype(np.uint8))
    monkeypatch.setattr(mnist_module, "NPZ_SHA256", hashlib.sha256(npz.read_bytes()).hexdigest())
    calls = []

    def fake_fetch(url, path, timeout):
        calls.append(Path(path).parent)
        assert timeout == mnist_module.DOWNLOAD_TIMEOUT
        shutil.copy(npz, path)

    monkeypatch.setattr(mnist_module, "_fetch", fake_fetch)
    cache = tmp_path / "cache"
    (_, got_y), (got_x, _) = data.load_mnist(cache_dir=cache, download=True)
    np.testing.assert_array_equal(got_y, y_train)
    np.testing.assert_array_equal(got_x, x_test)
    assert Path(calls[0]).parent == cache  # downloaded into a temp dir inside the cache
    assert [p.name for p in cache.iterdir()] == ["mnist.npz"]

    # Now served from the cache, offline.
    (_, again), _ = data.load_mnist(cache_dir=cache, download=False)
    np.testing.assert_array_equal(again, y_train)
    assert len(calls) == 1

    # A corrupted cached npz is refused, never used.
    blob = bytearray((cache / "mnist.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (cache / "mnist.npz").write_bytes(bytes(blob))
    stat = (cache / "mnist.npz").stat()  # the in-process cache keys on size+mtime
    os.utime(cache / "mnist.npz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match="mnist.npz"):
        data.load_mnist(cache_dir=cache, download=False)


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------


def test_download_that_never_answers_times_out(monkeypatch, tmp_path):
    """A server that accepts the connection but never sends a byte: the download gives up after
    the timeout with instructions, instead of hanging."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    monkeypatch.setattr(mnist_module, "NPZ_URL", f"http://127.0.0.1:{server.getsockname()[1]}/mnist.npz")
    monkeypatch.setattr(mnist_module, "DOWNLOAD_TIMEOUT", 0.5)
    monkeypatch.setattr(mnist_module, "_fetch", _real_fetch)
    try:
        with pytest.raises(RuntimeError, match="HFLIB_DATA_DIR"):
            data.load_mnist(cache_dir=tmp_path / "cache", download=True)
    finally:
        server.close()


_real_fetch = mnist_module._fetch


@pytest.mark.parametrize(
    "kwargs, error, word",
    [
        ({"dtype": "int32"}, ValueError, "dtype"),
        ({"dtype": "not-a-dtype"}, TypeError, "dtype"),
        ({"flatten": "yes"}, TypeError, "flatten"),
        ({"one_hot": 1}, TypeError, "one_hot"),
        ({"download": None}, TypeError, "download"),
        ({"path": 3}, TypeError, "path"),
        ({"cache_dir": 3}, TypeError, "cache_dir"),
        ({"center": "no"}, TypeError, "center"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, word):
    kwargs.setdefault("download", False)
    with pytest.raises(error, match=word):
        data.load_mnist(**kwargs)


# --------------------------------------------------------------------------
# make_dataset
# --------------------------------------------------------------------------


def _epoch(ds):
    return [(bx.numpy(), by.numpy()) for bx, by in ds]


def test_make_dataset_batches():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    batches = _epoch(data.make_dataset(x, y, 4, shuffle=False))
    assert [len(bx) for bx, _ in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([by for _, by in batches]), y)
    np.testing.assert_array_equal(batches[0][0][:, 0], [0, 1, 2, 3])
    dropped = _epoch(data.make_dataset(x, y, 4, shuffle=False, drop_remainder=True))
    assert [len(bx) for bx, _ in dropped] == [4, 4]


def test_make_dataset_shuffle_is_seeded_and_reshuffles():
    x = np.arange(100, dtype=np.float32)
    y = np.arange(100)

    def order(ds):
        return np.concatenate([by for _, by in _epoch(ds)])

    ds = data.make_dataset(x, y, 32, seed=7)
    first, second = order(ds), order(ds)
    assert sorted(first.tolist()) == list(range(100))
    assert not np.array_equal(first, np.arange(100))
    assert not np.array_equal(first, second)  # new order each epoch
    np.testing.assert_array_equal(order(data.make_dataset(x, y, 32, seed=7)), first)
    assert not np.array_equal(order(data.make_dataset(x, y, 32, seed=8)), first)
    bx, by = next(iter(data.make_dataset(x, y, 32, seed=7)))
    np.testing.assert_array_equal(bx.numpy(), by.numpy())  # pairs stay together


def test_make_dataset_repeat():
    x = np.arange(10, dtype=np.float32)
    ds = data.make_dataset(x, x, 4, repeat=True, drop_remainder=True)
    assert len([b for b in ds.take(7)]) == 7


def test_make_dataset_checks_arguments():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="batch_size"):
        data.make_dataset(x, x, 0)
    with pytest.raises(TypeError, match="batch_size"):
        data.make_dataset(x, x, 2.5)
    with pytest.raises(ValueError, match="same length"):
        data.make_dataset(x, x[:4], 2)


# --------------------------------------------------------------------------
# make_sine_data, subset, quick_mode
# --------------------------------------------------------------------------


def test_make_sine_data():
    x, y = data.make_sine_data()
    assert x.shape == (2000, 1) and y.shape == (2000, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    x2, y2 = data.make_sine_data()
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, data.make_sine_data(seed=1)[0])
    residual = y - np.sin(x)
    assert 0.08 < residual.std() < 0.12 and abs(x.mean()) < 0.1
    xc, yc = data.make_sine_data(n=50, noise=0.0, dtype="float64")
    assert xc.dtype == np.float64 and xc.shape == (50, 1)
    np.testing.assert_allclose(yc, np.sin(xc))
    with pytest.raises(ValueError, match="noise"):
        data.make_sine_data(noise=-1)
    with pytest.raises(ValueError, match="n"):
        data.make_sine_data(n=0)


@needs_mnist
def test_subset_is_stratified_and_deterministic(mnist):
    (x, y), _ = mnist
    xs, ys = data.subset(x, y, 1000, seed=3)
    assert xs.shape == (1000, 784) and ys.shape == (1000,)
    expected = 1000 * np.array(TRAIN_COUNTS) / 60000
    assert np.all(np.abs(np.bincount(ys, minlength=10) - expected) <= 1)
    xs2, ys2 = data.subset(x, y, 1000, seed=3)
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(ys, ys2)
    assert not np.array_equal(data.subset(x, y, 1000, seed=4)[1], ys)


def test_subset_one_hot_and_regression():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    one_hot = np.eye(4, dtype=np.float32)[labels]
    x = np.arange(100)
    xs, ys = data.subset(x, one_hot, 10)
    assert np.bincount(ys.argmax(axis=1)).tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(one_hot[xs], ys)  # rows stay paired
    assert np.all(np.diff(xs) > 0)  # original order, no repeats
    xr, yr = data.subset(x, rng.standard_normal(100), 30, seed=1)
    assert xr.shape == (30,) and len(set(xr.tolist())) == 30
    with pytest.raises(ValueError, match="n"):
        data.subset(x, labels, 101)


@pytest.mark.parametrize(
    "value, expected",
    [("1", True), ("true", True), ("TRUE", True), ("Yes", True), (" yes ", True),
     ("0", False), ("false", False), ("no", False), ("", False), ("on", False),
     (None, False)],
)
def test_quick_mode(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("HFLIB_QUICK", raising=False)
    else:
        monkeypatch.setenv("HFLIB_QUICK", value)
    assert experiments.quick_mode() is expected
