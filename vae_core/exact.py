"""The true posterior and the exact log p(x) of a model with a 2-D latent space, by quadrature.

With two latent dimensions the evidence is a 2-D integral that a grid computes to any accuracy:

    log p(x) = log ∫ p(x|z) p(z) dz  ≈  logsumexp_ij [log p(x|z_ij) + log p(z_ij)] + log(Δu Δv),
    p(z|x)   = p(x|z) p(z) / p(x)    (the true posterior, on the same grid).

The bounds a VAE can compute sit below it:

    ELBO     = E_q[log p(x|z)] − KL(q(z|x) || p(z)) = log p(x) − KL(q(z|x) || p(z|x)),
    IWAE_K   = E[log 1/K Σ_k p(x|z_k) p(z_k) / q(z_k|x)],  z_k ~ q(z|x),
    ELBO = IWAE_1 ≤ IWAE_K ≤ IWAE_2K ≤ log p(x),  IWAE_K ↑ log p(x) as K → ∞,

with a bias log p(x) − IWAE_K ≈ Var_q[w] / (2K p(x)²) for large K (w = p(x, z)/q(z|x); a delta-method
expansion of E[log of a mean of K weights]).

Where the grid goes: the integrand of a well-trained model is a narrow bump (σ down to about 0.015
on the shipped 2-D MNIST VAEs) somewhere in the prior's ±6 box. A coarse pass looks at two grids,
the prior's ±6 box and q(z|x)'s mean ±8σ (which resolves a narrow bump near q's mean); the fine
passes then cover only where the log integrand is within `margin` nats of its peak, each pass
zooming on the box the last one found. A uniform grid on a smooth integrand that vanishes at the
box's edges converges faster than any power of the spacing (the trapezoid rule's property), so
64 × 64 points over the bump is already far below a hundredth of a nat (tests/test_exact.py
checks a linear-Gaussian decoder's closed form and that a finer grid agrees).

Every function takes a batch: x [B, ...] and q's mu, sigma [B, 2]; log_lik(x, z) is
vae_core.metrics.model_log_lik's function (z [S, B, 2] -> log p(x|z) [S, B]), so the likelihood
(Bernoulli, or Gaussian with its σ and normalising constant) is the one the model was trained with.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .data import file_stamp
from .errors import ConfigError
from .losses import LOG_2PI, kl_divergence
from .metrics import iw_log_px_core, log_normal_std, model_log_lik

LogLik = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (x [B, ...], z [S, B, 2]) -> [S, B]

MAX_ROWS = 16_384      # decoder rows alive at once (about 50 MB of logits for a 784-pixel decoder)
KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _t(a) -> torch.Tensor:
    """An array or tensor as a float64 tensor."""
    return torch.as_tensor(a if torch.is_tensor(a) else np.asarray(a, dtype=np.float64), dtype=torch.float64)


@torch.no_grad()
def log_joint(x: torch.Tensor, log_lik: LogLik, z: torch.Tensor, max_rows: int = MAX_ROWS) -> torch.Tensor:
    """log p(x|z) + log p(z), p(z) = N(0, I): x [B, ...], z [S, B, 2] -> [S, B] (float64)."""
    b = x.shape[0]
    step = max(1, max_rows // b)
    out = []
    for s in range(0, z.shape[0], step):
        zc = z[s:s + step].to(torch.float32)
        out.append((log_lik(x, zc).double() + log_normal_std(zc.double())))
    return torch.cat(out)


def grid(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple:
    """An n × n grid for each image over the box lo..hi [B, 2]: u, v [B, n] (the axes) and the
    points z [n·n, B, 2], row-major with v the slow axis (point i·n + j is (u_j, v_i))."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    u = lo[:, :1] + (hi[:, :1] - lo[:, :1]) * t          # [B, n]
    v = lo[:, 1:] + (hi[:, 1:] - lo[:, 1:]) * t
    uu = u.T.unsqueeze(0).expand(n, n, -1)                 # [n (v), n (u), B]
    vv = v.T.unsqueeze(1).expand(n, n, -1)
    return u, v, torch.stack([uu, vv], dim=-1).reshape(n * n, -1, 2)


def _mass_box(lj: torch.Tensor, z: torch.Tensor, pad: torch.Tensor, peak: torch.Tensor, margin: float) -> tuple:
    """The bounding box [B, 2] of the points whose log integrand is within `margin` of `peak` [B],
    widened by `pad` [B, 2] (inf where no point qualifies)."""
    keep = (lj >= peak - margin).unsqueeze(-1)             # [S, B, 1]
    inf = torch.tensor(math.inf, dtype=torch.float64)
    lo = torch.where(keep, z, inf).amin(0) - pad
    hi = torch.where(keep, z, -inf).amax(0) + pad
    return lo, hi


