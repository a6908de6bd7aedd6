"""Cached access to models and data for the pages. Models are shared by every session:
never train or mutate one that came from here."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

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
