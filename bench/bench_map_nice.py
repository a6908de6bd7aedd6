"""Do the other students' pages wait while one student's new map computes? A page-like task in
the server's thread, timed while two new maps (t-SNE, or UMAP) compute in explorer.maps' threads:
at the app's priority for maps (explorer.background.GIVE_WAY) against the reference, the same maps at
the pages' own priority, in one invocation.

    python bench/bench_map_nice.py [--points 10000] [--rounds 2] [--method tsne|umap]

Each configuration runs in a fresh process (no map is cached between them), the two alternating.
The page-like task builds a 2,000-dot plotly map, serialises it and does a little numpy: about
30 ms alone. Prints, for each: the task's p50 / p95 alone and while the maps compute, and how long
the two maps took (niced, they must not take much longer on a machine where nothing else runs).
The random codes stand in for a model's: a map's time depends on their number, not on their source.
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


def one(points: int, give_way: int, seed: int, method: str) -> dict:
    """In this process: the page-like task alone, then beside two maps at nice give_way."""
    sys.path.insert(0, str(REPO))
    from explorer import background, figures, maps
    background.GIVE_WAY = give_way  # the reference runs the same code at the pages' priority
    rng = np.random.default_rng(seed)
    xy, labels = rng.normal(size=(2000, 2)).astype(np.float32), rng.integers(0, 10, 2000)

    def page() -> float:
        t = time.perf_counter()
        figures.scatter_codes(xy + rng.normal(scale=0.01, size=xy.shape).astype(np.float32), labels,
                              [str(i) for i in range(10)]).to_json()
        np.linalg.svd(rng.normal(size=(300, 300)))
        return (time.perf_counter() - t) * 1000

    if method == "umap":            # numba compiles UMAP once per process: the app does it at start-up
        from vae_core.projections import warmup_umap
        warmup_umap()
    for _ in range(3):
        page()
    alone = [page() for _ in range(15)]
    codes = rng.normal(size=(points, 16)).astype(np.float32)
    cache = tempfile.mkdtemp(prefix="bench-map-nice-")
    t0 = time.perf_counter()
    jobs = [maps.start(("bench-map-nice", seed, i), codes + i, method, seed + i, os.path.join(cache, str(i)), "k")
            for i in range(2)]
    during = []
    while not all(j.done.is_set() for j in jobs):
        during.append(page())
        time.sleep(0.1)
    took = time.perf_counter() - t0
    return {"give_way": give_way, "nice": jobs[0].nice, "alone": alone, "during": during, "maps_s": took,
            "errors": [j.error for j in jobs if j.error]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=10_000, help="codes in each of the two maps")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--method", default="tsne", choices=("tsne", "umap"))
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)     # a child run: its nice
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.points, args.one, args.seed, args.method)))
        return
    sys.path.insert(0, str(REPO))
    from explorer.background import GIVE_WAY
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; two {args.method} maps of "
          f"{args.points:,} codes each")
    results = {GIVE_WAY: [], 0: []}
    for r in range(args.rounds):
        for nice in (0, GIVE_WAY):
            out = subprocess.run([sys.executable, __file__, "--one", str(nice), "--seed", str(1000 * r + nice),
                                  "--points", str(args.points), "--method", args.method], capture_output=True, text=True, check=True)
            results[nice].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for nice, runs in results.items():
        name = f"maps at nice +{nice} (the app)" if nice else "maps at the pages' priority (reference)"
        alone = [v for run in runs for v in run["alone"]]
        during = [v for run in runs for v in run["during"]]
        errors = [e for run in runs for e in run["errors"]]
        print(f"{name}: page task alone p50 {pct(alone, .5):.0f} ms, p95 {pct(alone, .95):.0f} ms; "
              f"beside the maps p50 {pct(during, .5):.0f} ms, p95 {pct(during, .95):.0f} ms, max {max(during):.0f} ms "
              f"({len(during)} tasks); the two maps took " + ", ".join(f"{run['maps_s']:.1f} s" for run in runs)
              + (f"; ERRORS {errors}" if errors else ""))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
