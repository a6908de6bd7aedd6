"""2-D maps of latent codes: PCA, t-SNE and UMAP, seeded, cached on disk, safe across threads.

project(codes [N, d]) -> [N, 2]. When d = 2 the codes are returned as they are, whatever the
method: the latent space is already a plane, and any projection would only distort it.

Costs on 2 CPU cores (bench/bench_projections.py measures them): PCA is instant; t-SNE with
the settings below and UMAP (after warmup_umap has paid numba's compile cost) each take a few
seconds for DEFAULT_POINTS codes. scikit-learn's default t-SNE (1,000 iterations) on 10,000
codes takes close to a minute, hence the smaller default map.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .errors import ConfigError, DataError

METHODS = ("pca", "tsne", "umap")
DEFAULT_POINTS = 2000     # points on the app's map of a new model: the 10 s budget on 2 cores

# The settings each method runs with unless a caller overrides them.
# t-SNE is openTSNE's Barnes-Hut (theta 0.8, openTSNE's default 0.5), one thread per map, with
# 75 iterations of early exaggeration and 100 after (openTSNE's defaults: 250 and 500). On 2,000
# codes of the shipped 20-D VAE and AE, both maps together took 1.2 s on 2 cores, side by side,
# against 3.9 s one after the other for scikit-learn's TSNE at 350 iterations (two threads each),
# at the same 5-NN accuracy of the map (0.897 and 0.896 against 0.894 and 0.891), and the
# clusters look alike (bench/bench_projections.py measures it).
TSNE_DEFAULTS = {"perplexity": 30.0, "early_exaggeration_iter": 75, "n_iter": 100, "early_exaggeration": 12.0,
                 "theta": 0.8}
# n_epochs=120 (umap-learn runs 500 below 10,000 points, 200 above). The neighbour graph is exact
# (scikit-learn), passed in as precomputed_knn: umap-learn's approximate search cost more than the
# rest of the fit. On 2,000 codes of the shipped 20-D VAE and AE: 0.55 s a map, against 0.9 s at
# 200 epochs and 4.7 s with the library's defaults, at the same 5-NN accuracy (0.900 and 0.903)
# and the same layout to the eye.
UMAP_DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "n_epochs": 120}

# Both methods run one thread per map (UMAP because random_state makes it single-threaded), so
# as many maps of one method compute at once as there are cores: the VAE's and the AE's maps
# of a page side by side (openTSNE's gradient releases the GIL; UMAP's numba layout does not,
# so two UMAP maps still take turns). UMAP's numba kernels compile on its first call, which
# runs alone.
_SLOTS = max(1, min(4, os.cpu_count() or 1))
_TSNE_SLOTS = threading.BoundedSemaphore(_SLOTS)
_UMAP_SLOTS = threading.BoundedSemaphore(_SLOTS)
_UMAP_FIRST = threading.Lock()
_umap_ready = threading.Event()


def _pca(codes: np.ndarray, seed: int, **params) -> np.ndarray:
    from sklearn.decomposition import PCA
    # svd_solver="full" is exact and deterministic; sklearn fixes the signs of the components.
    return PCA(n_components=2, svd_solver="full", **params).fit_transform(codes)


def _tsne(codes: np.ndarray, seed: int, **params) -> np.ndarray:
    import openTSNE
    n = codes.shape[0]
    kw = {**TSNE_DEFAULTS, **params}
    # perplexity must stay below the number of points; tiny sets (tests, a few uploads) need this.
    kw["perplexity"] = float(min(kw["perplexity"], max(1.0, (n - 1) / 3)))
    tsne = openTSNE.TSNE(n_components=2, initialization="pca", neighbors="exact",
                         negative_gradient_method="bh", n_jobs=1, random_state=seed, verbose=False, **kw)
    with _TSNE_SLOTS:
        return np.asarray(tsne.fit(codes))


def exact_neighbours(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each code's k nearest codes, itself first: indices [N, k] and Euclidean distances [N, k]."""
    from sklearn.neighbors import NearestNeighbors
    dist, idx = NearestNeighbors(n_neighbors=k).fit(codes).kneighbors(codes)
    return idx.astype(np.int64), dist.astype(np.float32)


def _umap(codes: np.ndarray, seed: int, **params) -> np.ndarray:
    import umap
    n = codes.shape[0]
    kw = {**UMAP_DEFAULTS, **params}
    kw["n_neighbors"] = int(min(kw["n_neighbors"], max(2, n - 1)))
    if n > kw["n_neighbors"] + 1:
        idx, dist = exact_neighbours(codes, kw["n_neighbors"])
        kw["precomputed_knn"] = (idx, dist, None)
    # random_state makes UMAP reproducible (and single-threaded): a map must not change on reload.
    reducer = umap.UMAP(n_components=2, random_state=seed, n_jobs=1, **kw)
    if not _umap_ready.is_set():
        with _UMAP_FIRST:               # the first call compiles; the others wait for it
            if not _umap_ready.is_set():
                out = reducer.fit_transform(codes)
                _umap_ready.set()
                return out
    with _UMAP_SLOTS:
        return reducer.fit_transform(codes)


_METHODS = {"pca": _pca, "tsne": _tsne, "umap": _umap}
# How many maps of each method one process has computing elsewhere at once (project's elsewhere).
_REMOTE_SLOTS = {"tsne": threading.BoundedSemaphore(_SLOTS), "umap": threading.BoundedSemaphore(_SLOTS)}


