"""New t-SNE and UMAP maps, computed in the background while the page stays usable.

A map that is neither in memory nor on disk starts in a thread of the server; the page keeps
showing the map it showed before, with a progress bar, and draws the new one when it is ready.
One thread per map, shared by every session: thirty students asking for the same new map start
it once. vae_core.projections runs at most as many maps of one method at once as there are cores.
A map that failed stays failed (the page says so and offers PCA or another seed).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# Seconds per point, learnt from the maps finished on this server (starting from what 2 cores
# took with the VAE's and the AE's maps side by side: t-SNE about 0.6 s and UMAP about 0.3 s
# per 1,000 codes, after UMAP's warm-up).
_RATE = {"tsne": 0.6e-3, "umap": 0.3e-3}
_LOCK = threading.Lock()
_JOBS: dict = {}
_MAX_JOBS = 64


@dataclass
class MapJob:
    key: tuple
    n: int
    method: str
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    xy: Optional[np.ndarray] = None
    error: Optional[str] = None

    @property
    def expected_s(self) -> float:
        return max(0.3, _RATE.get(self.method, 1e-3) * self.n)

    def progress(self) -> float:
        """A fraction in [0, 0.99] from the time spent against the time expected (the methods
        report no progress of their own); 1.0 once done."""
        if self.done.is_set():
            return 1.0
        return min(0.99, (time.monotonic() - self.started) / self.expected_s)


def _run(job: MapJob, codes: np.ndarray, seed: int, cache_dir, cache_key) -> None:
    from vae_core.projections import project
    try:
        job.xy = project(codes, job.method, seed=seed, cache_dir=cache_dir, cache_key=cache_key)
        took = time.monotonic() - job.started
        with _LOCK:                 # learn the rate: an average that leans towards recent maps
            _RATE[job.method] = 0.7 * _RATE[job.method] + 0.3 * took / max(job.n, 1)
    except Exception as e:          # noqa: BLE001 - the page shows it; the server carries on
        job.error = f"{type(e).__name__}: {e}"
    finally:
        job.done.set()


def start(key: tuple, codes: np.ndarray, method: str, seed: int, cache_dir, cache_key) -> MapJob:
    """The background job of this map (key identifies it: checkpoint, dataset, points, method,
    seed), started now unless it is already running or finished."""
    with _LOCK:
        job = _JOBS.get(key)
        if job is not None:             # running, finished or failed: a failure is shown, not retried in a loop
            return job
        if len(_JOBS) >= _MAX_JOBS:            # forget the oldest finished ones
            for k in [k for k, j in _JOBS.items() if j.done.is_set()][:len(_JOBS) - _MAX_JOBS + 1]:
                del _JOBS[k]
        job = _JOBS[key] = MapJob(key, len(codes), method)
    threading.Thread(target=_run, args=(job, np.asarray(codes, dtype=np.float32), int(seed), cache_dir, cache_key),
                     name=f"map-{method}-{len(codes)}", daemon=True).start()
    return job
