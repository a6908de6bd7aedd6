"""Cached access to models and data for the pages. Models are shared by every session:
never train or mutate one that came from here."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import streamlit as st

from vae_core.checkpoints import list_checkpoints, load_checkpoint
from vae_core.data import file_stamp, load_exploration

from vae_core import runmeta

from . import paths


def _folder_stamp(folder: Path) -> tuple:
    """Names and mtimes of a folder's checkpoints: a new or rewritten file changes the stamp."""
    try:
        if not folder.is_dir():
            return ()
        entries = list(folder.glob("*.safetensors"))
    except OSError:
        return ("unlistable",)
    out = []
    for p in entries:
        try:
            out.append((p.name, p.lstat().st_mtime_ns))    # lstat: a dangling link has a date too
        except OSError:
            continue
    return tuple(sorted(out))


@st.cache_data(show_spinner=False)
def _list(shipped: str, user: str, stamp: tuple) -> dict:
    skipped: list = []
    infos = list_checkpoints(shipped, user, skipped=skipped)
    shipped_names = {i["name"] for i in infos if Path(i["path"]).parent == Path(shipped)}
    for info in infos:
        info["source"] = "shipped" if Path(info["path"]).parent == Path(shipped) else "yours"
        info["owner"] = runmeta.of(info)["owner"]
        if info["source"] == "yours" and info["name"] in shipped_names:
            # A saved model named like a pretrained one never takes its place in any list.
            info["name"] = f"{info['name']} [{info['owner'] or 'upload'}]"
        info["path"] = str(info["path"])
        info["model_config"] = info["model_config"].to_dict()
        info["train_config"] = info["train_config"].to_dict() if info["train_config"] else None
    return {"infos": infos, "skipped": [(Path(p).name, why) for p, why in skipped]}


def shipped_names() -> set:
    return {i["name"] for i in list_models() if i["source"] == "shipped"}


def check_free_name(name: str) -> None:
    """Refuse a pretrained model's name for a student's save or upload (CheckpointError)."""
    from vae_core.checkpoints import check_name
    from vae_core.errors import CheckpointError
    if check_name(name) in shipped_names():
        raise CheckpointError(f"{name!r} is the name of a pretrained model: choose another name, "
                              "e.g. my-" + name)


def check_replaceable(name: str, owner_id: str) -> None:
    """"Replace a model of that name" replaces only a model of the same student (CheckpointError)."""
    from vae_core.checkpoints import path_in, read_info
    from vae_core.errors import CheckpointError
    path = path_in(paths.user_dir(), name)
    if not path.exists():
        return
    try:
        owner = runmeta.of(read_info(path))["owner"]
    except CheckpointError:
        return                          # a damaged file: replacing it loses nothing
    if owner != owner_id:
        raise CheckpointError(f"{name!r} is a model {('of ' + owner) if owner else 'uploaded by someone'}, "
                              "not yours: only your own models can be replaced; choose another name")


def remember_mine(name: str) -> None:
    """Mark a model this session saved or uploaded: its label says "(yours)" in this session only."""
    st.session_state.setdefault("my_models", set()).add(name)


def skipped_models() -> list[tuple[str, str]]:
    """(file name, reason) of every model folder entry that could not be read, for the operator."""
    shipped, user = paths.shipped_dir(), paths.user_dir()
    return _list(str(shipped), str(user), (_folder_stamp(shipped), _folder_stamp(user)))["skipped"]


def list_models() -> list[dict]:
    """Every readable checkpoint, shipped and the user's, newest files included at once.

    Each info: name, path, source, dataset, model_config (dict), train_config (dict), history, metrics.
    """
    shipped, user = paths.shipped_dir(), paths.user_dir()
    stamp = (_folder_stamp(shipped), _folder_stamp(user))
    return _list(str(shipped), str(user), stamp)["infos"]


