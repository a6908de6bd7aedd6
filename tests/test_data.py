"""Datasets: IDX parsing, the offline MNIST copy, digits, users' .npz files, and the download
path exercised without the network (a stub fetch and a local HTTP server)."""
import functools
import gzip
import hashlib
import http.server
import io
import math
import pickle
import re
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_core import DataError
from vae_core import data as vd
from vae_core.data import download, load_dataset, load_exploration, npz_arrays, parse_idx, read_idx

FILES = [f for pair in vd.IDX_FILES.values() for f in pair]


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def tiny_idx_set(seed=0):
    """{filename: raw IDX bytes}: 6 train and 4 test images of 28x28 with labels."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", 6), ("test", 4)):
        img, lbl = vd.IDX_FILES[split]
        out[img] = idx_bytes(rng.integers(0, 256, (n, 28, 28)))
        out[lbl] = idx_bytes(rng.integers(0, 10, n))
    return out


def write_gz(folder: Path, raws: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in raws.items():
        (folder / name).write_bytes(gzip.compress(raw, mtime=0))
    return raws


def sha_checksums(raws: dict) -> dict:
    return {name: ("sha256-raw", hashlib.sha256(raw).hexdigest()) for name, raw in raws.items()}


# ---------------------------------------------------------------- IDX parsing

def test_parse_idx_reads_images_and_labels():
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    got = parse_idx(idx_bytes(imgs))
    assert got.shape == (2, 3, 4) and got.dtype == np.uint8 and np.array_equal(got, imgs)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    assert np.array_equal(parse_idx(idx_bytes(labels)), labels)


@pytest.mark.parametrize("raw, words", [
    (b"", "too short"),
    (b"\x00\x00\x08\x03", "too short"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated"),                  # header cut inside its dims
    (idx_bytes(np.zeros((2, 3, 4)))[:-1], "truncated"),                   # body one byte short
    (idx_bytes(np.zeros((2, 3, 4))) + b"\x00", "promises"),               # one byte too many
    (b"\x12\x34" + idx_bytes(np.zeros((2, 3, 4)))[2:], "bad IDX header"),  # bad magic
    (b"\x00\x00\x0d\x03" + idx_bytes(np.zeros((2, 3, 4)))[4:], "bad IDX header"),  # float dtype
    (b"\x00\x00\x08\x02" + idx_bytes(np.zeros((2, 3)))[4:], "bad IDX header"),     # 2-d
])
def test_bad_idx_bytes_raise_data_error(raw, words):
    with pytest.raises(DataError, match=words) as e:
        parse_idx(raw, "my-file.idx")
    assert "my-file.idx" in str(e.value)


def test_read_idx_refuses_a_broken_gz(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"definitely not gzip")
    with pytest.raises(DataError, match="not a readable .gz IDX file"):
        read_idx(p)
    good = gzip.compress(idx_bytes(np.zeros((3, 8, 8))))
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="x.gz"):
        read_idx(p)


# ---------------------------------------------------------------- offline datasets

def test_mnist_test_split_from_the_offline_copy():
    d = load_dataset("mnist", "test", allow_download=False)
    assert d.x.shape == (10_000, 1, 28, 28) and d.x.dtype == torch.float32
    assert d.x.min() == 0.0 and d.x.max() == 1.0
    assert d.y.shape == (10_000,) and d.y.dtype == torch.int64
    assert sorted(d.y.unique().tolist()) == list(range(10))
    assert d.classes == [str(i) for i in range(10)] and d.name == "mnist"
    assert len(d) == 10_000 and d.image_shape == (1, 28, 28)
    s = d.subset(7)
    assert len(s) == 7 and torch.equal(s.x, d.x[:7]) and torch.equal(s.y, d.y[:7])


def test_digits_splits(digits):
    train, test = digits
    assert len(train) == 1497 and len(test) == 300
    for d in (train, test):
        assert d.image_shape == (1, 8, 8) and d.x.dtype == torch.float32
        assert d.x.min() >= 0 and d.x.max() <= 1 and d.x.max() == 1.0
        assert set(d.y.unique().tolist()) == set(range(10))
        assert d.y.dtype == torch.int64 and d.name == "digits"
    # The split is repeatable, and train and test together hold each of the 1,797 images once.
    assert torch.equal(load_dataset("digits", "test").x, test.x)
    from sklearn.datasets import load_digits
    rows = lambda a: sorted(map(tuple, np.asarray(a).reshape(len(a), -1).round().astype(int).tolist()))
    assert rows(torch.cat([train.x, test.x]) * 16) == rows(load_digits().images)


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(DataError, match="cifar"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="validation"):
        load_dataset("digits", "validation")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.npz"))


def test_data_dir_is_honoured(tmp_path, monkeypatch):
    raws = write_gz(tmp_path / "mnist", tiny_idx_set())
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    assert vd.data_dir("mnist") == tmp_path / "mnist"
    d = load_dataset("mnist", "train", allow_download=False)
    assert d.x.shape == (6, 1, 28, 28)
    imgs = parse_idx(raws["train-images-idx3-ubyte.gz"])
    assert torch.equal(d.x[:, 0], torch.from_numpy(imgs.astype(np.float32)) / 255)
    assert torch.equal(d.y, torch.from_numpy(parse_idx(raws["train-labels-idx1-ubyte.gz"]).astype(np.int64)))
    assert len(load_dataset("mnist", "test", allow_download=False)) == 4


def test_mismatched_image_and_label_counts(tmp_path, monkeypatch):
    raws = tiny_idx_set()
    raws["t10k-labels-idx1-ubyte.gz"] = idx_bytes(np.zeros(3))
    write_gz(tmp_path / "mnist", raws)
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="4 images but 3 labels"):
        load_dataset("mnist", "test", allow_download=False)


def test_missing_folder_without_download_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", "test", allow_download=False)
    msg = str(e.value)
    assert str(tmp_path / "empty" / "fashion-mnist") in msg and "VAE_DATA_DIR" in msg
    assert not (tmp_path / "empty").exists()


# ---------------------------------------------------------------- .npz files

def npz(tmp_path, name="data.npz", **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def test_npz_uint8_and_float(tmp_path):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (20, 12, 10), dtype=np.uint8)
    y = rng.integers(0, 5, 20)
    x, yy = npz_arrays(npz(tmp_path, x=u8, y=y))
    assert x.dtype == np.float32 and np.allclose(x, u8 / 255.0) and np.array_equal(yy, y)

    f = rng.random((20, 1, 12, 10)).astype(np.float64)
    x, yy = npz_arrays(npz(tmp_path, "f.npz", x=f))
    assert x.shape == (20, 12, 10) and yy is None and np.allclose(x, f[:, 0])

    train = load_dataset(str(npz(tmp_path, "u.npz", x=u8, y=y)), "train")
    test = load_dataset(str(tmp_path / "u.npz"), "test")
    assert len(train) == 18 and len(test) == 2 and train.image_shape == (1, 12, 10)
    assert train.name == "u.npz" and train.y.dtype == torch.int64
    # Together the splits hold every image once.
    both = (torch.cat([train.x, test.x]).flatten(1) * 255).round().int()
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, u8.reshape(20, -1).tolist()))


@pytest.mark.parametrize("arrays, words", [
    (dict(images=np.zeros((4, 8, 8), np.uint8)), "no 'x'"),
    (dict(x=np.zeros((4, 64), np.uint8)), "shape (4, 64)"),
    (dict(x=np.zeros((4, 3, 8, 8), np.uint8)), "shape (4, 3, 8, 8)"),
    (dict(x=np.full((4, 8, 8), np.nan, np.float32)), "NaN"),
    (dict(x=np.full((4, 8, 8), 2.0, np.float32)), "scale pixels to [0, 1]"),
    (dict(x=np.full((4, 8, 8), -0.5, np.float32)), "-0.5"),
    (dict(x=np.zeros((4, 8, 8), np.int64)), "int64"),
    (dict(x=np.zeros((1, 8, 8), np.uint8)), "1 image"),
    (dict(x=np.zeros((4, 4, 4), np.uint8)), "4x4"),
    (dict(x=np.zeros((4, 8, 100), np.uint8)), "8x100"),
    (dict(x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(3, np.int64)), "one label per image"),
    (dict(x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(4, np.float32)), "non-negative integers"),
    (dict(x=np.zeros((4, 8, 8), np.uint8), y=-np.ones(4, np.int64)), "non-negative integers"),
    (dict(x=np.array([None] * 4, dtype=object)), "Python objects"),
    (dict(x=np.zeros((4, 8, 8), np.uint8), y=np.array(["a"] * 4, dtype=object)), "Python objects"),
])
def test_bad_npz_files_are_refused(tmp_path, arrays, words):
    with pytest.raises(DataError) as e:
        npz_arrays(npz(tmp_path, **arrays))
    assert words in str(e.value), str(e.value)


def test_too_many_npz_images(tmp_path, monkeypatch):
    monkeypatch.setattr(vd, "MAX_NPZ_IMAGES", 3)
    with pytest.raises(DataError, match="limit of 3"):
        npz_arrays(npz(tmp_path, x=np.zeros((4, 8, 8), np.uint8)))
    assert npz_arrays(npz(tmp_path, "ok.npz", x=np.zeros((3, 8, 8), np.uint8)))[0].shape == (3, 8, 8)


def npz_declaring(path, shape, dtype=np.uint8, body_bytes=None):
    """An .npz (compressed) whose x.npy header declares `shape`, followed by `body_bytes` zero bytes
    (by default all the header promises), written in 1 MB chunks so the test itself stays small."""
    dtype = np.dtype(dtype)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("x.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
        left = math.prod(shape) * dtype.itemsize if body_bytes is None else body_bytes
        chunk = bytes(1 << 20)
        while left > 0:
            f.write(chunk[:left])
            left -= len(chunk)
    return path


def _peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def test_a_compressed_npz_bomb_is_refused_from_its_header(tmp_path):
    # 157 MB of zeros in a file of a few hundred kB: one image over the limit.
    bomb = npz_declaring(tmp_path / "bomb.npz", (vd.MAX_NPZ_IMAGES + 1, 28, 28))
    assert bomb.stat().st_size < 1_000_000
    before = _peak_rss_mb()
    with pytest.raises(DataError, match=f"x holds {vd.MAX_NPZ_IMAGES + 1} images, more than the limit"):
        npz_arrays(bomb)
    with pytest.raises(DataError, match="more than the limit"):
        npz_arrays(io.BytesIO(bomb.read_bytes()))
    assert _peak_rss_mb() - before < 100, "the array was decompressed before its size was checked"


@pytest.mark.parametrize("shape, dtype, words", [
    ((vd.MAX_NPZ_IMAGES + 1, 28, 28), np.uint8, "more than the limit of 200000"),
    ((200_000, 64, 64), np.float64, "would take 6.1 GB once decompressed, over the limit of 1 GB"),
    ((10, 8, 8), object, "Python objects"),
    ((10, 8, 4096), np.uint8, "images are 8x4096"),
])
def test_the_header_alone_refuses_a_file_whose_data_was_never_read(tmp_path, shape, dtype, words):
    """The data after the header is cut short: reading it would fail with another message, so the
    refusal quoted here can only come from the header."""
    p = npz_declaring(tmp_path / "cut.npz", shape, dtype, body_bytes=64)
    with pytest.raises(DataError, match=re.escape(words)):
        npz_arrays(p)


def test_a_header_that_lies_about_the_labels_is_refused(tmp_path):
    p = tmp_path / "labels.npz"
    with zipfile.ZipFile(p, "w") as zf:
        with zf.open("x.npy", "w") as f:
            np.save(f, np.zeros((4, 8, 8), np.uint8))
        with zf.open("y.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (10**6,)})
    with pytest.raises(DataError, match=re.escape("y has shape (1000000,) but x holds 4 images")):
        npz_arrays(p)


class _Marker:
    path = None

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("content", ["pickle", "noise", "npy"])
def test_non_npz_files_are_refused_without_running_code(tmp_path, content):
    marker = tmp_path / "ran"
    m = _Marker()
    m.path = str(marker)
    p = tmp_path / "evil.npz"
    if content == "pickle":
        p.write_bytes(pickle.dumps({"x": m}))
    elif content == "noise":
        p.write_bytes(b"PK\x03\x04 not really a zip file")
    else:
        with open(p, "wb") as f:
            np.save(f, np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DataError) as e:
        load_dataset(str(p))
    assert "save" in str(e.value)   # the message says how to write a good file
    assert not marker.exists()


def test_load_exploration_prefers_the_shipped_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y = np.arange(5)
    np.savez(tmp_path / "mnist-test.npz", x=x, y=y)
    d = load_exploration("mnist", tmp_path)
    assert len(d) == 5 and d.classes == [str(i) for i in range(10)] and d.name == "mnist"
    assert torch.equal(d.y, torch.arange(5))
    # Without the file the test split is used.
    assert len(load_exploration("digits", tmp_path)) == 300


@pytest.mark.parametrize("name", ["../secret", "../data/../secret", "SECRET_ABS"])
def test_load_exploration_builds_no_path_from_an_unknown_name(tmp_path, name):
    """A name from a checkpoint never picks the file: `folder/<name>-test.npz` is read only for
    the named datasets, so "../x" or an absolute path cannot reach a file outside the folder."""
    folder = tmp_path / "shipped" / "data"
    folder.mkdir(parents=True)
    np.savez(tmp_path / "shipped" / "secret-test.npz", x=np.full((3, 8, 8), 7, np.uint8))
    if name == "SECRET_ABS":
        name = str(tmp_path / "shipped" / "secret")
    assert (folder / f"{name}-test.npz").is_file()        # the old code would have read it
    with pytest.raises(DataError, match="is unknown: use one of mnist, fashion-mnist, digits"):
        load_exploration(name, folder)


# ---------------------------------------------------------------- downloads, offline

def test_download_with_a_stub_fetch(tmp_path):
    raws = tiny_idx_set()
    calls = []

    def fetch(url, dest, progress):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        Path(dest).write_bytes(gzip.compress(raws[name]))

    folder = download("mnist", tmp_path / "m", mirrors=["stub://a/"], checksums=sha_checksums(raws),
                      fetch=fetch, progress=False)
    assert folder == tmp_path / "m"
    assert sorted(calls) == sorted("stub://a/" + f for f in FILES)
    for name, raw in raws.items():
        assert gzip.decompress((folder / name).read_bytes()) == raw
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)   # no .part files left
    # Files already in place with a good checksum are not fetched again.
    download("mnist", folder, mirrors=["stub://a/"], checksums=sha_checksums(raws), fetch=fetch, progress=False)
    assert len(calls) == 4


def test_md5_of_the_gz_is_checked_too(tmp_path):
    raws = tiny_idx_set()
    gz = {name: gzip.compress(raw, mtime=0) for name, raw in raws.items()}
    sums = {name: ("md5-gz", hashlib.md5(b).hexdigest()) for name, b in gz.items()}

    def fetch(url, dest, progress):
        Path(dest).write_bytes(gz[url.rsplit("/", 1)[1]])

    download("fashion-mnist", tmp_path, mirrors=["s://"], checksums=sums, fetch=fetch, progress=False)
    assert all((tmp_path / n).read_bytes() == b for n, b in gz.items())


def test_stub_fetch_errors_fall_through_then_fail_clearly(tmp_path):
    raws = tiny_idx_set()

    def fetch(url, dest, progress):
        if url.startswith("bad://"):
            Path(dest).write_bytes(gzip.compress(b"tampered"))
        else:
            raise ConnectionError("network unreachable")

    with pytest.raises(DataError) as e:
        download("mnist", tmp_path / "m", mirrors=["bad://", "down://"], checksums=sha_checksums(raws),
                 fetch=fetch, progress=False)
    msg = str(e.value)
    assert "bad://: checksum mismatch" in msg and "down://: network unreachable" in msg
    assert str(tmp_path / "m") in msg and "VAE_DATA_DIR" in msg
    assert list((tmp_path / "m").iterdir()) == []   # no partial or unverified file kept


@pytest.fixture
def http_mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving good/ (correct files) and bad/ (tampered ones)."""
    raws = tiny_idx_set()
    root = tmp_path / "www"
    write_gz(root / "good", raws)
    write_gz(root / "bad", {n: idx_bytes(np.ones((2, 2, 2))) for n in raws})

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", raws
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def no_proxy(monkeypatch):
    # A proxy from the environment would send 127.0.0.1 requests elsewhere.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_download_from_a_local_http_server(tmp_path, http_mirror, no_proxy):
    base, raws = http_mirror
    folder = download("mnist", tmp_path / "dl", mirrors=[base + "good/"], checksums=sha_checksums(raws),
                      progress=False)
    for name, raw in raws.items():
        assert gzip.decompress((folder / name).read_bytes()) == raw
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)


