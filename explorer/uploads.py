"""Checking and saving files a user uploads: checkpoints (.safetensors) and image sets (.npz).

Plain functions, bytes in and a result or a vae_core error out, so the page stays a thin script
and the checks can be tested without a browser. Nothing here writes anything until a checkpoint
has passed every check of vae_core.checkpoints.from_bytes.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from vae_core.checkpoints import (MAX_CHECKPOINT_BYTES, SUFFIX, Checkpoint, check_name, from_bytes, path_in,
                                  publish_new, write_error)
from vae_core.data import npz_arrays
from vae_core.errors import CheckpointError, DataError

# Matches server.maxUploadSize in .streamlit/config.toml. The browser enforces that setting, but a
# client need not be a browser, so the size is checked again here before anything is parsed.
APP_UPLOAD_LIMIT_BYTES = min(50 * 1024 * 1024, MAX_CHECKPOINT_BYTES)


def _check_size(n_bytes: int, what: str) -> None:
    if n_bytes > APP_UPLOAD_LIMIT_BYTES:
        raise CheckpointError(f"{what} is {n_bytes / 2**20:.1f} MB, over this app's upload limit of "
                              f"{APP_UPLOAD_LIMIT_BYTES // 2**20} MB: the models here are a few MB, "
                              "so this is probably not one of them")
    if n_bytes == 0:
        raise CheckpointError(f"{what} is empty (0 bytes): choose the .safetensors file itself")


def check_checkpoint(data: bytes, filename: str = "the file") -> Checkpoint:
    """Validate an uploaded checkpoint's bytes; returns the rebuilt Checkpoint (model in eval mode).

    Raises CheckpointError (too large, not safetensors, truncated, not ours, a config beyond the
    bounds, weights that do not fit the config, NaN or infinite weights, a dataset that is not one
    of the app's or whose images the model does not take). safetensors holds no code, so parsing
    runs none.
    """
    _check_size(len(data), filename)
    return from_bytes(bytes(data), filename)


def suggest_name(filename: str) -> str:
    """A save name from an upload's file name: its stem with unsafe characters replaced by '-'."""
    stem = Path(filename or "").name
    if stem.endswith(SUFFIX):
        stem = stem[:-len(SUFFIX)]
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "-" for c in stem)
    while ".." in safe:
        safe = safe.replace("..", ".")
    return (safe.strip("-._")[:80].strip("-._") or "uploaded-model")


def save_upload(data: bytes, name: str, folder, filename: str = "the file") -> Path:
    """Check the bytes again and write them, unchanged, as `folder`/`name`.safetensors.

    Refuses a bad name or an existing file (never overwrites) with a CheckpointError naming the fix.
    Returns the new file's path.
    """
    check_checkpoint(data, filename)
    folder = Path(folder)
    path = path_in(folder, name)
    if path.exists():
        raise CheckpointError(f"a model named {path.name[:-len(SUFFIX)]!r} already exists: choose another "
                              "name (nothing was overwritten)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _not_written(path, e) from e
    # A temporary file of a unique, hidden name (the listing ignores it): one left behind by a
    # crashed save never blocks the name, and two sessions never write into the same file.
    # publish_new fails if the name appeared meanwhile, so neither can overwrite the other.
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + path.name, suffix=".upload")
    except OSError as e:
        raise _not_written(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(data))
            f.flush()
            os.fsync(f.fileno())
        publish_new(tmp, path)
    except FileExistsError as e:
        raise CheckpointError(f"a model named {path.name[:-len(SUFFIX)]!r} already exists: choose another "
                              "name (nothing was overwritten)") from e
    except OSError as e:
        raise _not_written(path, e) from e
    finally:
        Path(tmp).unlink(missing_ok=True)     # only our own temporary file, never another session's
    return path


def _not_written(path: Path, e: OSError) -> CheckpointError:
    return CheckpointError(f"{write_error(path, e)}. Whoever runs the app can point VAE_USER_DIR "
                           "at another folder")


def check_dataset(data: bytes, filename: str = "the file") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Validate an uploaded .npz of images: returns (x [N, H, W] float32 in [0, 1], y [N] int64 or None).

    Raises DataError with the reason and the fix; pickled objects inside are refused, never loaded.
    """
    if len(data) > APP_UPLOAD_LIMIT_BYTES:
        raise DataError(f"{filename} is {len(data) / 2**20:.1f} MB, over this app's upload limit of "
                        f"{APP_UPLOAD_LIMIT_BYTES // 2**20} MB: upload a subset of the images")
    # numpy reads any non-zip bytes as a (refused) pickle and says so, which misleads for a file
    # that is simply not an .npz: name the real problem first.
    if not bytes(data[:4]) in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DataError(f"{filename} is not a readable .npz file (an .npz is a zip archive): "
                        "save it with numpy.savez(path, x=images, y=labels)")
    return npz_arrays(io.BytesIO(bytes(data)))
