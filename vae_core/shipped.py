"""Building what ships in checkpoints/: classifiers, metrics, precomputed maps, the table.

checkpoints/rebuild.sh runs these through `python -m vae_core` after the sweeps.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import runmeta
from .checkpoints import list_checkpoints, load_checkpoint, update_run
from .data import load_exploration

MAP_METHODS = ("pca", "tsne", "umap")
MAP_POINTS = (500, 1000, 2000, 5000)   # the latent-map page offers these; 2,000 is its default


def map_key(digest: str, dataset: str) -> str:
    """The cache key of a model's maps: its weights' digest and the dataset (the app uses the same)."""
    return f"{digest}/{dataset}"


def precompute_maps(folder, methods=MAP_METHODS, points=MAP_POINTS, seed: int = 0,
                    log: Optional[Callable[[str], None]] = None) -> int:
    """Write the 2-D maps of every checkpoint with d > 2 in `folder` into folder/maps, as the
    app would compute them, so a shipped model's first map appears at once. Returns the count."""
    from .latent import encode_data
    from .projections import project
    folder = Path(folder)
    count = 0
    for path in sorted(folder.glob("*.safetensors")):
        ckpt = load_checkpoint(path)
        if ckpt.model_config.latent_dim <= 2:
            continue                       # a 2-D latent space is its own map
        data = load_exploration(ckpt.dataset, folder / "data")
        for n in points:
            codes = np.asarray(encode_data(ckpt.model, data.subset(n))[0], dtype=np.float32)
            for method in methods:
                t = time.perf_counter()
                project(codes, method, seed=seed, cache_dir=folder / "maps",
                        cache_key=map_key(ckpt.digest, ckpt.dataset))
                count += 1
                if log:
                    log(f"{ckpt.name} {method} n={n}: {time.perf_counter() - t:.1f} s")
    return count


def precompute_rankings(folder, log: Optional[Callable[[str], None]] = None) -> int:
    """Write vae_core.exact's ranking values of every 2-D VAE in `folder` into folder/exact, where
    the True posterior page finds them (it ranks a family by them). Returns the count."""
    from .exact import RANK_IMAGES, ranking_id, ranking_values, write_ranking
    folder = Path(folder)
    count, images = 0, {}
    for path in sorted(folder.glob("*.safetensors")):
        ckpt = load_checkpoint(path)
        if ckpt.model_config.kind != "vae" or ckpt.model_config.latent_dim != 2:
            continue
        t = time.perf_counter()
        if ckpt.dataset not in images:        # read once per dataset, not once per model
            images[ckpt.dataset] = load_exploration(ckpt.dataset, folder / "data").x[:RANK_IMAGES]
        x = images[ckpt.dataset]
        write_ranking(folder, ranking_id(ckpt.model, ckpt.digest), ckpt.dataset, ranking_values(ckpt.model, x))
        count += 1
        if log:
            log(f"{ckpt.name} exact log p(x): {time.perf_counter() - t:.1f} s")
    return count


# The group's suffix per likelihood: the Bernoulli families keep their plain names, a Gaussian pair
# gets its own group, so a VAE never pairs with an AE trained under another likelihood.
LIKELIHOOD_SUFFIX = {"bernoulli": "", "gaussian": "-gauss", "gaussian_learned": "-gauss-learned"}


def shipped_group(info: dict) -> str:
    """The run group of a shipped model, from its configs: shipped-<dataset>[-bin]-d<latent size>
    [-gauss] (shipped-mnist-d20, shipped-mnist-bin-d32, shipped-digits-d2, shipped-mnist-d2-gauss)."""
    mc, tc = info["model_config"], info.get("train_config")
    binarized = bool(tc is not None and (tc.binarize if hasattr(tc, "binarize") else tc.get("binarize")))
    latent = mc.latent_dim if hasattr(mc, "latent_dim") else mc["latent_dim"]
    likelihood = mc.likelihood if hasattr(mc, "likelihood") else mc.get("likelihood", "bernoulli")
    return f"shipped-{info['dataset']}{'-bin' if binarized else ''}-d{latent}{LIKELIHOOD_SUFFIX[likelihood]}"


def mark_shipped(folder, log: Optional[Callable[[str], None]] = None) -> int:
    """Give every checkpoint in `folder` the run record of a pretrained model (owner "shipped",
    group from shipped_group, kind, β and seed from its configs), weights untouched, so the
    app's families and pairs hold whatever the sweeps that trained them recorded. A stored
    `created` is kept; a file without one gets 0 (unknown). Returns the count."""
    count = 0
    for info in list_checkpoints(folder):
        old = runmeta.of(info)
        label = "AE" if old["kind"] == "ae" else f"VAE β={old['beta']:g}"
        run = runmeta.make(old["kind"], old["beta"], old["seed"], group=shipped_group(info), owner="shipped",
                           label=label, created=old["created"])
        if info.get("run") != run:
            update_run(info["path"], run)
            count += 1
            if log:
                log(f"{info['name']}: {run['group']} {label}")
    return count


def write_table(readme, table: str) -> None:
    """Replace the table between the <!-- table --> markers of a README with `table`."""
    readme = Path(readme)
    text = readme.read_text()
    new, n = re.subn(r"(<!-- table -->\n)(?:.*?\n)?(<!-- /table -->)",
                     lambda m: m.group(1) + table.rstrip("\n") + "\n" + m.group(2), text, flags=re.S)
    if n != 1:
        raise ValueError(f"{readme} has no <!-- table --> ... <!-- /table --> block to fill")
    readme.write_text(new)
