"""Metrics for a trained AE or VAE. Pure functions of models, tensors and arrays; no UI.

What each one answers:
- kl_per_dimension, active_units: which latent dimensions carry information (posterior collapse).
- iw_log_px: how well the model explains test images, as an importance-weighted estimate of
  log p(x) (Burda et al., 2016), tighter than the ELBO.
- knn_accuracy: how well classes separate in the code space.
- prior_sample_quality: whether images decoded from z ~ N(0, I) look like digits, judged by a
  small classifier trained on real digits. This is where the VAE and the AE differ most.
- evaluate: all of the above as one JSON-able dict, the form stored in checkpoints.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageData
from .errors import CheckpointError, ConfigError, DataError
from .losses import LOG_2PI, kl_per_dim, recon_nll

# Rows (images x samples) decoded at once by iw_log_px: bounds memory to roughly
# rows * (pixels + hidden widths) floats, about 100 MB for a 784-pixel MLP decoder.
IW_MAX_ROWS = 20_000


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _batches(data: ImageData, batch_size: int):
    for i in range(0, len(data), batch_size):
        yield data.x[i:i + batch_size]


# ---------------------------------------------------------------- KL and active units

@torch.no_grad()
def kl_per_dimension(model, data: ImageData, batch_size: int = 1000) -> Optional[np.ndarray]:
    """Mean over the data of KL(q(z_i|x) || N(0, 1)) for each latent dimension i: [d] nats.

    KL_i = 1/2 (sigma_i^2 - log sigma_i^2 - 1 + mu_i^2), averaged over images; the sum over i
    is the KL term of the ELBO. Returns None for the AE, which has no posterior and no KL
    (None rather than zeros, so an AE is never mistaken for a fully collapsed VAE).
    """
    model.eval()
    device = _device(model)
    total, n = None, 0
    for x in _batches(data, batch_size):
        mu, logvar = model.encode(x.to(device))
        if logvar is None:
            return None
        s = kl_per_dim(mu, logvar).sum(dim=0).double()
        total = s if total is None else total + s
        n += x.shape[0]
    if n == 0:
        raise DataError("the dataset is empty: give at least one image")
    return (total / n).cpu().numpy()


@torch.no_grad()
def active_units(model, data: ImageData, threshold: float = 0.01,
                 batch_size: int = 1000) -> tuple[int, np.ndarray]:
    """Count dimensions whose posterior mean varies across the data (Burda et al., 2016).

    A_i = Var_x( E_{q(z|x)}[z_i] ); dimension i is active when A_i > threshold (0.01).
    For the AE the code z itself plays the role of the posterior mean; note that the AE's
    codes have no fixed scale, so its count is less meaningful than the VAE's.
    Returns (count, A [d]).
    """
    model.eval()
    device = _device(model)
    mus = [model.encode(x.to(device))[0].double().cpu() for x in _batches(data, batch_size)]
    if not mus:
        raise DataError("the dataset is empty: give at least one image")
    var = torch.cat(mus).var(dim=0, unbiased=False).numpy()
    return int((var > threshold).sum()), var


# ---------------------------------------------------------------- importance-weighted log p(x)

def log_normal_std(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension: [..., d] -> [...]."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(dim=-1)


def iw_log_px_core(x: torch.Tensor,
                   encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   log_lik: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   k: int, sample_chunk: Optional[int] = None,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per image, with q(z|x) as the proposal.

        log p(x) ~= log (1/K) sum_k w_k,  w_k = p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x),

    computed as logsumexp_k(log w_k) - log K. For K = 1 its expectation is the ELBO; it rises
    towards log p(x) as K grows and equals it for any K when q is the exact posterior.

    x: [B, ...]; encode(x) -> (mu [B, d], logvar [B, d]) of the diagonal Gaussian q;
    log_lik(x, z) -> log p(x|z) [S, B] for z [S, B, d]. Samples are drawn sample_chunk at a
    time (all K when None), so memory grows with sample_chunk, not with K. Returns [B].
    """
    if k < 1:
        raise ConfigError(f"the number of importance samples k = {k!r} must be at least 1")
    mu, logvar = encode(x)
    std = torch.exp(0.5 * logvar)
    chunk = k if sample_chunk is None else max(1, min(int(sample_chunk), k))
    log_w = []
    for start in range(0, k, chunk):
        s = min(chunk, k - start)
        eps = torch.randn((s, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * std                                        # [S, B, d]
        # log q(z|x) in terms of eps avoids dividing by sigma: -1/2 (eps^2 + logvar + log 2 pi)
        log_q = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(dim=-1)
        log_w.append(log_lik(x, z) + log_normal_std(z) - log_q)  # [S, B]
    log_w = torch.cat(log_w, dim=0)                               # [K, B]
    return torch.logsumexp(log_w, dim=0) - math.log(k)


def model_log_lik(model) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """log p(x|z) of a model's decoder as a function (x [B, C, H, W], z [S, B, d]) -> [S, B]."""
    cfg = model.cfg

    def log_lik(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        s, b, d = z.shape
        logits = model.decode(z.reshape(s * b, d))
        if cfg.likelihood == "bernoulli":
            # log Bernoulli(x; sigmoid(l)) = x l - softplus(l), the same value as recon_nll's
            # cross-entropy but without repeating x S times: about 2x faster, and this is
            # the inner loop of a million-sample estimate.
            lf = logits.view(s, b, -1)
            return torch.einsum("sbp,bp->sb", lf, x.reshape(b, -1)) - F.softplus(lf).sum(dim=-1)
        xs = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
        nll = recon_nll(logits, xs, cfg.likelihood, cfg.gaussian_sigma, model.x_logvar)
        return -nll.view(s, b)
    return log_lik


@torch.no_grad()
def iw_log_px_per_image(model, data: ImageData, k: int = 1000, batch_size: Optional[int] = None,
                        max_rows: int = IW_MAX_ROWS, seed: int = 0) -> Optional[np.ndarray]:
    """iw_log_px_core over a dataset: log p(x) estimates [N] in nats (None for the AE).

    Images go batch_size at a time and samples max_rows // batch_size at a time, so at most
    max_rows decoder rows are alive at once whatever K is. Seeded: same seed, same numbers.
    """
    if model.cfg.kind != "vae":
        return None
    model.eval()
    device = _device(model)
    if batch_size is None:
        batch_size = max(1, min(len(data), max_rows // min(k, 200)))
    chunk = max(1, max_rows // batch_size)
    gen = torch.Generator(device=device).manual_seed(seed)
    log_lik = model_log_lik(model)
    out = [iw_log_px_core(x.to(device), model.encode, log_lik, k, chunk, gen).double().cpu()
           for x in _batches(data, batch_size)]
    if not out:
        raise DataError("the dataset is empty: give at least one image")
    return torch.cat(out).numpy()


def iw_log_px(model, data: ImageData, k: int = 1000, batch_size: Optional[int] = None,
              max_rows: int = IW_MAX_ROWS, seed: int = 0) -> Optional[float]:
    """Mean importance-weighted log p(x) over the images, nats per image; None for the AE,
    which defines no density over images. For Gaussian likelihoods it is a log-density of
    continuous pixels and can be positive; only Bernoulli values are comparable with the
    published MNIST numbers (about -85 to -80 nats on binarised MNIST)."""
    per = iw_log_px_per_image(model, data, k, batch_size, max_rows, seed)
    return None if per is None else float(per.mean())


# ---------------------------------------------------------------- k-nearest neighbours

def knn_accuracy(train_codes: np.ndarray, train_y: np.ndarray, test_codes: np.ndarray,
                 test_y: np.ndarray, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier (Euclidean, majority vote, a tie going to the
    smallest label, as scikit-learn's KNeighborsClassifier) fitted on codes [N, d].

    Brute force with matrix products in chunks: for a few thousand codes of a few dimensions this
    takes tens of milliseconds, where a tree search took over a second."""
    train_codes = torch.as_tensor(np.asarray(train_codes, dtype=np.float32))
    test_codes = torch.as_tensor(np.asarray(test_codes, dtype=np.float32))
    if len(train_codes) < k:
        raise DataError(f"k-NN with k = {k} needs at least {k} training codes, got {len(train_codes)}")
    classes, ty = np.unique(np.asarray(train_y), return_inverse=True)
    ty = torch.as_tensor(ty)
    sq = (train_codes ** 2).sum(1)
    correct = 0
    test_y = np.asarray(test_y)
    for i in range(0, len(test_codes), 2048):
        q = test_codes[i:i + 2048]
        d2 = sq[None, :] - 2 * q @ train_codes.T             # + |q|^2, the same for a whole row
        idx = torch.topk(d2, k, dim=1, largest=False).indices
        votes = torch.zeros(len(q), len(classes), dtype=torch.int64)
        votes.scatter_add_(1, ty[idx], torch.ones_like(idx))
        pred = classes[votes.argmax(1).numpy()]                # argmax: the first (smallest) label of a tie
        correct += int((pred == test_y[i:i + 2048]).sum())
    return correct / max(1, len(test_codes))


@torch.no_grad()
def embed_data(model, data: ImageData, batch_size: int = 1000) -> np.ndarray:
    """Deterministic codes model.embed(x) [N, d] (the VAE's mean, the AE's z)."""
    model.eval()
    device = _device(model)
    parts = [model.embed(x.to(device)).cpu() for x in _batches(data, batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, model.cfg.latent_dim), np.float32)


def model_knn_accuracy(model, train: ImageData, test: ImageData, k: int = 5,
                       max_train: Optional[int] = 10_000) -> float:
    """k-NN accuracy in code space: fit on (up to max_train) training codes, score on test codes."""
    if train.y is None or test.y is None:
        raise DataError("k-NN accuracy needs labels: this dataset has none")
    if max_train:
        train = train.subset(max_train)
    return knn_accuracy(embed_data(model, train), train.y.numpy(), embed_data(model, test),
                        test.y.numpy(), k)


# ---------------------------------------------------------------- prior-sample quality

class DigitClassifier(nn.Module):
    """A small MLP classifier, pixels -> class logits: x [B, C, H, W] -> [B, n_classes]."""

    def __init__(self, image_shape=(1, 28, 28), n_classes: int = 10, hidden: int = 256):
        super().__init__()
        self.image_shape = tuple(int(v) for v in image_shape)
        self.n_classes = int(n_classes)
        self.hidden = int(hidden)
        n_pixels = int(np.prod(self.image_shape))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_pixels, self.hidden), nn.ReLU(),
                                 nn.Linear(self.hidden, self.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_classifier(train: ImageData, epochs: int = 3, hidden: int = 256, lr: float = 1e-3,
                     batch_size: int = 128, seed: int = 0) -> DigitClassifier:
    """Fit a DigitClassifier on real labelled images with Adam and cross-entropy."""
    if train.y is None:
        raise DataError("the classifier needs labelled images: this dataset has no labels")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n_classes = int(train.y.max().item()) + 1
    clf = DigitClassifier(train.image_shape, n_classes, hidden)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    x, y = train.x.cpu(), train.y.cpu()
    clf.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = nn.functional.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    clf.eval()
    return clf


@torch.no_grad()
def classifier_accuracy(clf: DigitClassifier, data: ImageData, batch_size: int = 1000) -> float:
    """Fraction of images the classifier labels correctly."""
    clf.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        correct += int((clf(data.x[i:i + batch_size]).argmax(1) == data.y[i:i + batch_size]).sum())
    return correct / len(data)


def save_classifier(clf: DigitClassifier, path, metadata: Optional[dict] = None) -> Path:
    """Write the classifier as a safetensors file (weights + its shape as JSON metadata)."""
    from safetensors.torch import save as st_save
    from .checkpoints import atomic_write
    path = Path(path)
    meta = {"format": "vae-latent-explorer/classifier-1",
            "config": json.dumps({"image_shape": list(clf.image_shape), "n_classes": clf.n_classes,
                                  "hidden": clf.hidden}),
            "info": json.dumps(metadata or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in clf.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, st_save(state, metadata=meta))
    return path


def load_classifier(path) -> DigitClassifier:
    """Read a classifier written by save_classifier (no pickle: safetensors + JSON)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: train one with train_classifier and save_classifier")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        cfg = json.loads(meta["config"])
        clf = DigitClassifier(cfg["image_shape"], cfg["n_classes"], cfg["hidden"])
        clf.load_state_dict(state)
    except Exception as e:
        raise CheckpointError(f"{path} is not a classifier written by save_classifier ({type(e).__name__}: {e}): "
                              "train and save it again") from e
    clf.eval()
    return clf


@torch.no_grad()
def prior_sample_quality(model, classifier: DigitClassifier, n: int = 1000, seed: int = 0,
                         temperature: float = 1.0, batch_size: int = 1000) -> dict:
    """Judge images decoded from the prior, z ~ N(0, temperature^2 I), with a digit classifier.

    x = sigmoid(decode(z)) [n, C, H, W]; p(c|x) = softmax(classifier(x)). Returns
    prior_confidence: mean_n max_c p(c|x), prior_confident_frac: fraction with max_c p > 0.9,
    prior_class_hist: fraction of samples predicted as each class [n_classes],
    prior_class_entropy: -sum_c h_c log h_c of that histogram (nats; log 10 = 2.303 when every
    class is equally common), prior_class_entropy_norm: the same divided by log(n_classes),
    prior_classifier_score: exp(H(mean p) - mean H(p)) in [1, n_classes], the Inception Score
    (Salimans et al., 2016) computed with this classifier.
    Confidence alone can favour a sampler that draws a few classes well (an AE whose codes
    lie far from N(0, I) often does); read it together with the entropy or the score.
    """
    if tuple(classifier.image_shape) != tuple(model.cfg.image_shape):
        raise ConfigError(f"the classifier reads images of shape {classifier.image_shape} but the model "
                          f"makes {model.cfg.image_shape}: train a classifier on this model's dataset")
    model.eval()
    classifier.eval()
    device = _device(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    probs = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = temperature * torch.randn((m, model.cfg.latent_dim), generator=gen, device=device)
        images = torch.sigmoid(model.decode(z)).cpu()
        probs.append(torch.softmax(classifier(images), dim=1))
    p = torch.cat(probs).double()
    conf, pred = p.max(dim=1)
    hist = torch.bincount(pred, minlength=classifier.n_classes).double() / n
    nz = hist[hist > 0]
    entropy = float(-(nz * nz.log()).sum())
    # The Inception Score's form with a digit classifier: exp(H(mean_x p(c|x)) - mean_x H(p(c|x))),
    # from 1 (one blurry class) to n_classes (every class, each sample certain). It rewards
    # confident and diverse samples at once, which neither number above does on its own.
    marginal = p.mean(dim=0)
    h_marg = float(-(marginal * marginal.clamp_min(1e-30).log()).sum())
    h_cond = float(-(p * p.clamp_min(1e-30).log()).sum(dim=1).mean())
    return {"prior_confidence": float(conf.mean()),
            "prior_confident_frac": float((conf > 0.9).double().mean()),
            "prior_class_hist": [float(v) for v in hist],
            "prior_class_entropy": entropy,
            "prior_class_entropy_norm": entropy / math.log(classifier.n_classes),
            "prior_classifier_score": math.exp(h_marg - h_cond),
            "prior_samples": int(n)}


# ---------------------------------------------------------------- everything at once

def evaluate(model, test: ImageData, train: Optional[ImageData] = None, iw_samples: int = 1000,
             classifier: Optional[DigitClassifier] = None, beta: float = 1.0, seed: int = 0,
             binarize: bool = False, knn_k: int = 5, knn_max_train: Optional[int] = 10_000,
             prior_n: int = 1000) -> dict:
    """All metrics of a model as plain JSON-able numbers (stored in checkpoints).

    loss, recon, kl: means per image (train.evaluate_terms, one posterior sample each);
    elbo = -(recon + kl) and log_px (iw_log_px with iw_samples samples; 0 skips it): VAE
    only, None for the AE; active_units, active_var, kl_per_dim; knn_acc when `train` has
    labels (k-NN fitted on the first knn_max_train training codes, recorded as knn_train);
    prior_* (prior_sample_quality) when a classifier is given. With binarize=True
    (models trained with train_config.binarize) the test set is binarised once with `seed`.
    """
    from .train import binarized, evaluate_terms
    is_vae = model.cfg.kind == "vae"
    eval_data = binarized(test, seed) if binarize else test
    terms = evaluate_terms(model, eval_data, beta=beta if is_vae else 0.0, seed=seed)
    n_active, var = active_units(model, eval_data)
    kl_dims = kl_per_dimension(model, eval_data)
    log_px = iw_log_px(model, eval_data, k=iw_samples, seed=seed) if is_vae and iw_samples else None
    out = {
        "loss": terms["loss"], "recon": terms["recon"], "kl": terms["kl"],
        "elbo": -(terms["recon"] + terms["kl"]) if is_vae else None,
        "log_px": log_px, "iw_samples": int(iw_samples) if log_px is not None else 0,
        "active_units": n_active, "active_var": [float(v) for v in var],
        "kl_per_dim": None if kl_dims is None else [float(v) for v in kl_dims],
        "n_test": len(test), "binarized": bool(binarize), "seed": int(seed), "beta": float(beta),
    }
    if train is not None and train.y is not None and test.y is not None:
        out["knn_acc"] = model_knn_accuracy(model, train, test, k=knn_k, max_train=knn_max_train)
        out["knn_k"] = int(knn_k)
        out["knn_train"] = min(len(train), knn_max_train) if knn_max_train else len(train)   # codes fitted on
    if classifier is not None:
        out.update(prior_sample_quality(model, classifier, n=prior_n, seed=seed))
    return out
