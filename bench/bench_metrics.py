"""Cost of the importance-weighted log p(x), and the prior-sample quality of a VAE against an AE.

    VAE_DATA_DIR=../shared/data python bench/bench_metrics.py [--images 10000] [--k 1000] [--threads 2]

Part 1 times iw_log_px with K samples for a 784-512-256-20 MLP VAE (the cost does not depend
on the weights, so an untrained one is timed) on the first --images MNIST test images, beside
the reference in the same run: evaluate_terms (one sample per image, the ELBO) on the same
images. With --images below 10,000 it also prints the linear extrapolation to 10,000.
Part 2 (skip with --skip-quality) trains a digit classifier and a VAE and an AE of the same
shape for a few epochs, then prints prior_sample_quality for both: the measurable form of
"an AE's samples from N(0, I) look worse".
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vae_core import metrics  # noqa: E402
from vae_core.config import ModelConfig, TrainConfig  # noqa: E402
from vae_core.data import load_dataset, load_exploration  # noqa: E402
from vae_core.models import build_model  # noqa: E402
from vae_core.train import evaluate_terms, fit  # noqa: E402


def timed(fn, *args, **kw):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0, time.process_time() - c0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5, help="training epochs for part 2")
    ap.add_argument("--max-train", type=int, default=20_000, help="training images for part 2 (0: all)")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu cores visible: {os.cpu_count()}, torch threads: {args.threads}, "
          f"load average before: {os.getloadavg()[0]:.1f}")

    test = load_exploration("mnist", REPO / "checkpoints" / "data")
    sub = test.subset(args.images)
    torch.manual_seed(0)
    vae = build_model(ModelConfig(kind="vae", latent_dim=20, hidden=(512, 256))).eval()
    _, wall, cpu = timed(evaluate_terms, vae, sub)
    print(f"reference: evaluate_terms (ELBO, 1 sample) on {len(sub)} images: {wall:.2f} s wall, {cpu:.2f} s CPU")
    value, wall, cpu = timed(metrics.iw_log_px, vae, sub, k=args.k, seed=0)
    print(f"iw_log_px K={args.k} on {len(sub)} images: {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({1000 * wall / len(sub):.1f} ms per image); untrained model, log p(x) = {value:.1f}")
    if len(sub) < 10_000:
        f = 10_000 / len(sub)
        print(f"  extrapolated to 10,000 images: {wall * f:.0f} s wall, {cpu * f:.0f} s CPU")
    print(f"load average now: {os.getloadavg()[0]:.1f} (other jobs on a shared CPU inflate wall times)")

    if args.skip_quality:
        return
    train = load_dataset("mnist", "train")
    clf, wall, _ = timed(metrics.train_classifier, train, epochs=3)
    print(f"classifier 784-256-10, 3 epochs: {wall:.0f} s, test accuracy {metrics.classifier_accuracy(clf, test):.4f}")
    for kind in ("vae", "ae"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind=kind, latent_dim=20, hidden=(512, 256)))
        _, wall, _ = timed(fit, model, train, None, TrainConfig(epochs=args.epochs, batch_size=128,
                                                                        max_train=args.max_train, device="cpu"))
        q = metrics.prior_sample_quality(model, clf, n=1000, seed=0)
        terms = evaluate_terms(model, test)
        print(f"{kind.upper():3s} ({args.epochs} epochs on {args.max_train or len(train)} images, {wall:.0f} s, test recon {terms['recon']:.1f}): "
              f"mean confidence {q['prior_confidence']:.3f}, confident (>0.9) {q['prior_confident_frac']:.3f}, "
              f"class entropy {q['prior_class_entropy']:.3f} of {2.302585:.3f} nats, "
              f"classifier score {q['prior_classifier_score']:.2f} of 10; "
              f"hist {[round(h, 3) for h in q['prior_class_hist']]}")


if __name__ == "__main__":
    main()
