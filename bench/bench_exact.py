"""Rank the shipped 2-D MNIST VAEs by their exact log p(x) (quadrature, vae_core.exact) beside the
importance-weighted estimate with K = 1,000 and the ELBO, over the first N test images.

    python bench/bench_exact.py [--images 200] [--device cpu|cuda]

Prints one row per model, ranked by the exact value, and how far IWAE falls short on average.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vae_core import exact  # noqa: E402
from vae_core.checkpoints import load_checkpoint  # noqa: E402
from vae_core.data import load_exploration  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--images", type=int, default=200)
p.add_argument("--models", default="mnist-d2-vae-b0.5,mnist-d2-vae-b1,mnist-d2-vae-b2,mnist-d2-vae-b4,mnist-d2-vae-b8")
args = p.parse_args()
data = load_exploration("mnist", REPO / "checkpoints" / "data")
print(f"{args.images} test images, torch {torch.__version__}, {torch.get_num_threads()} threads")
rows = []
for name in args.models.split(","):
    model = load_checkpoint(REPO / "checkpoints" / f"{name}.safetensors").model.eval()
    t0 = time.perf_counter()
    res = [exact.explain(model, data.x[i:i + 1], ks=(1000,), repeats=1, seed=i) for i in range(args.images)]
    lp = np.array([r["log_px"] for r in res])
    iw = np.array([r["iw"][1000][0] for r in res])
    el = np.array([r["elbo"] for r in res])
    rows.append((name, lp.mean(), iw.mean(), el.mean(), (lp - iw).mean(), time.perf_counter() - t0))
print(f"{'model':22s} {'exact log p(x)':>15s} {'IWAE K=1000':>12s} {'ELBO':>9s} {'exact-IWAE':>11s} {'s':>6s}")
for name, lp, iw, el, gap, s in sorted(rows, key=lambda r: -r[1]):
    print(f"{name:22s} {lp:15.2f} {iw:12.2f} {el:9.2f} {gap:11.2f} {s:6.0f}")
print("rank by exact:", ", ".join(r[0] for r in sorted(rows, key=lambda r: -r[1])))
print("rank by IWAE: ", ", ".join(r[0] for r in sorted(rows, key=lambda r: -r[2])))