def test_bad_checksum_falls_through_to_the_next_mirror(tmp_path, http_mirror, no_proxy):
    base, raws = http_mirror
    folder = download("mnist", tmp_path / "dl", mirrors=[base + "bad/", base + "good/"],
                      checksums=sha_checksums(raws), progress=False)
    assert all(gzip.decompress((folder / n).read_bytes()) == raw for n, raw in raws.items())


def test_all_mirrors_failing_says_where_to_put_the_files(tmp_path, http_mirror, no_proxy):
    base, raws = http_mirror
    with pytest.raises(DataError) as e:
        download("mnist", tmp_path / "dl", mirrors=[base + "bad/", base + "missing/"],
                 checksums=sha_checksums(raws), progress=False)
    msg = str(e.value)
    assert "checksum mismatch" in msg and "404" in msg
    assert f"put the four IDX .gz files in {tmp_path / 'dl'}" in msg and "VAE_DATA_DIR" in msg
    assert list((tmp_path / "dl").iterdir()) == []


def test_load_dataset_downloads_when_missing(tmp_path, http_mirror, no_proxy, monkeypatch):
    base, raws = http_mirror
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(vd.SOURCES, "mnist", {**vd.SOURCES["mnist"], "mirrors": [base + "good/"],
                                              "checksums": sha_checksums(raws)})
    d = load_dataset("mnist", "test")
    assert d.x.shape == (4, 1, 28, 28)
    assert (tmp_path / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    assert torch.equal(d.y, torch.from_numpy(parse_idx(raws["t10k-labels-idx1-ubyte.gz"]).astype(np.int64)))


def test_an_npz_whose_images_would_fill_memory_is_refused_from_its_header(tmp_path):
    """A small file of compressed zeros asking for more float32 images than the limit: refused
    before anything is decompressed, with the size named; labels beyond the class range too."""
    import numpy as np
    from vae_core.data import MAX_NPZ_IMAGE_BYTES, npz_arrays
    from vae_core.errors import DataError
    n = MAX_NPZ_IMAGE_BYTES // (28 * 28 * 4) + 1000
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((n, 28, 28), np.uint8))
    assert path.stat().st_size < 2 * 2**20                       # a small file
    with pytest.raises(DataError, match="MB in memory once read"):
        npz_arrays(path)
    ok = tmp_path / "labels.npz"
    np.savez(ok, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 2, 10**12]))
    with pytest.raises(DataError, match="renumber"):
        npz_arrays(ok)
