"""Datasets as whole tensors: MNIST and Fashion-MNIST (IDX .gz files), scikit-learn's 8x8
digits (always offline) and a user's .npz file.

Where the IDX files come from: $VAE_DATA_DIR/<name>/ when the variable is set, else
~/.cache/vae_core/<name>/; when missing there, they are downloaded from public mirrors with a
progress bar and a checksum check.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .errors import DataError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Checksums of the downloaded files: ("sha256-raw", digest of the decompressed bytes) is
# independent of the gzip wrapper; ("md5-gz", digest of the .gz as the mirror serves it).
SOURCES = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        "checksums": {
            "train-images-idx3-ubyte.gz": ("sha256-raw", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            "train-labels-idx1-ubyte.gz": ("sha256-raw", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            "t10k-images-idx3-ubyte.gz": ("sha256-raw", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            "t10k-labels-idx1-ubyte.gz": ("sha256-raw", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        },
        "classes": [str(i) for i in range(10)],
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "checksums": {
            "train-images-idx3-ubyte.gz": ("md5-gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train-labels-idx1-ubyte.gz": ("md5-gz", "25c81989df183df01b3e8a0aad5dffbe"),
            "t10k-images-idx3-ubyte.gz": ("md5-gz", "bef4ecab320f06d8554ea6380940ec79"),
            "t10k-labels-idx1-ubyte.gz": ("md5-gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        "classes": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    },
}
DATASETS = ("mnist", "fashion-mnist", "digits")
# (channels, height, width) of each named dataset's images: a model of one of them must take these.
IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "digits": (1, 8, 8)}
MAX_NPZ_IMAGES = 200_000
# The most bytes one array of an .npz may hold once decompressed: 200,000 images of 64 x 64 in
# uint8 are 0.8 GB. A few kB of zeros compress from far more, so this is checked on the array's
# header, before anything is decompressed.
MAX_NPZ_ARRAY_BYTES = 1 << 30
# What the images take in memory once read (float32, as every view and training holds them), and
# all arrays together decompressed: both counted from the headers, before decompressing. 512 MB
# hold 170,000 images of 28 x 28 (MNIST's 70,000 take 220 MB).
MAX_NPZ_IMAGE_BYTES = 512 << 20
MAX_NPZ_TOTAL_BYTES = 1 << 30
MAX_LABEL = 9_999               # class labels 0..9,999: a label is an index, not an arbitrary number


@dataclass
class ImageData:
    """Images x [N, C, H, W] float32 in [0, 1] and labels y [N] int64 (or None)."""
    x: torch.Tensor
    y: Optional[torch.Tensor]
    name: str
    classes: Optional[list] = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    def to(self, device) -> "ImageData":
        y = None if self.y is None else self.y.to(device)
        return ImageData(self.x.to(device), y, self.name, self.classes)

    def subset(self, n: int) -> "ImageData":
        y = None if self.y is None else self.y[:n]
        return ImageData(self.x[:n], y, self.name, self.classes)


def data_dir(name: str) -> Path:
    root = os.environ.get("VAE_DATA_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "vae_core"
    return base / name


# ---------------------------------------------------------------- IDX files

def read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (magic 2049 labels or 2051 images) into a uint8 array."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .gz IDX file ({e}): delete it and download again") from e
    return parse_idx(raw, str(path))


def parse_idx(raw: bytes, where: str = "IDX data") -> np.ndarray:
    if len(raw) < 8:
        raise DataError(f"{where} is too short to be an IDX file: delete it and download again")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise DataError(f"{where} has a bad IDX header: expected unsigned bytes with 1 or 3 dimensions")
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{where} ends inside its IDX header: the file is truncated; delete it and download again")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{where} holds {len(body)} bytes but its header promises {int(np.prod(dims))}: "
                        "the file is truncated; delete it and download again")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _checksum_ok(path: Path, spec: tuple) -> bool:
    kind, digest = spec
    if kind == "md5-gz":
        return hashlib.md5(path.read_bytes()).hexdigest() == digest
    if kind == "sha256-raw":
        try:
            with gzip.open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest() == digest
        except (OSError, EOFError):
            return False
    raise ValueError(f"unknown checksum kind {kind!r}")


def _urlopen_fetch(url: str, dest: Path, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=30) as r, open(dest, "wb") as out:
        total = int(r.headers.get("Content-Length") or 0) or None
        from tqdm import tqdm
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while chunk := r.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))


def download(name: str, folder: Optional[Path] = None, *, mirrors: Optional[list] = None,
             checksums: Optional[dict] = None, fetch: Callable = _urlopen_fetch,
             progress: bool = True) -> Path:
    """Download the four IDX files of `name` into `folder`, verifying each checksum.

    Tries each mirror in turn; a file is moved into place only once its checksum matches.
    """
    src = SOURCES[name]
    folder = Path(folder) if folder else data_dir(name)
    mirrors = mirrors or src["mirrors"]
    checksums = checksums or src["checksums"]
    folder.mkdir(parents=True, exist_ok=True)
    for fname in [f for pair in IDX_FILES.values() for f in pair]:
        target = folder / fname
        if target.exists() and _checksum_ok(target, checksums[fname]):
            continue
        errors = []
        for mirror in mirrors:
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
            os.close(fd)
            tmp = Path(tmp)
            try:
                fetch(mirror + fname, tmp, progress)
                if not _checksum_ok(tmp, checksums[fname]):
                    errors.append(f"{mirror}: checksum mismatch")
                    continue
                os.replace(tmp, target)
                break
            except Exception as e:  # network errors of every kind: try the next mirror
                errors.append(f"{mirror}: {e}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise DataError(
                f"could not download {fname} for {name} ({'; '.join(errors)}). "
                f"Without a network, put the four IDX .gz files in {folder} "
                f"or set VAE_DATA_DIR to a folder holding {name}/")
    return folder


def load_idx_dataset(name: str, split: str, allow_download: bool = True) -> ImageData:
    folder = data_dir(name)
    img_name, lbl_name = IDX_FILES[split]
    if not (folder / img_name).exists() or not (folder / lbl_name).exists():
        if not allow_download:
            raise DataError(f"{name} is not in {folder}: put the four IDX .gz files there "
                            f"or set VAE_DATA_DIR to a folder holding {name}/")
        download(name, folder)
    images = read_idx(folder / img_name)
    labels = read_idx(folder / lbl_name)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder} holds {len(images)} images but {len(labels)} labels: download again")
    x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageData(x, y, name, SOURCES[name]["classes"])


# ---------------------------------------------------------------- other sources

def _split(x: np.ndarray, y: Optional[np.ndarray], split: str, test_fraction: float, seed: int = 0):
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(len(x) * test_fraction)))
    idx = order[n_test:] if split == "train" else order[:n_test]
    return x[idx], (None if y is None else y[idx])


def load_digits(split: str) -> ImageData:
    """scikit-learn's 1,797 8x8 digits (pixel values 0..16), a seeded 1,497 / 300 split."""
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x, y = _split(d.images.astype(np.float32) / 16.0, d.target.astype(np.int64), split, 300 / 1797)
    return ImageData(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y), "digits",
                     [str(i) for i in range(10)])


