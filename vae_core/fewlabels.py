"""Few labels: codes as features for a classifier that sees only n labelled images per class.

An unsupervised model turns every image into a code without ever seeing a label. When labels are
scarce, a simple classifier on good codes may beat the same classifier on raw pixels: the model
has already done, from unlabelled images, part of the work the labels would otherwise do.

The classifier is k-nearest neighbours (vae_core.metrics.knn_accuracy, the probe behind the
checkpoints' "kNN acc"), with k = min(5, n):
- it has nothing to fit or tune (no regularisation strength, no iterations, no convergence),
  which matters when there is one labelled image per class and no data left to tune on;
- it asks the question the explorer's maps ask: are images of one class near each other in
  this space?
- it is fast: 2,000 test images against 10,000 labelled ones take tenths of a second even on
  784 pixels, where a logistic regression took seconds to converge on the pixels.
Distances are Euclidean on the features as they are by default. Per-feature standardisation
(`standardise=True`, statistics of the unlabelled pool) is offered, but for k-NN it is a poor
default: it inflates pixels near the border that are almost always black (a rare stroke there
becomes a huge distance) and a VAE's unused latent dimensions (posterior noise) to the weight
of the used ones. Measured on the shipped 20-D β = 1 pair it lowers the accuracy of pixels,
PCA and the VAE, with 10 labels per class most of all for pixels (about 0.74 to 0.64).

Every function takes arrays and returns numbers or arrays; the one that draws labelled sets
takes its own seed. `split()` is the only one that reads files (never downloading).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .errors import DataError
from .metrics import knn_accuracy

NS = (1, 10, 100, 1000)        # labelled images per class the views offer
K = 5                          # neighbours that vote (fewer when fewer labelled images per class)
# Labelled sets drawn per n: many where one draw's luck moves the accuracy by several points
# (n = 1: about 4 on MNIST), few where it moves it by tenths of a point (n = 1,000) and a draw
# costs the most (10,000 labelled images to compare every test image with).
DRAWS = {1: 10, 10: 10, 100: 5, 1000: 2}


def draws_for(ns: Sequence[int]) -> list:
    """The number of labelled sets drawn for each n (DRAWS; 5 for an n it does not list)."""
    return [DRAWS.get(int(n), 5) for n in ns]


# ---------------------------------------------------------------- the data

@dataclass
class FewLabelSplit:
    """Images to draw labels from and a fixed held-out test set.

    pool_x [P, C, H, W], pool_y [P]: the unlabelled images (PCA is fitted on them, labelled sets
    are drawn from them); test_x [T, C, H, W], test_y [T]; source: "training" or "exploration";
    note: one sentence for the page saying where each part comes from."""
    pool_x: np.ndarray
    pool_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str
    note: str


def split(name: str, x: np.ndarray, y: np.ndarray, test_size: int = 2000, pool_size: int = 20_000,
          use_training: bool = True) -> FewLabelSplit:
    """Where labels are drawn from and where accuracy is measured, for dataset `name` whose
    exploration images are x [N, C, H, W] with labels y [N].

    Labels are drawn from the dataset's training images (their first `pool_size`) when they are
    on disk (never downloaded), and accuracy is measured on the last `test_size` exploration
    images (all of them when there are fewer than 2 x test_size). Without training images, labels
    come from the exploration images before the test set, which is then the last
    min(test_size, N / 5). Raises DataError when y is None."""
    if y is None:
        raise DataError("few-label accuracy needs class labels: this dataset has none")
    x, y = np.asarray(x, np.float32), np.asarray(y)
    n = len(x)
    t = int(test_size) if n >= 2 * test_size else n
    test_x, test_y = x[n - t:], y[n - t:]
    if use_training:
        from .data import load_dataset
        try:
            train = load_dataset(name, "train", allow_download=False)
        except (DataError, OSError, ValueError):
            train = None
        if train is not None and train.y is not None and tuple(train.x.shape[1:]) == x.shape[1:]:
            m = min(int(pool_size), len(train))
            return FewLabelSplit(train.x[:m].numpy(), train.y[:m].numpy(), test_x, test_y, "training",
                                 f"labels drawn from the first {m:,} training images, accuracy measured on "
                                 f"{t:,} test images (the last of the {n:,} test images the app ships)")
    t = min(int(test_size), n // 5)
    if t < 1:
        raise DataError(f"only {n} labelled images and no training images on disk: too few to hold "
                        "a test set apart")
    test_x, test_y = x[n - t:], y[n - t:]
    return FewLabelSplit(x[:n - t], y[:n - t], test_x, test_y, "exploration",
                         f"the training images are not on this server, so labels are drawn from the first "
                         f"{n - t:,} of the {n:,} test images the app ships and accuracy is measured on the "
                         f"last {t:,}")


def available_ns(pool_y: np.ndarray, ns: Sequence[int] = NS) -> list:
    """The labelled-set sizes per class that every class of the pool can supply (each draw takes
    n images of each class without replacement)."""
    counts = np.bincount(np.asarray(pool_y))
    least = int(counts[counts > 0].min()) if counts.size else 0
    return [int(n) for n in ns if n <= least]


# ---------------------------------------------------------------- features

def flatten(x: np.ndarray) -> np.ndarray:
    """Images [N, C, H, W] -> pixel features [N, C*H*W] (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(len(x), -1)


def pca_features(pool: np.ndarray, test: np.ndarray, k: int, seed: int = 0,
                 fit_on: int = 5_000) -> tuple[np.ndarray, np.ndarray]:
    """Both sets projected on the first k principal components of the pool: pool [P, D],
    test [T, D] -> ([P, k], [T, k]). z = (x - mean) W, with W [D, k] the leading eigenvectors of
    the pool's covariance, fitted on its first `fit_on` rows (no labels: this is unsupervised;
    5,000 images give the same components as 20,000 to a fraction of a per cent of the variance,
    in a quarter of the time). `seed` is kept for a randomized solver; the eigen-decomposition of
    the covariance used here draws nothing."""
    from sklearn.decomposition import PCA
    pool, test = np.asarray(pool, np.float32), np.asarray(test, np.float32)
    k = int(min(k, pool.shape[1], min(len(pool), fit_on)))
    pca = PCA(k, svd_solver="covariance_eigh", random_state=seed).fit(pool[:fit_on])
    return pca.transform(pool).astype(np.float32), pca.transform(test).astype(np.float32)


def standardise(pool: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f - m) / s per feature, m and s the mean and standard deviation over the unlabelled pool
    (a constant feature keeps s = 1): pool [P, D], test [T, D] -> the same shapes."""
    pool, test = np.asarray(pool, np.float32), np.asarray(test, np.float32)
    m, s = pool.mean(0), pool.std(0)
    s = np.where(s > 1e-8, s, 1.0).astype(np.float32)
    return (pool - m) / s, (test - m) / s


# ---------------------------------------------------------------- the experiment

def labelled_draws(y: np.ndarray, n: int, draws: int, seed: int) -> list:
    """`draws` labelled sets, each n indices of every class of y [P] drawn without replacement,
    from np.random.default_rng(seed): the same y, n and seed give the same sets, whatever the
    features they are used with (so every feature set is judged on the same labelled images)."""
    y = np.asarray(y)
    classes = np.unique(y)
    rng = np.random.default_rng([int(seed), int(n)])
    where = [np.flatnonzero(y == c) for c in classes]
    short = [int(c) for c, w in zip(classes, where) if len(w) < n]
    if short:
        raise DataError(f"{n} labelled images per class asked for, but class(es) {short} have fewer "
                        f"in the pool: choose n up to {min(len(w) for w in where)}")
    return [np.concatenate([rng.choice(w, n, replace=False) for w in where]) for _ in range(int(draws))]


def accuracy_curve(pool_f: np.ndarray, pool_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                   ns: Sequence[int] = NS, draws=5, seed: int = 0, k: int = K,
                   standardised: bool = False) -> dict:
    """Test accuracy of k-NN (k' = min(k, n)) fitted on n labelled pool features per class.

    pool_f [P, D] with pool_y [P]; test_f [T, D] with test_y [T]. For every n in ns, `draws`
    labelled sets (an int, or one count per n: few draws suffice where the spread is small);
    the sets are labelled_draws(pool_y, n, draws, seed). accuracy = mean over the test set of
    [predicted class = true class]. Returns {"n": [len(ns)] ints, "acc": one array [draws] per n,
    "mean": [len(ns)], "std": [len(ns)] (spread over draws, population sd; 0 for one draw)}."""
    counts = [int(draws)] * len(ns) if np.isscalar(draws) else [int(d) for d in draws]
    if len(counts) != len(ns) or min(counts, default=1) < 1:
        raise ValueError(f"draws must be a positive int or one positive count per n, got {draws!r}")
    if standardised:
        pool_f, test_f = standardise(pool_f, test_f)
    pool_f, test_f = np.asarray(pool_f, np.float32), np.asarray(test_f, np.float32)
    pool_y, test_y = np.asarray(pool_y), np.asarray(test_y)
    acc = [np.array([knn_accuracy(pool_f[idx], pool_y[idx], test_f, test_y, k=min(int(k), int(n)))
                     for idx in labelled_draws(pool_y, n, d, seed)], dtype=np.float64)
           for n, d in zip(ns, counts)]
    return {"n": [int(n) for n in ns], "acc": acc, "mean": np.array([a.mean() for a in acc]),
            "std": np.array([a.std() for a in acc])}


def at(curve: dict, n: int) -> Optional[tuple[float, float]]:
    """(mean, spread) of a curve at n labelled images per class, or None when it was not measured."""
    if n not in curve["n"]:
        return None
    i = curve["n"].index(n)
    return float(curve["mean"][i]), float(curve["std"][i])