def posterior(x: torch.Tensor, log_lik: LogLik, mu, sigma, n: int = 64, passes: int = 2,
              n_coarse: int = 32, prior_box: float = 6.0, q_sds: float = 8.0, margin: float = 30.0) -> dict:
    """log p(x) = log ∫ p(x|z) p(z) dz and the true posterior p(z|x) on a grid, for x [B, ...].

    mu, sigma [B, 2]: q(z|x), used only to place the coarse grid. A coarse pass evaluates the log
    integrand on n_coarse² points over the prior's ±prior_box box and over q's ±q_sds·σ box; each of
    `passes` fine passes puts n² points on the box where the last pass found it within `margin` nats
    of its peak (plus two of that pass's cells on every side). Returns u, v [B, n] (the last grid's
    axes), log_post [B, n, n] (log p(z|x), rows along v), log_px [B] and cell [B] (Δu Δv).
    """
    mu, sigma = _t(mu), _t(sigma)
    if mu.ndim != 2 or mu.shape[1] != 2:
        raise ConfigError(f"the exact posterior needs a 2-D latent space: q's mean has shape {tuple(mu.shape)}, "
                          "not [B, 2]: choose a model with latent_dim = 2")
    b = mu.shape[0]
    boxes = [(torch.full((b, 2), -prior_box, dtype=torch.float64), torch.full((b, 2), prior_box, dtype=torch.float64)),
             (mu - q_sds * sigma, mu + q_sds * sigma)]
    found = []
    for lo, hi in boxes:
        _, _, z = grid(lo, hi, n_coarse)
        found.append((log_joint(x, log_lik, z), z, 2 * (hi - lo) / (n_coarse - 1)))
    peak = torch.stack([lj.amax(0) for lj, _, _ in found]).amax(0)
    box = [_mass_box(lj, z, pad, peak, margin) for lj, z, pad in found]
    lo = torch.stack([b_lo for b_lo, _ in box]).amin(0)
    hi = torch.stack([b_hi for _, b_hi in box]).amax(0)
    for _ in range(passes):
        u, v, z = grid(lo, hi, n)
        lj = log_joint(x, log_lik, z)
        pad = 2 * (hi - lo) / (n - 1)
        new_lo, new_hi = _mass_box(lj, z, pad, lj.amax(0), margin)
        last = (u, v, lj)
        lo, hi = torch.maximum(new_lo, lo), torch.minimum(new_hi, hi)
    u, v, lj = last
    cell = (u[:, 1] - u[:, 0]) * (v[:, 1] - v[:, 0])
    log_px = torch.logsumexp(lj, dim=0) + cell.log()
    log_post = (lj - log_px).T.reshape(b, n, n)
    return {"u": u.numpy(), "v": v.numpy(), "log_post": log_post.numpy(), "log_px": log_px.numpy(),
            "cell": cell.numpy()}


