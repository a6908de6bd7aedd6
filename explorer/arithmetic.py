"""The Latent arithmetic page's computations, cached for the whole server (vae_core.attributes
does the work): here rather than in the page so that the start-up warm-up (explorer.warm) can
fill the same caches before the first visitor asks."""
from __future__ import annotations

import numpy as np
import streamlit as st

from vae_core import attributes

from . import models

N_CODES = 2000          # the codes each vector is computed from (as on the other pages)
N_HELD = 1000           # further test images, not used for the vector, on which its effect is measured
ALPHAS = tuple(float(a) for a in np.linspace(-2, 2, 9))
MEASURE = {"thicker": "ink", "slant": "slant"}
UNITS = {"ink": "ink (Σ pixels)", "slant": "slant (μ₁₁/μ₀₂)"}


def classifier(dataset: str):
    """The shipped digit classifier of the dataset when it reads images of its shape, else None."""
    clf = models.digit_classifier(dataset)
    if clf is not None and tuple(clf.image_shape) != tuple(models.exploration_data(dataset).x.shape[1:]):
        return None
    return clf


def held_out(n_data: int) -> tuple[int, np.ndarray, bool]:
    """(n_vec, held, held_is_new): the first n_vec test images define the vector; its effect is
    measured on the next N_HELD, or, in a set too small to have them, on the first N_HELD (which
    then also defined it: held_is_new is False)."""
    n_vec = min(N_CODES, n_data)
    held = np.arange(n_vec, min(n_data, n_vec + N_HELD))
    if len(held):
        return n_vec, held, True
    return n_vec, np.arange(min(n_data, N_HELD)), False


def score_fn(dataset: str, kind: str, b: int):
    """What is measured on a decoded image: its ink, its slant, or the classifier's p(b | x)."""
    if kind in MEASURE:
        return attributes.ATTRIBUTES[MEASURE[kind]]
    clf = classifier(dataset)
    if clf is None:
        return None
    return lambda im: attributes.class_probs(clf, im)[:, b]


@st.cache_data(show_spinner=False, max_entries=64)
def vector(_ckpt, key: str, dataset: str, n: int, kind: str, a: int, b: int) -> np.ndarray:
    """The chosen vector [d] in this model's latent space, from its codes of the first n images."""
    c = models.codes(_ckpt, key, dataset, n)
    if kind == "class":
        return attributes.class_vector(c["mu"], c["labels"], a, b)
    x = models.exploration_subset(dataset, n).x.numpy()
    return attributes.attribute_vector(c["mu"], attributes.ATTRIBUTES[MEASURE[kind]](x), labels=c["labels"])


@st.cache_data(show_spinner=False, max_entries=256)
def walk(_ckpt, key: str, dataset: str, n: int, kind: str, a: int, b: int, index: int, alphas: tuple) -> dict:
    """Image `index`'s code z moved to z + α·v for each α: images [A, C, H, W], score [A] (or None),
    dist [A] (to the nearest of the n codes, in typical gaps)."""
    v = vector(_ckpt, key, dataset, n, kind, a, b)
    z = models.encode_images(_ckpt, key, models.images(dataset, [index]))["mu"][0]
    zs = attributes.shift(z, v, alphas)
    imgs = attributes.sweep(_ckpt.model, z, v, alphas)
    f = score_fn(dataset, kind, b)
    gap = max(models.typical_gap(_ckpt, key, dataset, n), 1e-12)
    return {"images": imgs, "score": None if f is None else np.asarray(f(imgs)),
            "dist": models.nearest_code_distance(_ckpt, key, dataset, n, zs) / gap}


@st.cache_data(show_spinner="Measuring the vector on test images…", max_entries=64)
def population(_ckpt, key: str, dataset: str, n: int, kind: str, a: int, b: int, idx: tuple) -> dict:
    """attributes.effect on the test images idx (for a class vector, those of class a): the mean
    score and the share of clear digits (the same digit, or class b) at each α of ALPHAS."""
    labels = models.labels(dataset)
    idx = np.asarray(idx, dtype=int)
    if kind == "class":
        idx = idx[labels[idx] == a]
    mu = models.encode_images(_ckpt, key, models.images(dataset, idx))["mu"]
    f = score_fn(dataset, kind, b) or attributes.ink
    target = b if kind == "class" else (None if labels is None else labels[idx])
    out = attributes.effect(_ckpt.model, mu, vector(_ckpt, key, dataset, n, kind, a, b), ALPHAS, f,
                            classifier=classifier(dataset), target=target)
    out["n"] = len(idx)
    return out


def first_of(labels: np.ndarray, c: int) -> int:
    """The first test image of class c (the page's default example), or 0."""
    where = np.flatnonzero(labels == c)
    return int(where[0]) if len(where) else 0


def warm(dataset: str, pair: list) -> None:
    """Fill the caches the page reads for models `pair` [checkpoints] with each vector on its
    default image (a 2 for ink and slant, a 7 turned into a 3 for the class vector): the strip of
    every α, the image at the slider's α = 1, and the effect on the held-out test images."""
    labels = models.labels(dataset)
    n_classes = 0 if labels is None else int(labels.max()) + 1
    n_vec, held, _ = held_out(len(models.exploration_data(dataset)))
    jobs = [(kind, 0, 0, 2 % max(n_classes, 1)) for kind in MEASURE]
    if n_classes:
        jobs.append(("class", 7 % n_classes, 3 % n_classes, 7 % n_classes))
    for kind, a, b, img_class in jobs:
        index = first_of(labels, img_class) if labels is not None else 0
        for ckpt in pair:
            key = models.ckpt_key(ckpt)
            walk(ckpt, key, dataset, n_vec, kind, a, b, index, ALPHAS)
            walk(ckpt, key, dataset, n_vec, kind, a, b, index, (1.0,))
            population(ckpt, key, dataset, n_vec, kind, a, b, tuple(int(i) for i in held))
