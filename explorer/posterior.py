"""The True posterior page's computation, cached for the whole server (vae_core.exact does the
work): here rather than in the page so that the start-up warm-up (explorer.warm) can fill the same
cache before the first visitor asks."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import streamlit as st

from . import models

KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
POOL = 4000            # importance weights per image: K = 1000 gets four independent draws
DEFAULT_CLASS = 3      # the page opens on the first test image of this class (modulo the classes)


@st.cache_data(show_spinner="Integrating over the latent plane…", max_entries=256)
def explain(_ckpt, key: str, dataset: str, i: int) -> dict:
    """vae_core.exact.explain for test image i: the exact posterior on a grid, log p(x), the ELBO,
    KL(q ‖ p(z|x)) and the importance-weighted bounds for each K in KS."""
    from vae_core.exact import explain as run
    return run(_ckpt.model, models.exploration_data(dataset).x[i:i + 1], ks=KS, pool=POOL)


def image_of(labels: Optional[np.ndarray], cls: int, k: int) -> int:
    """The test image index of the k-th example of class cls (cycling past the last); 0 without labels."""
    if labels is None:
        return 0
    where = np.flatnonzero(labels == cls)
    return int(where[k % len(where)]) if len(where) else 0


def classes(dataset: str) -> list:
    """The class names the page offers: the dataset's own, else the label values."""
    labels = models.labels(dataset)
    named = models.exploration_data(dataset).classes
    return list(named) if named else [str(c) for c in range(0 if labels is None else int(labels.max()) + 1)]


def default_class(dataset: str) -> int:
    """The class the page opens on."""
    return DEFAULT_CLASS % max(1, len(classes(dataset)))


def warm(dataset: str, ckpts: list) -> None:
    """Fill the cache for the image the page opens on, for each 2-D VAE among ckpts."""
    i = image_of(models.labels(dataset), default_class(dataset), 0)
    for ckpt in ckpts:
        if ckpt.model.cfg.kind == "vae" and int(ckpt.model.cfg.latent_dim) == 2:
            explain(ckpt, models.ckpt_key(ckpt), dataset, i)


def stored_ranking(key: str, dataset: str) -> Optional[dict]:
    """A model's ranking values (vae_core.exact.ranking_values) kept on disk under its ranking_id
    `key`: shipped beside the checkpoints, or computed here before and kept in the user folder."""
    from vae_core.exact import read_ranking
    from . import paths
    return read_ranking(paths.shipped_dir(), key, dataset) or read_ranking(paths.user_dir(), key, dataset)


def ranking(path: str, key: str, dataset: str) -> dict:
    """stored_ranking, or computed now (about 5 s) and kept in the user folder for every later
    visitor; a folder that cannot be written (a full disk) only loses the keeping."""
    from vae_core.exact import RANK_IMAGES, ranking_values, write_ranking
    from . import paths
    values = stored_ranking(key, dataset)
    if values is None:
        values = ranking_values(models.load_model(path).model, models.exploration_data(dataset).x[:RANK_IMAGES])
        try:
            write_ranking(paths.user_dir(), key, dataset, values)
        except OSError as e:            # a full disk: the table still shows, computed again next time
            print(f"The ranking of {Path(path).name} was not kept: {e}", file=sys.stderr)
    return values
