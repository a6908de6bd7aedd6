"""Cached access to models and data for the pages. Models are shared by every session:
never train or mutate one that came from here."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import streamlit as st
import torch

from vae_core.checkpoints import list_checkpoints, load_checkpoint
from vae_core.data import load_exploration

from . import paths


def _folder_stamp(folder: Path) -> tuple:
    """Names and mtimes of a folder's checkpoints: a new or rewritten file changes the stamp."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.safetensors")))


@st.cache_data(show_spinner=False)
def _list(shipped: str, user: str, _stamp: tuple, stamp: tuple) -> list[dict]:
    infos = list_checkpoints(shipped, user)
    for info in infos:
        info["source"] = "shipped" if Path(info["path"]).parent == Path(shipped) else "yours"
        info["path"] = str(info["path"])
        info["model_config"] = info["model_config"].to_dict()
        info["train_config"] = info["train_config"].to_dict() if info["train_config"] else None
    return infos


def list_models() -> list[dict]:
    """Every readable checkpoint, shipped and the user's, newest files included at once.

    Each info: name, path, source, dataset, model_config (dict), train_config (dict), history, metrics.
    """
    shipped, user = paths.shipped_dir(), paths.user_dir()
    stamp = (_folder_stamp(shipped), _folder_stamp(user))
    return _list(str(shipped), str(user), None, stamp)


@st.cache_resource(show_spinner="Loading model…", max_entries=64)
def _load(path: str, mtime_ns: int):
    return load_checkpoint(path)


def load_model(path: str):
    """The Checkpoint at `path` (model in eval mode), loaded once per file version."""
    return _load(str(path), Path(path).stat().st_mtime_ns)


@st.cache_resource(show_spinner="Loading images…")
def exploration_data(dataset: str):
    """The images and labels the views show for a dataset (shipped copy when present)."""
    return load_exploration(dataset, paths.exploration_dir())


# ---------------------------------------------------------------- cached computations
# Each takes the Checkpoint as `_ckpt` (not hashed) beside `key`, its path and mtime, so a
# rewritten file never reuses a stale result. Results are NumPy arrays (cheap to cache).

def ckpt_key(ckpt) -> str:
    """The identity of a checkpoint file version: path and modification time."""
    p = Path(ckpt.path)
    return f"{p}:{p.stat().st_mtime_ns}"


def exploration_subset(dataset: str, n: int):
    """The first n exploration images (ImageData); n is clipped to the set's size."""
    data = exploration_data(dataset)
    return data.subset(max(1, min(int(n), len(data))))


@st.cache_data(show_spinner=False, max_entries=64)
def codes(_ckpt, key: str, dataset: str, n: int) -> dict:
    """Codes of the first n exploration images: mu [n, d], sigma [n, d] (None for the AE),
    labels [n] (or None)."""
    from vae_core.latent import encode_data
    data = exploration_subset(dataset, n)
    mu, logvar = encode_data(_ckpt.model, data)
    mu = np.asarray(mu, dtype=np.float32)
    sigma = None if logvar is None else np.exp(0.5 * np.asarray(logvar, dtype=np.float32))
    labels = None if data.y is None else data.y.numpy()
    return {"mu": mu, "sigma": sigma, "labels": labels}


@st.cache_data(show_spinner=False, max_entries=256)
def reconstruct(_ckpt, key: str, dataset: str, indices: tuple) -> np.ndarray:
    """Decoded mean images of exploration images `indices` through their deterministic code
    (the VAE's posterior mean, the AE's z): [k, C, H, W] in [0, 1]."""
    data = exploration_data(dataset)
    x = data.x[list(indices)]
    with torch.no_grad():
        return _ckpt.model.decode_image(_ckpt.model.embed(x)).numpy()


def images(dataset: str, indices) -> np.ndarray:
    """Exploration images [k, C, H, W] in [0, 1]."""
    return exploration_data(dataset).x[list(indices)].numpy()


def labels(dataset: str) -> Optional[np.ndarray]:
    data = exploration_data(dataset)
    return None if data.y is None else data.y.numpy()
