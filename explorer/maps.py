"""New t-SNE and UMAP maps, computed in the background while the page stays usable.

A map that is neither in memory nor on disk starts in a thread of the server; the page keeps
showing the map it showed before, with a progress bar, and draws the new one when it is ready.
One thread per map, shared by every session: thirty students asking for the same new map start
it once. vae_core.projections runs at most as many maps of one method at once as there are cores.
A map that failed stays failed (the page says so and offers PCA or another seed). The jobs are
explorer.background's, with a progress learnt from the time maps take, since t-SNE and UMAP
report no steps of their own. A map's thread runs at a lower priority (background.GIVE_WAY):
while it computes, the server's threads that run the other students' pages go first
(bench/bench_map_nice.py: a 30-ms page task took p95 1.3 s beside two 10,000-code t-SNE maps at
the pages' priority, 0.1 s beside niced ones). With nothing else running it changes nothing.
A UMAP map longer than the page waits for computes on a worker of the training engine instead
(start, ENGINE_METHODS): its layout would hold Python's lock in the server, which a nice value
cannot give back.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Optional

import numpy as np

from vae_core import cluster     # Ray is imported only when a map is sent to it

from . import background

# Seconds per point, learnt from the maps finished on this server (starting from what 2 cores
# took with the VAE's and the AE's maps side by side, after UMAP's warm-up: t-SNE about 0.6 s and
# UMAP about 0.55 s per 1,000 codes; session 17's bench_map_nice and bench_browser, 2,000 and
# 10,000 codes. At 0.3 s, a 10,000-code UMAP was expected within the page's wait and ran here).
_RATE = {"tsne": 0.6e-3, "umap": 0.55e-3}
# Which maps longer than the page waits go to the training engine, and why only UMAP's: its numba
# layout holds Python's lock for each epoch, so in the server every other page waited on it, niced
# or not; t-SNE's gradient lets go of the lock, and niced it leaves the pages alone. Measured with
# bench/bench_map_nice.py, two 10,000-code maps beside a 30-ms page task (session 17): UMAP in the
# server, niced: the task's p95 338-631 ms, maps 5.2-6.2 s; on the engine: p95 40 ms, maps 6.6 s
# (28 s for the first, which starts the workers and compiles UMAP there). t-SNE in the server,
# niced: p95 39-119 ms, maps 5.7-13 s; on the engine: p95 38 ms but maps 11-22 s.
ENGINE_METHODS = ("umap",)
ENGINE_START_S = 10.0      # starting the local training engine for a map, when it is not up yet
WORKER_START_S = 15.0      # the first map this server sends: the workers start and compile UMAP
_SENT = threading.Event()  # set once this server has sent a map to the engine
_LOCK = threading.Lock()
log = logging.getLogger(__name__)


def expected_seconds(method: str, n: int) -> float:
    """How long a map of n codes should take, from the maps finished so far."""
    return max(0.3, _RATE.get(method, 1e-3) * n)


def find(key: tuple) -> Optional[background.Job]:
    """The background job of this map (key as for start), running or finished, or None."""
    return background.find(("map",) + tuple(key))


def start(key: tuple, codes: np.ndarray, method: str, seed: int, cache_dir, cache_key,
          wait_s: float = float("inf")) -> background.Job:
    """The background job of this map (key identifies it: checkpoint, dataset, points, method,
    seed), started now unless it is already running or finished (a failure is shown, not retried
    in a loop). Its result is the map [n, 2].

    A UMAP map expected to take longer than the page waits (wait_s) computes on a worker of the
    training engine (vae_core.cluster.project_remote: the class's Ray cluster where RAY_ADDRESS
    names one, else the local engine, started if need be); job.where says so. If the engine
    cannot take it, it computes here; VAE_MAP_ENGINE=0 keeps every map here. See ENGINE_METHODS."""
    codes = np.asarray(codes, dtype=np.float32)
    n = len(codes)
    expected = expected_seconds(method, n)
    far = method in ENGINE_METHODS and expected > wait_s and os.environ.get("VAE_MAP_ENGINE", "1") != "0"
    if far:
        expected += ENGINE_START_S if not cluster.is_connected() else 0.0
        expected += WORKER_START_S if not _SENT.is_set() else 0.0

    def work(job: background.Job) -> np.ndarray:
        from vae_core.projections import project
        if far:
            job.where = "on the training engine's workers"
            _SENT.set()
            try:
                return project(codes, method, seed=int(seed), cache_dir=cache_dir, cache_key=cache_key,
                               elsewhere=cluster.project_remote)
            except cluster.EngineError as e:
                log.warning("map %s computed in the server instead: %s", key, e)
                job.where = ""
        xy = project(codes, method, seed=int(seed), cache_dir=cache_dir, cache_key=cache_key)
        took = time.monotonic() - job.started
        with _LOCK:                 # learn the rate: an average that leans towards recent maps
            _RATE[method] = 0.7 * _RATE[method] + 0.3 * took / max(n, 1)
        return xy

    return background.start(("map",) + tuple(key), work, expected_s=expected)
