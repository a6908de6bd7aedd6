"""Exact log p(x) by quadrature against the importance-weighted estimate, for the 2-D VAEs of a family.

    python bench/bench_exact.py [--images 1000] [--k 1000] [--group shipped-mnist-d2] [--threads 2]

For every VAE with a 2-D latent space in the run group (read from each checkpoint's run record,
never from its name) it prints the mean over the first --images test images (the shipped
exploration set, scaled to [0, 1] as the app shows them) of the exact log p(x) (vae_core.exact,
quadrature), of one IWAE_K draw per image (K = --k, seeded, as metrics.iw_log_px) and of the
ELBO, then the models ranked by each. log p(x) − IWAE_K is the estimator's bias (plus its noise):
it is what the importance-weighted number in the README's table leaves out.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vae_core import runmeta  # noqa: E402
from vae_core.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402
from vae_core.data import load_exploration  # noqa: E402
from vae_core.exact import exact_vs_iwae  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--group", default="shipped-mnist-d2")
    ap.add_argument("--folder", default=str(REPO / "checkpoints"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    infos = [i for i in list_checkpoints(Path(args.folder)) if runmeta.family_key(i) == args.group
             and i["model_config"].kind == "vae" and i["model_config"].latent_dim == 2]
    if not infos:
        sys.exit(f"no 2-D VAE in run group {args.group!r} under {args.folder}")
    rows = []
    for info in sorted(infos, key=runmeta.sort_key):
        ckpt = load_checkpoint(info["path"])
        x = load_exploration(ckpt.dataset, Path(args.folder) / "data").x[:args.images]
        t0 = time.perf_counter()
        r = exact_vs_iwae(ckpt.model, x, k=args.k)
        row = {"model": info["name"], "beta": runmeta.beta(info), "exact": r["log_px"].mean(),
               "iwae": r["iwae"].mean(), "elbo": r["elbo"].mean(), "max_gap": (r["log_px"] - r["iwae"]).max(),
               "below": (r["iwae"] <= r["log_px"]).mean(), "s": time.perf_counter() - t0}
        rows.append(row)
        print(f"{row['model']:22s} β={row['beta']:<4g} exact {row['exact']:9.3f}  IWAE-{args.k} {row['iwae']:9.3f}  "
              f"gap {row['exact'] - row['iwae']:6.3f} (max {row['max_gap']:.2f}, IWAE ≤ exact on "
              f"{100 * row['below']:.0f}%)  ELBO {row['elbo']:9.3f}  [{row['s']:.0f} s]", flush=True)
    print(f"\nmean over the first {len(x)} test images, nats")
    print(f"| model | β | exact log p(x) | IWAE-{args.k} | exact − IWAE | ELBO |")
    print("|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: -r["exact"]):
        print(f"| {row['model']} | {row['beta']:g} | {row['exact']:.2f} | {row['iwae']:.2f} | "
              f"{row['exact'] - row['iwae']:.2f} | {row['elbo']:.2f} |")
    for what in ("exact", "iwae"):
        print(f"ranked by {what}: " + " > ".join(r["model"] for r in sorted(rows, key=lambda r: -r[what])))


if __name__ == "__main__":
    main()