def _npz_headers(source) -> dict:
    """{key: (shape, dtype)} of the arrays x and y of an .npz, read from each array's .npy header
    (a few bytes at the start of its zip member) without decompressing its data. {} when the file
    is not a zip archive: np.load then says what it is."""
    out = {}
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
            for key in ("x", "y"):
                if key + ".npy" not in names:
                    continue
                with zf.open(key + ".npy") as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        raise DataError(f"{key} is stored in .npy format {version}, which is not supported: "
                                        "save it with numpy.savez(path, x=images, y=labels)")
                    shape, _, dtype = read(f)
                out[key] = (tuple(shape), dtype)
    except zipfile.BadZipFile:
        return {}
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"this is not a readable .npz file ({e}): save it with numpy.savez(path, x=images, y=labels)") from e
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    return out


def _check_x_shape(shape: tuple) -> tuple:
    """The N x H x W of images of `shape` (N x H x W or N x 1 x H x W) within the limits."""
    if len(shape) == 4 and shape[1] == 1:
        shape = (shape[0], *shape[2:])
    if len(shape) != 3:
        raise DataError(f"x has shape {shape}: expected N x H x W images")
    n, h, w = shape
    if n < 2:
        raise DataError(f"x holds {n} image(s): give at least 2")
    if n > MAX_NPZ_IMAGES:
        raise DataError(f"x holds {n} images, more than the limit of {MAX_NPZ_IMAGES}: use a subset")
    if not (8 <= h <= 64 and 8 <= w <= 64):
        raise DataError(f"images are {h}x{w}: sizes from 8x8 to 64x64 are supported")
    return shape


def _check_headers(headers: dict) -> None:
    """Refuse, from the headers alone, arrays that are objects, too many images or too many bytes."""
    for key, (shape, dtype) in headers.items():
        if dtype.hasobject:
            raise DataError(f"the .npz holds Python objects in {key}, which are refused (never unpickled): "
                            "save plain numeric arrays")
        n_bytes = math.prod(shape) * dtype.itemsize
        if n_bytes > MAX_NPZ_ARRAY_BYTES:
            raise DataError(f"{key} would take {n_bytes / 2**30:.1f} GB once decompressed, over the limit of "
                            f"{MAX_NPZ_ARRAY_BYTES / 2**30:.0f} GB: use a subset, stored as uint8")
    total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values())
    if total > MAX_NPZ_TOTAL_BYTES:
        raise DataError(f"the .npz's arrays would take {total / 2**30:.1f} GB once decompressed, over the limit "
                        f"of {MAX_NPZ_TOTAL_BYTES / 2**30:.0f} GB: keep only x and y, and use a subset")
    if "x" in headers:
        n, h, w = _check_x_shape(headers["x"][0])
        in_memory = n * h * w * 4
        if in_memory > MAX_NPZ_IMAGE_BYTES:
            raise DataError(f"x holds {n:,} images of {h} x {w}: {in_memory / 2**20:,.0f} MB in memory once read "
                            f"(as float32), over the limit of {MAX_NPZ_IMAGE_BYTES >> 20} MB: use fewer or "
                            "smaller images")
        if "y" in headers and headers["y"][0] != (n,):
            raise DataError(f"y has shape {headers['y'][0]} but x holds {n} images: give one label per image")