# What computes each method's map. It enters every cache file's name with the effective
# settings, so a map made by another library or under other defaults is never read back.
ENGINES = {"pca": "scikit-learn PCA, full SVD", "tsne": "openTSNE Barnes-Hut, exact neighbours, PCA init",
           "umap": "umap-learn, exact neighbours"}
_DEFAULTS = {"pca": {}, "tsne": TSNE_DEFAULTS, "umap": UMAP_DEFAULTS}


def effective_settings(method: str, params: dict) -> dict:
    """The settings a map of `method` runs with: its engine, the defaults, then params."""
    return {"engine": ENGINES[method], **_DEFAULTS[method], **params}


def cache_path(cache_dir, codes: np.ndarray, method: str, seed: int, cache_key, params: dict) -> Path:
    """The .npz file that holds this map: named by a hash of the method, its effective settings
    (engine, defaults and params), the seed, the codes' shape and either cache_key or, without
    one, the codes' bytes.

    A cache_key must identify the codes exactly (the app uses the checkpoint's weights digest,
    the dataset and the number of points): unlike the codes' bytes it does not change with
    the last bits of floating-point arithmetic on another CPU, so shipped maps stay valid.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"key": None if cache_key is None else str(cache_key), "method": method,
                         "seed": int(seed), "settings": effective_settings(method, params)},
                        sort_keys=True, default=str).encode())
    h.update(str((codes.shape, codes.dtype.str)).encode())
    if cache_key is None:
        h.update(np.ascontiguousarray(codes).tobytes())
    return Path(cache_dir) / f"{method}-{h.hexdigest()[:32]}.npz"


def _read_cache(path: Path, n: int) -> Optional[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            xy = f["xy"]
    except (OSError, KeyError, ValueError, EOFError):
        return None                     # missing or damaged: compute it again
    return xy if xy.shape == (n, 2) and np.isfinite(xy).all() else None


def _write_cache(path: Path, xy: np.ndarray) -> None:
    from .checkpoints import atomic_write
    buf = io.BytesIO()
    np.savez(buf, xy=xy)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buf.getvalue())
    except OSError:
        pass                            # a read-only or full disk costs speed, not correctness


def cached(codes: np.ndarray, method: str, seed: int, cache_dir, cache_key=None, **params) -> Optional[np.ndarray]:
    """The map project() would return from its disk cache, or None when it is not there yet
    (never computes). For d <= 2 the codes need no projection and are returned at once."""
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim == 2 and codes.shape[1] <= 2:
        return project(codes, method, seed)
    return _read_cache(cache_path(cache_dir, codes, method, seed, cache_key, params), codes.shape[0])


def project(codes: np.ndarray, method: str = "pca", seed: int = 0, cache_dir=None,
            cache_key=None, elsewhere: Optional[Callable] = None, **params) -> np.ndarray:
    """A 2-D map of codes [N, d] -> [N, 2] float32.

    method: "pca" (the plane of largest variance, linear: distances along it mean something),
    "tsne" (openTSNE, Barnes-Hut, PCA initialisation, exact neighbours, TSNE_DEFAULTS) or
    "umap" (umap-learn, UMAP_DEFAULTS); **params override those settings.
    d = 2: the codes themselves, for every method; d = 1: the codes beside a column of zeros.
    Seeded: the same inputs give the same map.
    With cache_dir, the result is stored as an .npz named by cache_path() and reused.
    elsewhere: a function (codes, method, seed) -> map that computes a t-SNE or UMAP map in
    another process (vae_core.cluster.project_remote), with the default settings (no params). It
    runs under this process's slot for the method, so a process has no more such maps out at once
    than it has cores; the cache is read and written here.
    """
    if method not in _METHODS:
        raise ConfigError(f"projection {method!r} is unknown: use one of {', '.join(METHODS)}")
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2 or codes.shape[0] < 1:
        raise DataError(f"codes must be an [N, d] array with N >= 1, got shape {codes.shape}")
    if not np.isfinite(codes).all():
        raise DataError("the codes hold NaN or infinite values: the model is broken, retrain it")
    n, d = codes.shape
    if d == 2:
        return codes.copy()
    if d == 1:
        return np.concatenate([codes, np.zeros_like(codes)], axis=1)
    if n < 3:
        raise DataError(f"a map needs at least 3 points, got {n}")
    path = None
    if cache_dir is not None:
        path = cache_path(cache_dir, codes, method, seed, cache_key, params)
        hit = _read_cache(path, n)
        if hit is not None:
            return hit
    if elsewhere is not None and method in _REMOTE_SLOTS and not params:
        with _REMOTE_SLOTS[method]:
            xy = np.asarray(elsewhere(codes, method, int(seed)), dtype=np.float32)
        if xy.shape != (n, 2) or not np.isfinite(xy).all():
            raise DataError(f"the {method} map computed elsewhere has shape {xy.shape} or holds NaN: "
                            "compute it again")
    else:
        xy = np.asarray(_METHODS[method](codes, int(seed), **params), dtype=np.float32)
    if path is not None:
        _write_cache(path, xy)
    return xy


def warmup_umap() -> float:
    """Run UMAP once on a tiny array so numba compiles its kernels now (about 10-30 s on 2
    cores) and not on the user's first map. Returns the seconds it took; the app calls this at
    start-up in a background thread. Safe to call more than once (later calls are quick)."""
    import time
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    tiny = rng.normal(size=(200, 8)).astype(np.float32)
    _umap(tiny, 0)
    return time.perf_counter() - start


def umap_ready() -> bool:
    """True once UMAP has run in this process (so the next call pays no compile cost)."""
    return _umap_ready.is_set()
