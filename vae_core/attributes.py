"""Attributes measured on images, and attribute vectors in latent space (latent arithmetic).

An attribute vector is the mean code of the images that have an attribute minus the mean code of
those that do not (White 2016, "Sampling generative networks": the "smile vector"). Added to one
image's code and decoded, it should change that attribute and little else: in a VAE's smooth
latent space it usually does; in a plain AE's, code + α·v can land where no image was encoded and
decode to a blur.

The attributes are computed from the pixels themselves, so no labels beyond the digit classes are
needed:

- ink(x) = Σ_ij x_ij, the ink mass (sum of pixel intensities in [0, 1]). MNIST digits are scaled
  to the same 20-pixel box, so within one class more ink means a thicker stroke.
- slant(x) = μ11 / μ02, the shear of the second central moments of the intensity, with the
  column coordinate u growing to the right and the row coordinate v growing *upwards*:
  μ_pq = Σ (u - ū)^p (v - v̄)^q x_uv / Σ x_uv. A stroke leaning right, like "/", has slant > 0;
  one leaning left, like "\\", slant < 0; an upright one, 0. (It is the horizontal shift per
  row that deskewing an MNIST digit undoes.)

Images are arrays [N, C, H, W] (or [N, H, W]) of intensities in [0, 1]; codes are [N, d].
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from .errors import DataError
from .latent import class_direction, decode

__all__ = ["ink", "slant", "ATTRIBUTES", "attribute_vector", "class_vector", "shift", "sweep", "class_probs", "effect"]


def _grey(images) -> np.ndarray:
    """[N, C, H, W] or [N, H, W] (or one [H, W]) -> [N, H, W] float64, channels averaged."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4:
        x = x.mean(axis=1)
    if x.ndim != 3:
        raise DataError(f"images of shape {np.asarray(images).shape}: give [N, C, H, W] or [N, H, W]")
    return x


def ink(images) -> np.ndarray:
    """Ink mass ink(x) = Σ_ij x_ij of each image: [N, C, H, W] -> [N] (in pixels' worth of full ink)."""
    return _grey(images).sum(axis=(1, 2))


def slant(images, eps: float = 1e-8) -> np.ndarray:
    """Shear of the second central moments, slant(x) = μ11 / μ02: [N, C, H, W] -> [N].

    u = column index (to the right), v = -(row index) (upwards), weights x_uv; ū, v̄ the centre of
    mass; μ11 = Σ (u-ū)(v-v̄) x / Σ x, μ02 = Σ (v-v̄)^2 x / Σ x. Positive for a stroke leaning
    right ("/"), negative leaning left. An empty image has slant 0.
    """
    x = _grey(images)
    n, h, w = x.shape
    u = np.arange(w, dtype=np.float64)[None, None, :]
    v = -np.arange(h, dtype=np.float64)[None, :, None]
    mass = x.sum(axis=(1, 2))
    safe = np.maximum(mass, eps)
    ub = (x * u).sum(axis=(1, 2)) / safe
    vb = (x * v).sum(axis=(1, 2)) / safe
    du = u - ub[:, None, None]
    dv = v - vb[:, None, None]
    mu11 = (x * du * dv).sum(axis=(1, 2)) / safe
    mu02 = (x * dv * dv).sum(axis=(1, 2)) / safe
    out = mu11 / np.maximum(mu02, eps)
    return np.where(mass > eps, out, 0.0)


ATTRIBUTES = {"ink": ink, "slant": slant}


def attribute_vector(codes, scores, frac: float = 0.25, labels=None) -> np.ndarray:
    """The attribute vector v = mean{z : s in the top frac} - mean{z : s in the bottom frac}, [d].

    codes: [N, d]; scores: [N], the attribute of each code's image (e.g. ink(x)).
    labels: [N] or None. With labels, the quarters are taken within each class and the class
    vectors averaged, v = (1/K) Σ_k (mean{z : s top frac of class k} - mean{z : s bottom frac of
    class k}), so that the vector says "more of the attribute for the same digit" rather than
    "a digit that tends to have more of it" (a 0 has more ink than a 1). Classes with fewer than
    2 / frac codes are left out.
    """
    codes = np.asarray(codes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if codes.ndim != 2 or codes.shape[0] != scores.shape[0]:
        raise DataError(f"codes {codes.shape} and scores {scores.shape} do not match: give [N, d] and [N]")
    if not 0 < frac <= 0.5:
        raise DataError(f"frac = {frac}: give a fraction in (0, 0.5], e.g. 0.25 for quarters")
    groups = [np.arange(len(scores))] if labels is None else [
        np.flatnonzero(np.asarray(labels).reshape(-1) == c) for c in np.unique(labels)]
    parts = []
    for idx in groups:
        k = int(np.floor(len(idx) * frac))
        if k < 1 or (labels is not None and len(idx) < 2 / frac):
            continue
        order = idx[np.argsort(scores[idx], kind="stable")]
        parts.append(codes[order[-k:]].mean(axis=0) - codes[order[:k]].mean(axis=0))
    if not parts:
        raise DataError(f"too few codes ({len(scores)}) to take top and bottom fractions of {frac}")
    return np.mean(parts, axis=0).astype(np.float32)


def class_vector(codes, labels, a, b) -> np.ndarray:
    """The class vector v = mean{z : y = b} - mean{z : y = a}, [d] (vae_core.latent.class_direction)."""
    return class_direction(codes, labels, a, b)


def shift(z, v, alphas) -> np.ndarray:
    """Codes z + α·v for each α: z [d], v [d], alphas [A] -> [A, d]."""
    z = np.asarray(z, dtype=np.float32).reshape(-1)
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    a = np.asarray(alphas, dtype=np.float32).reshape(-1, 1)
    return z[None] + a * v[None]


def sweep(model, z, v, alphas) -> np.ndarray:
    """Decoded mean images of z + α·v for each α: z [d], v [d], alphas [A] -> [A, C, H, W] in [0, 1]."""
    return decode(model, shift(z, v, alphas))


@torch.no_grad()
def class_probs(classifier, images) -> np.ndarray:
    """p(y | x) of a digit classifier (vae_core.metrics.DigitClassifier): [N, C, H, W] -> [N, K]."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    return torch.softmax(classifier(x), dim=1).numpy()


def effect(model, codes, v, alphas, measure: Callable[[np.ndarray], np.ndarray],
           classifier=None, target=None, sure: float = 0.9) -> dict:
    """What adding α·v does to many codes: decode z_n + α·v for every code and every α, and measure.

    codes [N, d], v [d], alphas [A]; measure maps images [N, C, H, W] -> [N] (e.g. ink).
    Returns mean [A], the mean measure of the decoded images at each α, and clear [A] (None without
    a classifier): the fraction of decoded images the classifier reads as `target` with
    p(target | x) > sure; target is [N] (each code's own class: "still the same digit") or one class.
    """
    codes = np.asarray(codes, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32).reshape(1, -1)
    alphas = np.asarray(alphas, dtype=np.float32).reshape(-1)
    mean = np.zeros(len(alphas))
    clear = None if classifier is None or target is None else np.zeros(len(alphas))
    for i, a in enumerate(alphas):
        images = decode(model, codes + a * v)
        mean[i] = float(np.mean(measure(images))) if len(images) else float("nan")
        if clear is not None:
            p = class_probs(classifier, images)
            t = np.broadcast_to(np.asarray(target).reshape(-1), (len(p),))
            clear[i] = float(np.mean(p[np.arange(len(p)), t] > sure)) if len(p) else float("nan")
    return {"alphas": alphas, "mean": mean, "clear": clear}