@st.cache_resource(show_spinner="Loading model…", max_entries=64)
def _load(path: str, mtime_ns: int):
    return load_checkpoint(path)


def load_model(path: str):
    """The Checkpoint at `path` (model in eval mode), loaded once per file version."""
    return _load(str(path), Path(path).stat().st_mtime_ns)


@st.cache_resource(show_spinner="Loading images…")
def _exploration_data(dataset: str, stamp: str):
    return load_exploration(dataset, paths.exploration_dir())


def exploration_data(dataset: str):
    """The images and labels the views show for a dataset (shipped copy when present); an .npz
    replaced in place is read again (vae_core.data.file_stamp)."""
    return _exploration_data(dataset, file_stamp(dataset))


# ---------------------------------------------------------------- cached computations
# Each takes the Checkpoint as `_ckpt` (not hashed) beside `key`, the digest of its weights,
# so new weights never reuse a stale result. Results are NumPy arrays (cheap to cache).

def ckpt_key(ckpt) -> str:
    """The identity of a model: the digest of its weights (the same one its maps are cached by),
    so rewriting a file's metrics keeps cached codes, and new weights never hit them."""
    return ckpt.digest


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
    from vae_core.latent import decode, encode_data
    mu, _ = encode_data(_ckpt.model, exploration_data(dataset).x[list(indices)])
    return decode(_ckpt.model, mu)


def shown_indices(n_data: int, seed: int, k: int = 8) -> tuple:
    """The k exploration images the home page shows for a seed (the same draw for a link)."""
    return tuple(int(i) for i in np.random.default_rng(seed).choice(n_data, min(k, n_data), replace=False))


def images(dataset: str, indices) -> np.ndarray:
    """Exploration images [k, C, H, W] in [0, 1]."""
    return exploration_data(dataset).x[list(indices)].numpy()


@st.cache_resource(show_spinner=False)
def digit_classifier(dataset: str):
    """The shipped classifier of a dataset's images (checkpoints/classifiers/), or None."""
    from vae_core.errors import CheckpointError
    from vae_core.metrics import load_classifier
    path = paths.shipped_dir() / "classifiers" / f"{dataset}-classifier.safetensors"
    try:
        return load_classifier(path) if path.is_file() else None
    except CheckpointError:
        return None


def judge(dataset: str, images: np.ndarray) -> Optional[dict]:
    """explorer.claims.judgement of decoded images [N, C, H, W] by the dataset's digit classifier;
    None when the dataset has none (or it reads another image shape)."""
    import torch

    from . import claims
    clf = digit_classifier(dataset)
    images = np.asarray(images, dtype=np.float32)
    if clf is None or tuple(clf.image_shape) != tuple(images.shape[1:]):
        return None
    with torch.no_grad():
        probs = torch.softmax(clf(torch.as_tensor(images)), dim=1).numpy()
    return claims.judgement(probs)


def grid_cells(g: dict) -> np.ndarray:
    """The cells [n*n, 1, H, W] of a grid()'s mosaic (drawn without padding), row by row."""
    h = g["cell"]
    n = g["image"].shape[0] // h
    w = g["image"].shape[1] // n
    return g["image"].reshape(n, h, n, w).transpose(0, 2, 1, 3).reshape(n * n, 1, h, w)


def labels(dataset: str) -> Optional[np.ndarray]:
    data = exploration_data(dataset)
    return None if data.y is None else data.y.numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def grid(_ckpt, key: str, dataset: str, n_codes: int, n: int, plane: str, dims: tuple,
         span: str, quantile: float) -> dict:
    """A decoded n x n grid over a plane (vae_core.latent.latent_grid) as plain arrays:
    image [n*H, n*W], u [n], v [n] (ascending; the mosaic's top row is the largest v),
    origin [d], basis [2, d], labels (axis names), cell (image height)."""
    from vae_core.latent import latent_grid
    c = codes(_ckpt, key, dataset, n_codes)
    g = latent_grid(_ckpt.model, c["mu"], n=n, plane=plane, dims=dims, span=span, quantile=quantile)
    return {"image": g.image, "u": g.u, "v": g.v, "origin": g.origin, "basis": g.basis,
            "labels": g.labels, "cell": int(_ckpt.model_config.image_shape[1])}


