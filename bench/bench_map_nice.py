"""Do the other students' pages wait while one student's new map computes? A page-like task in
the server's thread, timed while two new maps (t-SNE, or UMAP) compute, in three ways in one
invocation:

- `here, same priority` (the reference): in explorer.maps' threads of the server process, at the
  pages' own priority (as before session 17);
- `here, niced`: the same threads niced by explorer.background.GIVE_WAY: what the app does with a
  map the page waits for (up to VAE_MAP_WAIT_S, 4 s: a 2,000-code map);
- `on the engine`: on a worker of a local Ray head (vae_core.cluster.project_remote), started in
  a temporary VAE_RAY_DIR before the timing: what the app does with a longer UMAP map
  (explorer.maps.ENGINE_METHODS; t-SNE's is sent too here, for comparison).

    python bench/bench_map_nice.py [--points 10000] [--rounds 2] [--method tsne|umap]

Each configuration runs in a fresh process (no map is cached between them), in turn. The
page-like task builds a 2,000-dot plotly map, serialises it and does a little numpy: about 30 ms
alone. Each process asks for two maps twice (new seeds the second time). Prints, for each: the
task's p50 / p95 alone and while the maps compute, and how long the two maps took, first and
second request (on the engine the first includes the workers' start and UMAP's compilation
there). The random codes stand in for a model's: a map's time depends on their number.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


CONFIGS = ("here, same priority", "here, niced", "on the engine")


def one(points: int, config: str, seed: int, method: str) -> dict:
    """In this process: the page-like task alone, then beside two maps computed as config says."""
    sys.path.insert(0, str(REPO))
    from explorer import background, figures, maps
    if config == "here, same priority":
        background.GIVE_WAY = 0     # the reference runs the same code at the pages' priority
    folder = None
    if config == "on the engine":
        from vae_core import cluster
        maps.ENGINE_METHODS = (method,)     # the app sends only UMAP's: t-SNE's is measured for comparison
        folder = tempfile.mkdtemp(prefix="bmn")
        os.environ["VAE_RAY_DIR"] = folder
        cluster.connect()
    rng = np.random.default_rng(seed)
    xy, labels = rng.normal(size=(2000, 2)).astype(np.float32), rng.integers(0, 10, 2000)

    def page() -> float:
        t = time.perf_counter()
        figures.scatter_codes(xy + rng.normal(scale=0.01, size=xy.shape).astype(np.float32), labels,
                              [str(i) for i in range(10)]).to_json()
        np.linalg.svd(rng.normal(size=(300, 300)))
        return (time.perf_counter() - t) * 1000

    if method == "umap" and config != "on the engine":   # the app compiles UMAP at start-up
        from vae_core.projections import warmup_umap
        warmup_umap()
    for _ in range(3):
        page()
    alone = [page() for _ in range(15)]
    codes = rng.normal(size=(points, 16)).astype(np.float32)
    cache = tempfile.mkdtemp(prefix="bench-map-nice-")
    wait_s = 0.0 if config == "on the engine" else float("inf")
    during, took, errors = [], [], []
    for ask in range(2):            # a first request, then another (new seeds) once workers are warm
        t0 = time.perf_counter()
        jobs = [maps.start(("bench-map-nice", seed, ask, i), codes + i, method, seed + 100 * ask + i,
                           os.path.join(cache, f"{ask}-{i}"), "k", wait_s=wait_s) for i in range(2)]
        while not all(j.done.is_set() for j in jobs):
            during.append(page())
            time.sleep(0.1)
        took.append(time.perf_counter() - t0)
        errors += [j.error for j in jobs if j.error]
    out = {"config": config, "nice": jobs[0].nice, "where": jobs[0].where or "here", "alone": alone,
           "during": during, "maps_s": took, "errors": errors}
    if folder:
        from vae_core import cluster
        import ray
        ray.shutdown()
        cluster.stop_local_head(cluster.ray_dir())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=10_000, help="codes in each of the two maps")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--method", default="tsne", choices=("tsne", "umap"))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)     # a child run: its configuration
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.points, args.one, args.seed, args.method)))
        return
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; two {args.method} maps of "
          f"{args.points:,} codes each")
    results = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        for k, config in enumerate(CONFIGS):
            out = subprocess.run([sys.executable, __file__, "--one", config, "--seed", str(1000 * r + 10 * k),
                                  "--points", str(args.points), "--method", args.method],
                                 capture_output=True, text=True, check=True)
            results[config].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for config, runs in results.items():
        alone = [v for run in runs for v in run["alone"]]
        during = [v for run in runs for v in run["during"]]
        errors = [e for run in runs for e in run["errors"]]
        print(f"{config} (nice +{runs[0]['nice']}, computed {runs[0]['where']}): page task alone p50 "
              f"{pct(alone, .5):.0f} ms, p95 {pct(alone, .95):.0f} ms; beside the maps p50 {pct(during, .5):.0f} ms, "
              f"p95 {pct(during, .95):.0f} ms, max {max(during):.0f} ms ({len(during)} tasks); the two maps took "
              + ", ".join(f"{run['maps_s'][0]:.1f} s then {run['maps_s'][1]:.1f} s" for run in runs)
              + (f"; ERRORS {errors}" if errors else ""))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
