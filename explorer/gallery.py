"""The class gallery: every model saved in the user folder, newest runs first, one group per run
(the run group in each file's run record), with its stored scores and a strip of prior samples."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import streamlit as st

from vae_core import runmeta

from . import claims, families, figures

# The time windows offered, in hours (None: every model in the folder).
WINDOWS = {"last 2 hours": 2, "last 8 hours": 8, "last 24 hours": 24, "all": None}
N_SAMPLES = 8
COLUMNS = {"loss": "test loss", "kl": "KL", "knn_acc": "k-NN accuracy"}


def created(info: dict) -> float:
    """When a model was made: its run record's `created`, else (no record, or 0) the file's mtime."""
    stamp = runmeta.of(info)["created"]
    if stamp > 0:
        return stamp
    try:
        return Path(info["path"]).stat().st_mtime
    except OSError:
        return 0.0


def recent(infos: list, hours: Optional[float], now: Optional[float] = None) -> list:
    """The infos made within the last `hours` (all of them for None)."""
    if hours is None:
        return list(infos)
    now = time.time() if now is None else now
    return [i for i in infos if created(i) >= now - hours * 3600]


def grouped(infos: list) -> list:
    """[(group key, members)]: the families and each other model on its own, newest group first."""
    groups = families.groups(infos)
    return sorted(groups.items(), key=lambda kv: -max(created(i) for i in kv[1]))


def number(value, fmt: str = ".2f") -> str:
    """A stored metric as text: only a finite number is formatted; anything else (missing,
    None, NaN, a string, a list, a bool) is "—"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    return format(value, fmt)


def table(members: list) -> list:
    """One row per model: name, β (— for an AE), and its stored loss, KL and k-NN accuracy."""
    rows = []
    for info in members:
        m = info.get("metrics") if isinstance(info.get("metrics"), dict) else {}
        b = families.beta_of(info)
        row = {"model": info["name"], "β": "— (AE)" if b is None else number(b, "g"),
               "likelihood": claims.likelihood_of(info)}
        row.update({title: number(m.get(key), ".3f" if key == "knn_acc" else ".2f")
                    for key, title in COLUMNS.items()})
        rows.append(row)
    return rows


family_label = families.family_label


def run_group(members: list) -> str:
    """The run group a group's files record ("none recorded" for files without a run record)."""
    return runmeta.of(members[0])["group"] or "none recorded"


def owner(members: list) -> str:
    """Who trained a group: the public owner id of its run record ("unknown" without one)."""
    return runmeta.of(members[0])["owner"] or "unknown"


def ago(stamp: float, now: Optional[float] = None) -> str:
    """'5 min ago', '3 h ago', '2 days ago'."""
    s = max(0.0, (time.time() if now is None else now) - stamp)
    if s < 3600:
        return f"{int(s // 60)} min ago"
    if s < 86400:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} days ago"


@st.cache_data(show_spinner=False, max_entries=512)
def prior_strip(path: str, mtime_ns: int, n: int = N_SAMPLES, seed: int = 0) -> np.ndarray:
    """n images decoded from z ~ N(0, I) (the same codes for every model of a latent size),
    tiled in one row [H, W] in [0, 1]. Keyed by the file's path and mtime, so a rewritten
    file is drawn again. The model is loaded here and dropped, not kept in the shared cache."""
    from vae_core.checkpoints import load_checkpoint
    from vae_core.latent import prior_samples
    model = load_checkpoint(path).model
    _, images = prior_samples(model, n=n, seed=seed)
    return figures.upscale(figures.tile(images, ncols=n), 90)


def strip(info: dict) -> Optional[np.ndarray]:
    """The prior-sample strip of a listed model, or None when its file is gone or unreadable."""
    from vae_core.errors import CheckpointError
    try:
        return prior_strip(str(info["path"]), Path(info["path"]).stat().st_mtime_ns)
    except (OSError, CheckpointError):
        return None