@st.cache_data(show_spinner=False, max_entries=64)
def plane(_ckpt, key: str, dataset: str, n_codes: int, kind: str, dims: tuple) -> dict:
    """The 2-D plane a view uses (vae_core.latent.latent_plane) and the codes projected on it:
    origin [d], basis [2, d], labels, xy [n_codes, 2]."""
    from vae_core.latent import latent_plane
    c = codes(_ckpt, key, dataset, n_codes)
    origin, basis, labels = latent_plane(c["mu"], kind, dims)
    return {"origin": origin, "basis": basis, "labels": labels,
            "xy": ((c["mu"] - origin) @ basis.T).astype(np.float32)}


def to_plane(pl: dict, z: np.ndarray) -> np.ndarray:
    """Codes z [N, d] in a plane's coordinates [N, 2] (orthogonal projection)."""
    return ((np.asarray(z, dtype=np.float64) - pl["origin"]) @ pl["basis"].T).astype(np.float32)


@st.cache_data(show_spinner=False, max_entries=128)
def path(_ckpt, key: str, dataset: str, i0: int, i1: int, steps: int, method: str) -> dict:
    """Interpolation between the codes of exploration images i0 and i1 (vae_core.latent.interpolate):
    z [steps, d] and the decoded images [steps, C, H, W]."""
    from vae_core.latent import decode, encode_data, interpolate
    data = exploration_data(dataset)
    mu, _ = encode_data(_ckpt.model, data.x[[int(i0), int(i1)]])
    z = interpolate(mu[0], mu[1], steps=steps, method=method)
    return {"z": z, "images": decode(_ckpt.model, z)}


@st.cache_data(show_spinner=False, max_entries=128)
def nearest_code_distance(_ckpt, key: str, dataset: str, n_codes: int, z: np.ndarray) -> np.ndarray:
    """For each code z [S, d], the Euclidean distance to the nearest code of the first n_codes
    exploration images [S]: large values mean the point lies away from any data."""
    mu = codes(_ckpt, key, dataset, n_codes)["mu"].astype(np.float64)
    z = np.asarray(z, dtype=np.float64)
    d2 = (z ** 2).sum(1)[:, None] - 2 * z @ mu.T + (mu ** 2).sum(1)[None, :]
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


@st.cache_data(show_spinner=False, max_entries=128)
def samples(_ckpt, key: str, n: int, seed: int, temperature: float) -> dict:
    """Prior samples z ~ N(0, T² I) and their decoded images (vae_core.latent.prior_samples)."""
    from vae_core.latent import prior_samples
    z, imgs = prior_samples(_ckpt.model, n=n, seed=seed, temperature=temperature)
    return {"z": z, "images": imgs}


@st.cache_data(show_spinner=False, max_entries=256)
def traversal(_ckpt, key: str, z: tuple, dims: tuple, values: tuple) -> np.ndarray:
    """One row per dimension in dims: z with that dimension set to each of values, decoded.
    Returns images [len(dims) * len(values), C, H, W]."""
    from vae_core.latent import traverse
    return np.concatenate([traverse(_ckpt.model, np.asarray(z, np.float32), d, values) for d in dims])