def log_q(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log q(z|x) of the diagonal Gaussian N(mu, sigma²): z [S, B, 2], mu, sigma [B, 2] -> [S, B]."""
    e = (z - mu) / sigma
    return -0.5 * (e.pow(2) + LOG_2PI).sum(-1) - sigma.log().sum(-1)


def kl_q_to_posterior(x: torch.Tensor, log_lik: LogLik, mu, sigma, log_px, n: int = 48,
                      sds: float = 6.0) -> np.ndarray:
    """KL(q(z|x) || p(z|x)) = E_q[log q(z|x) − log p(x|z) − log p(z)] + log p(x) by quadrature on
    q's own ±sds·σ box (where q has its mass; the integrand is weighted by q, so the box of the
    posterior does not matter), with log p(x) [B] from `posterior`. Independent of the ELBO:
    nothing here uses the closed-form KL to the prior. Returns [B] nats."""
    mu, sigma = _t(mu), _t(sigma)
    _, _, z = grid(mu - sds * sigma, mu + sds * sigma, n)
    lq = log_q(z, mu, sigma)
    w = torch.softmax(lq, dim=0)                          # q's weights on the grid, summing to 1
    return ((w * (lq - log_joint(x, log_lik, z))).sum(0) + _t(log_px)).numpy()


def elbo(x: torch.Tensor, log_lik: LogLik, mu, sigma, order: int = 40) -> np.ndarray:
    """ELBO = E_q[log p(x|z)] − KL(q(z|x) || N(0, I)): the reconstruction term by Gauss–Hermite
    quadrature (order² nodes on q: deterministic, unlike the training loss's one sample; the
    decoder's ReLU kinks make it converge slowly, about 0.001 nat at order 40 on a wide q) and the
    KL in closed form (losses.kl_divergence). Returns [B] nats."""
    mu, sigma = _t(mu), _t(sigma)
    t, w = np.polynomial.hermite.hermgauss(order)
    tt = torch.as_tensor(np.stack(np.meshgrid(t, t), -1).reshape(-1, 2))            # [S, 2]
    ww = torch.as_tensor(np.outer(w, w).reshape(-1) / math.pi)                       # sums to 1
    z = mu + math.sqrt(2) * sigma * tt[:, None, :]                                    # [S, B, 2]
    rec = (ww[:, None] * (log_joint(x, log_lik, z) - log_normal_std(z))).sum(0)
    return (rec - kl_divergence(mu, 2 * sigma.log())).numpy()


def iw_draws(x: torch.Tensor, log_lik: LogLik, mu, sigma, pool: int = 4000,
             generator: Optional[torch.Generator] = None) -> np.ndarray:
    """`pool` importance log weights log w = log p(x|z) + log p(z) − log q(z|x), z ~ q(z|x), for one
    image x [1, ...]: each is one IWAE_1 draw of metrics.iw_log_px_core. Returns [pool]."""
    mu_t, sd_t = _t(mu).float(), _t(sigma).float()
    if mu_t.shape[0] != 1:
        raise ConfigError("iw_draws takes one image at a time")
    # `pool` copies of the image, each with K = 1: the log weights themselves.
    q = (mu_t.expand(pool, 2), (2 * sd_t.log()).expand(pool, 2))
    with torch.no_grad():
        return iw_log_px_core(x.expand(pool, *x.shape[1:]), lambda _: q, log_lik, 1,
                              generator=generator).double().numpy()


def iw_curve(log_w: np.ndarray, ks=KS, shuffles: int = 8, seed: int = 0) -> dict:
    """IWAE_K for each K from a pool of log weights [M]: split the pool into M // K disjoint blocks
    of K (independent draws of IWAE_K = log 1/K Σ_k w_k), over `shuffles` random orders of the pool.
    Returns {K: (mean, spread of one draw, number of draws per order)}; the mean estimates
    E[IWAE_K], which rises with K towards log p(x)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in ks:
        k = int(k)
        m = (len(log_w) // k) * k
        if m == 0:
            raise ConfigError(f"K = {k} needs a pool of at least {k} log weights, not {len(log_w)}")
        est = []
        for s in range(shuffles if k > 1 else 1):
            lw = log_w[rng.permutation(len(log_w))[:m] if s else slice(0, m)].reshape(-1, k)
            mx = lw.max(1, keepdims=True)
            est.append(mx[:, 0] + np.log(np.exp(lw - mx).mean(1)))
        est = np.concatenate(est)
        out[k] = (float(est.mean()), float(est.std()), m // k)
    return out


def _vae_q(model, x: torch.Tensor) -> tuple:
    if model.cfg.kind != "vae" or model.cfg.latent_dim != 2:
        raise ConfigError(f"the exact posterior needs a VAE with a 2-D latent space, not a {model.cfg.kind} "
                          f"with {model.cfg.latent_dim}: choose a 2-D VAE")
    model.eval()
    with torch.no_grad():
        m, lv = model.encode(x)
    return m.double(), torch.exp(0.5 * lv.double())


def explain(model, x: torch.Tensor, ks=KS, pool: int = 4000, seed: int = 0) -> dict:
    """Everything the True posterior page shows for one image x [1, C, H, W] of a 2-D VAE: q's
    mean and σ [2], the true posterior on a grid (u, v [n], log_post [n, n]), log p(x), the ELBO,
    KL(q || p(z|x)) by quadrature, and the IWAE curve {K: (mean, spread, draws)} from a pool of
    `pool` importance weights. Numbers are nats, floats."""
    mu, sigma = _vae_q(model, x)
    log_lik = model_log_lik(model)
    post = posterior(x, log_lik, mu, sigma)
    gen = torch.Generator().manual_seed(seed)
    log_w = iw_draws(x, log_lik, mu, sigma, pool, gen)
    return {"mu": mu[0].numpy(), "sigma": sigma[0].numpy(), "u": post["u"][0], "v": post["v"][0],
            "log_post": post["log_post"][0], "log_px": float(post["log_px"][0]), "cell": float(post["cell"][0]),
            "elbo": float(elbo(x, log_lik, mu, sigma)[0]),
            "kl_post": float(kl_q_to_posterior(x, log_lik, mu, sigma, post["log_px"])[0]),
            "iw": iw_curve(log_w, ks, seed=seed)}


def exact_vs_iwae(model, x: torch.Tensor, k: int = 1000, batch: int = 50, seed: int = 0) -> dict:
    """Per image of x [N, C, H, W]: the exact log p(x) by quadrature, one IWAE_k draw (as
    metrics.iw_log_px computes it, seeded) and the ELBO, each [N] nats."""
    gen = torch.Generator().manual_seed(seed)
    log_lik = model_log_lik(model)
    out = {"log_px": [], "iwae": [], "elbo": []}
    for s in range(0, len(x), batch):
        xb = x[s:s + batch]
        mu, sigma = _vae_q(model, xb)
        out["log_px"].append(posterior(xb, log_lik, mu, sigma)["log_px"])
        out["elbo"].append(elbo(xb, log_lik, mu, sigma))
        with torch.no_grad():
            out["iwae"].append(iw_log_px_core(xb, model.encode, log_lik, k, max(1, MAX_ROWS // len(xb)),
                                              gen).double().numpy())
    return {key: np.concatenate(v) for key, v in out.items()}


# ---------------------------------------------------------------- a family's ranking, kept on disk

# The True posterior page ranks a family of 2-D VAEs by these, on the first RANK_IMAGES
# exploration images with IWAE at K = RANK_K: about 5 s a model on 2 cores. Results are kept per
# ranking_id (the model's weights and likelihood) in a folder's exact/ (the shipped ones beside the
# checkpoints, by `python -m vae_core exact`), so a shipped family is ranked at once.
RANK_IMAGES, RANK_K = 50, 1000
RANK_KEYS = ("exact log p(x)", "IWAE, K = 1000", "exact − IWAE", "ELBO")


def ranking_values(model, x: torch.Tensor) -> dict:
    """The means over x of exact_vs_iwae with K = RANK_K: {RANK_KEYS: nats per image}."""
    res = exact_vs_iwae(model, x, k=RANK_K)
    return dict(zip(RANK_KEYS, (float(res["log_px"].mean()), float(res["iwae"].mean()),
                                float((res["log_px"] - res["iwae"]).mean()), float(res["elbo"].mean()))))


def ranking_id(model, digest: str) -> str:
    """What a model's ranking values depend on besides the data: its weights (digest) and its
    likelihood (the same weights read as Bernoulli or as a Gaussian of another σ integrate to
    other values)."""
    cfg = model.cfg
    what = f"{cfg.likelihood}/{cfg.gaussian_sigma!r}"
    return f"{digest}-{hashlib.blake2b(what.encode(), digest_size=4).hexdigest()}"


def ranking_file(folder, key: str, dataset: str, n: int = RANK_IMAGES, k: int = RANK_K) -> Path:
    """Where ranking values are kept: FOLDER/exact/<dataset>-n<n>-k<k>-<ranking_id>.json. A dataset
    given as a file's path (an .npz) is named by a digest of that path and its data.file_stamp
    (size and time of change): never a path in a name, and a file replaced in place gets new
    values, not the old file's."""
    stamp = file_stamp(dataset)
    if re.fullmatch(r"[A-Za-z0-9_.-]+", dataset) and dataset not in (".", "..") and not stamp:
        name = dataset
    else:
        name = "data-" + hashlib.blake2b(f"{dataset}\0{stamp}".encode(), digest_size=6).hexdigest()
    return Path(folder) / "exact" / f"{name}-n{n}-k{k}-{key}.json"


def read_ranking(folder, key: str, dataset: str, n: int = RANK_IMAGES, k: int = RANK_K) -> Optional[dict]:
    """The values ranking_values stored under ranking_id `key`, or None (no file, or one that is
    not whole: a reader never trusts a damaged cache). A diverged model's -inf or NaN is kept as
    such (JSON's -Infinity, NaN), so it is not integrated again on every visit."""
    try:
        values = json.loads(ranking_file(folder, key, dataset, n, k).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(values, dict) or set(values) != set(RANK_KEYS) or not all(
            isinstance(values[name], float) for name in RANK_KEYS):
        return None
    return {name: values[name] for name in RANK_KEYS}


def write_ranking(folder, key: str, dataset: str, values: dict, n: int = RANK_IMAGES, k: int = RANK_K) -> None:
    """Store values under ranking_id `key` (atomically: a crash or a full disk never leaves half a
    file under the name)."""
    from .checkpoints import atomic_write
    path = ranking_file(folder, key, dataset, n, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({name: float(values[name]) for name in RANK_KEYS}, indent=1).encode())