def npz_arrays(source) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Read and check a user's .npz: x as N x H x W (or N x 1 x H x W) in [0, 1] or uint8, y optional.

    The shapes, dtypes and sizes are checked on the arrays' headers before any data is decompressed."""
    _check_headers(_npz_headers(source))
    try:
        with np.load(source, allow_pickle=False) as f:
            files = set(f.files)
            if "x" not in files:
                raise DataError(f"the .npz has keys {sorted(files)} but no 'x': save images as x=..., labels as y=...")
            x = f["x"]
            y = f["y"] if "y" in files else None
    except DataError:
        raise
    except ValueError as e:
        raise DataError(f"the .npz holds Python objects, which are refused ({e}): save plain numeric arrays") from e
    except Exception as e:
        raise DataError(f"this is not a readable .npz file ({e}): save it with numpy.savez(path, x=images, y=labels)") from e
    n, h, w = _check_x_shape(tuple(x.shape))     # again: the header said so, the array must agree
    if x.ndim == 4:
        x = x[:, 0]
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating) or x.dtype == np.bool_:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError("x contains NaN or infinite values: replace them with numbers in [0, 1]")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"x ranges over [{x.min():.3g}, {x.max():.3g}]: scale pixels to [0, 1] or store uint8")
    else:
        raise DataError(f"x has dtype {x.dtype}: use uint8 (0..255) or floats in [0, 1]")
    if y is not None:
        if y.ndim != 1 or len(y) != n:
            raise DataError(f"y has shape {y.shape} but x holds {n} images: give one label per image")
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DataError(f"y has dtype {y.dtype}: labels must be non-negative integers")
        if len(y) and y.max() > MAX_LABEL:
            raise DataError(f"y holds the label {y.max()}, over {MAX_LABEL:,}: labels are class numbers "
                            "0, 1, 2, …; renumber them")
        y = y.astype(np.int64)
    return x, y


def load_npz(path, split: str) -> ImageData:
    x, y = npz_arrays(path)
    x, y = _split(x, y, split, 0.1)
    return ImageData(torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1),
                     None if y is None else torch.from_numpy(y), Path(str(path)).name)


def load_dataset(name: str, split: str = "train", allow_download: bool = True) -> ImageData:
    """Load a dataset split ("train" or "test") as tensors on the CPU."""
    if split not in ("train", "test"):
        raise DataError(f"split {split!r} is unknown: use train or test")
    if name in SOURCES:
        return load_idx_dataset(name, split, allow_download)
    if name == "digits":
        return load_digits(split)
    if str(name).endswith(".npz"):
        if not Path(name).is_file():
            raise DataError(f"{name} does not exist: give the path of an .npz file")
        return load_npz(name, split)
    raise DataError(f"dataset {name!r} is unknown: use one of {', '.join(DATASETS)} or a path to an .npz file")


def file_stamp(name: str) -> str:
    """What changes when a dataset given as an .npz path is replaced in place: its size and time of
    change ("" for a named dataset, or a file that cannot be read). Caches of what was computed
    from a file's images key on it, so a new file never meets the old file's results."""
    if not str(name).endswith(".npz"):
        return ""
    try:
        st = Path(name).stat()
    except OSError:
        return ""
    return f"{st.st_size}/{st.st_mtime_ns}"


def load_exploration(name: str, folder=None) -> ImageData:
    """The exploration set of a dataset: `folder/<name>-test.npz` when shipped there, else its test split.

    The shipped file lets a fresh clone with no network show every view.
    """
    # Only a known name becomes part of a file name: a name from a checkpoint such as "../x" or
    # "/elsewhere/x" must never pick the file that is read.
    if folder is not None and name in DATASETS:
        path = Path(folder) / f"{name}-test.npz"
        if path.is_file():
            x, y = npz_arrays(path)
            classes = SOURCES[name]["classes"] if name in SOURCES else (
                [str(i) for i in range(10)] if name == "digits" else None)
            return ImageData(torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1),
                             None if y is None else torch.from_numpy(y), name, classes)
    return load_dataset(name, "test")