@st.cache_data(show_spinner=False, max_entries=64)
def kl_per_dim(_ckpt, key: str, dataset: str, n_codes: int = 2000) -> Optional[np.ndarray]:
    """Mean KL(q(z_i|x) || N(0, 1)) per dimension [d] in nats: the checkpoint's stored value
    when present, else measured on the first n_codes exploration images. None for the AE."""
    if _ckpt.model_config.kind != "vae":
        return None
    stored = (_ckpt.metrics or {}).get("kl_per_dim")
    if stored and len(stored) == _ckpt.model_config.latent_dim:
        return np.asarray(stored, dtype=np.float32)
    from vae_core.metrics import kl_per_dimension
    return np.asarray(kl_per_dimension(_ckpt.model, exploration_subset(dataset, n_codes)), dtype=np.float32)


@st.cache_data(show_spinner=False, max_entries=256)
def encode_images(_ckpt, key: str, x: np.ndarray) -> dict:
    """Codes and reconstructions of images the user brought: x [N, C, H, W] in [0, 1] ->
    mu [N, d], sigma [N, d] or None, recon [N, C, H, W]."""
    from vae_core.latent import decode, encode_data
    mu, logvar = encode_data(_ckpt.model, np.asarray(x, dtype=np.float32))
    return {"mu": mu, "sigma": None if logvar is None else np.exp(0.5 * logvar),
            "recon": decode(_ckpt.model, mu)}


def maps_cache_dir(ckpt, codes_: np.ndarray, method: str, seed: int, dataset: str) -> Path:
    """Where a 2-D map is read from and written to: the shipped checkpoints/maps when it holds
    this very map (precomputed for a shipped model), else <user folder>/maps, so the app never
    writes into the shipped folder."""
    from vae_core.projections import cache_path
    shipped = paths.maps_dir()
    if cache_path(shipped, np.asarray(codes_, dtype=np.float32), method, seed,
                  map_cache_key(ckpt, dataset), {}).is_file():
        return shipped
    return paths.user_dir() / "maps"


def map_cache_key(ckpt, dataset: str) -> str:
    """The cache_key a checkpoint's maps are stored under (with vae_core.projections.project):
    the digest of its weights and the dataset; the number of points enters through the codes'
    shape. New weights never hit old maps, and a map computed on one machine is found on
    another even where the last bits of the codes differ.

    To ship a map the app finds: codes of load_exploration(dataset, checkpoints/data).subset(n),
    then project(codes, method, seed=0, cache_dir=checkpoints/maps, cache_key=this) with no
    extra parameters (`python -m vae_core maps` does this)."""
    return f"{ckpt.digest}/{dataset}"


@st.cache_data(show_spinner=False, max_entries=64)
def map_2d(_ckpt, key: str, dataset: str, n: int, method: str, seed: int) -> np.ndarray:
    """The 2-D map [n, 2] of the first n exploration codes: method "raw" (the first two latent
    dimensions as they are) or "pca" / "tsne" / "umap" (vae_core.projections.project, read from
    and written to the disk cache, so shipped maps appear at once)."""
    mu = codes(_ckpt, key, dataset, n)["mu"]
    if method == "raw":
        return mu[:, :2].copy() if mu.shape[1] >= 2 else np.concatenate([mu, np.zeros_like(mu)], 1)
    from vae_core.projections import project
    return project(mu, method, seed=seed, cache_dir=maps_cache_dir(_ckpt, mu, method, seed, dataset),
                   cache_key=map_cache_key(_ckpt, dataset))


@st.cache_data(show_spinner=False, max_entries=64)
def typical_gap(_ckpt, key: str, dataset: str, n_codes: int) -> float:
    """The median distance from a code to its nearest other code among the first n_codes
    exploration codes: the scale against which "far from the data" is judged for this model."""
    mu = codes(_ckpt, key, dataset, n_codes)["mu"].astype(np.float64)
    sq = (mu ** 2).sum(1)
    d2 = sq[:, None] - 2 * mu @ mu.T + sq[None, :]
    np.fill_diagonal(d2, np.inf)
    return float(np.median(np.sqrt(np.maximum(d2.min(axis=1), 0.0))))


