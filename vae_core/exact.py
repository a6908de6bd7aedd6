"""The true posterior and the exact log p(x) of a model with a 2-D latent space, by quadrature.

With two latent dimensions the evidence is a 2-D integral that a grid computes to any accuracy:

    log p(x) = log ∫ p(x|z) p(z) dz  ≈  logsumexp_ij [log p(x|z_ij) + log p(z_ij)] + log(Δu Δv),
    p(z|x)   = p(x|z) p(z) / p(x)    (the true posterior, on the same grid).

The ELBO falls short of log p(x) by exactly KL(q(z|x) || p(z|x)), and the importance-weighted
bound IWAE_K = E[log 1/K Σ_k p(x, z_k)/q(z_k|x)] rises from the ELBO (K = 1) towards log p(x).
Here all three are computed for one image, so a class can watch the bound tighten.

A grid point is only as good as the grid: the first pass covers the prior's ±6 box and q(z|x)'s
±8σ box, the second a fine grid over where the first found the mass (log joint within 40 nats of
its peak). tests/test_exact.py checks it against a linear-Gaussian decoder's closed form.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from .errors import ConfigError
from .metrics import LOG_2PI, log_normal_std

LogLik = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (x [1, ...], z [S, 1, 2]) -> [S, 1]


def _log_joint(x: torch.Tensor, log_lik: LogLik, u: np.ndarray, v: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """log p(x|z) + log p(z) on the grid u × v for one image x [1, ...]: [len(v), len(u)] (rows: v)."""
    uu, vv = np.meshgrid(u, v)
    z = torch.as_tensor(np.stack([uu.ravel(), vv.ravel()], axis=1), dtype=torch.float32)
    out = []
    with torch.no_grad():
        for start in range(0, len(z), chunk):
            zc = z[start:start + chunk].unsqueeze(1)                     # [S, 1, 2]
            out.append((log_lik(x, zc)[:, 0] + log_normal_std(zc[:, 0])).double())
    return torch.cat(out).numpy().reshape(len(v), len(u))


def posterior(x: torch.Tensor, log_lik: LogLik, mu: np.ndarray, sigma: np.ndarray,
              n: int = 161, prior_box: float = 6.0, q_sds: float = 8.0, margin: float = 40.0) -> dict:
    """The true posterior of one image x [1, C, H, W] on a grid, and log p(x).

    mu, sigma [2]: q(z|x), used only to place the first grid. Returns u [n], v [n] (the fine
    grid's axes), log_post [n, n] (log p(z|x), rows along v), log_px (nats) and cell (Δu Δv).
    """
    if np.asarray(mu).shape != (2,):
        raise ConfigError("the exact posterior needs a model with a 2-D latent space")
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    lo = np.minimum(-prior_box, mu - q_sds * sigma)
    hi = np.maximum(prior_box, mu + q_sds * sigma)
    u, v = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    coarse = _log_joint(x, log_lik, u, v)
    rows, cols = np.nonzero(coarse >= coarse.max() - margin)
    du, dv = u[1] - u[0], v[1] - v[0]
    lo = np.array([u[cols.min()] - 2 * du, v[rows.min()] - 2 * dv])
    hi = np.array([u[cols.max()] + 2 * du, v[rows.max()] + 2 * dv])
    u, v = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    fine = _log_joint(x, log_lik, u, v)
    cell = (u[1] - u[0]) * (v[1] - v[0])
    m = fine.max()
    log_px = float(m + math.log(np.exp(fine - m).sum()) + math.log(cell))
    return {"u": u, "v": v, "log_post": fine - log_px, "log_px": log_px, "cell": float(cell)}


def log_q(u: np.ndarray, v: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log q(z|x) of a diagonal Gaussian on the grid u × v: [len(v), len(u)]."""
    a = (u[None, :] - mu[0]) / sigma[0]
    b = (v[:, None] - mu[1]) / sigma[1]
    return -0.5 * (a ** 2 + b ** 2) - np.log(sigma).sum() - LOG_2PI


def kl_q_to_posterior(mu: np.ndarray, sigma: np.ndarray, x: torch.Tensor, log_lik: LogLik, log_px: float,
                      n: int = 161, sds: float = 6.0) -> float:
    """KL(q(z|x) || p(z|x)) = E_q[log q(z|x) − log p(x|z) − log p(z)] + log p(x), by quadrature on
    a grid over q's own ±`sds`σ box (where q has its mass): nats."""
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    u = np.linspace(mu[0] - sds * sigma[0], mu[0] + sds * sigma[0], n)
    v = np.linspace(mu[1] - sds * sigma[1], mu[1] + sds * sigma[1], n)
    lq = log_q(u, v, mu, sigma)
    w = np.exp(lq)
    w /= w.sum()                                    # the grid's weights of q
    return float((w * (lq - _log_joint(x, log_lik, u, v))).sum() + log_px)


def iw_curve(x: torch.Tensor, log_lik: LogLik, mu: np.ndarray, sigma: np.ndarray, ks=(1, 10, 100, 1000),
             repeats: int = 20, generator: Optional[torch.Generator] = None) -> dict:
    """The importance-weighted bound IWAE_K = log 1/K Σ_k p(x|z_k)p(z_k)/q(z_k|x), z_k ~ q, for
    each K in ks. One pool of repeats × max(ks) samples is cut into as many groups of K as it
    holds (20,000 groups of 1, …, 20 groups of 1,000): the mean over the groups estimates the
    bound (an expectation; one group is noisy at small K), IWAE_1 averages to the ELBO.
    Returns {K: (mean, std over the groups)}."""
    ks = sorted(int(k) for k in ks)
    kmax = ks[-1]
    mu_t = torch.as_tensor(mu, dtype=torch.float32)
    sd_t = torch.as_tensor(sigma, dtype=torch.float32)
    with torch.no_grad():
        eps = torch.randn((repeats * kmax, 1, 2), generator=generator)
        z = mu_t + eps * sd_t
        lq = -0.5 * (eps.pow(2) + 2 * sd_t.log() + LOG_2PI).sum(dim=-1)
        lw = []
        for start in range(0, len(z), 8192):
            zc = z[start:start + 8192]
            lw.append((log_lik(x, zc) + log_normal_std(zc) - lq[start:start + 8192]).double())
        lw = torch.cat(lw)[:, 0]
    out = {}
    for k in ks:
        groups = len(lw) // k
        est = torch.logsumexp(lw[:groups * k].reshape(groups, k), dim=1) - math.log(k)
        out[k] = (float(est.mean()), float(est.std()) if groups > 1 else 0.0)
    return out


def elbo(x: torch.Tensor, log_lik: LogLik, mu: np.ndarray, sigma: np.ndarray, samples: int = 2000,
         generator: Optional[torch.Generator] = None) -> float:
    """The ELBO as the training loss computes it at β = 1: a Monte-Carlo reconstruction term
    E_q[log p(x|z)] minus the closed-form KL(q(z|x) || N(0, I)) = ½ Σ (σ² − log σ² − 1 + μ²)."""
    mu_t = torch.as_tensor(mu, dtype=torch.float32)
    sd_t = torch.as_tensor(sigma, dtype=torch.float32)
    with torch.no_grad():
        z = mu_t + torch.randn((samples, 1, 2), generator=generator) * sd_t
        rec = torch.cat([log_lik(x, z[s:s + 8192]).double() for s in range(0, samples, 8192)]).mean()
    s2 = np.asarray(sigma, np.float64) ** 2
    kl = 0.5 * float((s2 - np.log(s2) - 1 + np.asarray(mu, np.float64) ** 2).sum())
    return float(rec) - kl


def explain(model, x: torch.Tensor, ks=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), repeats: int = 20,
            seed: int = 0) -> dict:
    """Everything the True posterior page shows for one image x [1, C, H, W] of a 2-D VAE: q's
    mean and σ, the true posterior on a grid, log p(x), the ELBO, KL(q || p(z|x)) by quadrature
    and the IWAE curve over ks."""
    from .metrics import model_log_lik
    if model.cfg.kind != "vae" or model.cfg.latent_dim != 2:
        raise ConfigError("the exact posterior needs a VAE with a 2-D latent space: choose a 2-D VAE")
    model.eval()
    log_lik = model_log_lik(model)
    with torch.no_grad():
        m, lv = model.encode(x)
    mu, sigma = m[0].double().numpy(), torch.exp(0.5 * lv[0]).double().numpy()
    post = posterior(x, log_lik, mu, sigma)
    gen = torch.Generator().manual_seed(seed)
    return {"mu": mu, "sigma": sigma, **post,
            "elbo": elbo(x, log_lik, mu, sigma, generator=gen),
            "kl_post": kl_q_to_posterior(mu, sigma, x, log_lik, post["log_px"]),
            "iw": iw_curve(x, log_lik, mu, sigma, ks, repeats, generator=gen)}