def prepare_drawing(pixels: np.ndarray, image_shape: tuple) -> np.ndarray:
    """A user's drawing or upload -> one image [1, C, H, W] in [0, 1] laid out like MNIST.

    pixels: [h, w] grey or [h, w, 3|4] colour, uint8 or floats in [0, 1]. A light stroke on a
    dark ground is the format the models know; a dark-on-light picture is inverted. The ink's
    bounding box is scaled to fit 20/28 of the frame and centred by its centre of mass, the way
    MNIST digits were prepared. Raises DataError for an empty (all-dark or all-light) picture.
    """
    from PIL import Image

    from vae_core.errors import DataError
    a = np.asarray(pixels)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    if a.ndim == 3:
        rgb = a[..., :3].astype(np.float32).mean(axis=2)
        if a.shape[2] == 4:
            # Transparent pixels (an untouched canvas) become a ground that contrasts with the ink.
            alpha = a[..., 3].astype(np.float32) / 255.0
            opaque = rgb[alpha > 0.5]
            bg = 255.0 if opaque.size and np.median(opaque) < 128 else 0.0
            rgb = rgb * alpha + bg * (1 - alpha)
        a = rgb
    a = a.astype(np.float32) / 255.0
    if a.ndim != 2:
        raise DataError(f"the picture has shape {np.asarray(pixels).shape}: give a grey or colour image")
    if np.median(a) > 0.5:                       # dark ink on a light ground
        a = 1.0 - a
    ink = a > 0.2
    if ink.sum() < 5:
        raise DataError("the drawing is empty (no strokes found): draw a digit, light on dark, "
                        "or upload a picture of one")
    if ink.mean() > 0.9:
        raise DataError("the picture is almost all ink: draw a digit with a light stroke on the dark canvas")
    ys, xs = np.nonzero(ink)
    crop = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    c, h, w = image_shape
    box = max(1, int(round(max(h, w) * 20 / 28)))
    scale = box / max(crop.shape)
    new = (max(1, int(round(crop.shape[1] * scale))), max(1, int(round(crop.shape[0] * scale))))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(new, Image.LANCZOS),
                       dtype=np.float32) / 255.0
    out = np.zeros((h, w), np.float32)
    # Centre of mass to the frame's centre, as MNIST did.
    tot = small.sum()
    cy = (np.arange(small.shape[0])[:, None] * small).sum() / tot
    cx = (np.arange(small.shape[1])[None, :] * small).sum() / tot
    top = int(round(h / 2 - cy - 0.5))
    left = int(round(w / 2 - cx - 0.5))
    top = min(max(top, 0), h - small.shape[0])
    left = min(max(left, 0), w - small.shape[1])
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    out = np.clip(out, 0, 1)
    return np.repeat(out[None, None], c, axis=1)


def map_ready(ckpt, key: str, dataset: str, n: int, method: str, seed: int) -> Optional[np.ndarray]:
    """The t-SNE / UMAP map [n, 2] when it needs no computing (on disk, or finished in the
    background), else None: never blocks for a projection."""
    from vae_core.projections import cached
    from . import maps
    job = maps.find((key, dataset, n, method, seed))
    if job is not None and job.result is not None:
        return job.result
    mu = codes(ckpt, key, dataset, n)["mu"]
    return cached(mu, method, seed, maps_cache_dir(ckpt, mu, method, seed, dataset), map_cache_key(ckpt, dataset))


def start_map(ckpt, key: str, dataset: str, n: int, method: str, seed: int, wait_s: float = float("inf")):
    """Start (or find) the background computation of a map: an explorer.background.Job whose
    result is the map. wait_s: how long the page waits for it (explorer.maps.start)."""
    from . import maps
    mu = codes(ckpt, key, dataset, n)["mu"]
    return maps.start((key, dataset, n, method, seed), mu, method, seed,
                      maps_cache_dir(ckpt, mu, method, seed, dataset), map_cache_key(ckpt, dataset), wait_s)
