"""Loss terms, per image in nats. Pure functions of tensors.

Loss = reconstruction + beta * KL, where reconstruction = -log p(x|z) summed over pixels and
KL = KL(q(z|x) || N(0, I)) in closed form. At beta = 1, -Loss is the ELBO.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
# The learned pixel variance is held at sigma >= 0.05 (1/20 of the pixel range). Without a floor,
# pixels that are always black let sigma shrink toward 0 and the "NLL" fall without bound: a
# density on [0, 1] can grow as tall as it likes, and the loss stops measuring reconstruction.
X_LOGVAR_MIN = 2 * math.log(0.05)


class LossTerms(NamedTuple):
    loss: torch.Tensor   # scalar: the objective that is minimised (batch mean)
    recon: torch.Tensor  # scalar: mean reconstruction NLL per image
    kl: torch.Tensor     # scalar: mean KL per image (the true KL, before free bits)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per dimension: 1/2 (sigma^2 - log sigma^2 - 1 + mu^2).

    mu, logvar: [B, d] -> [B, d], in nats.
    """
    return 0.5 * (torch.exp(logvar) - logvar - 1.0 + mu.pow(2))


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, summed over dimensions: [B, d] -> [B]."""
    return kl_per_dim(mu, logvar).sum(dim=1)


def recon_nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str = "bernoulli",
              sigma: float = 0.1, x_logvar: Optional[torch.Tensor] = None) -> torch.Tensor:
    """-log p(x|z) summed over pixels: logits, x [B, C, H, W] -> [B] nats.

    bernoulli:        binary cross-entropy with p = sigmoid(logits).
    gaussian:         N(x; sigmoid(logits), sigma^2): (x - m)^2 / (2 sigma^2) + log(2 pi sigma^2) / 2.
    gaussian_learned: the same with a learned per-pixel log-variance x_logvar [C, H, W],
                      floored at X_LOGVAR_MIN (sigma >= 0.05) so the loss stays bounded below.
    """
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "gaussian":
        mean = torch.sigmoid(logits)
        nll = 0.5 * ((x - mean).pow(2) / sigma**2 + math.log(sigma**2) + LOG_2PI)
    elif likelihood == "gaussian_learned":
        if x_logvar is None:
            raise ValueError("likelihood 'gaussian_learned' needs x_logvar")
        mean = torch.sigmoid(logits)
        x_logvar = x_logvar.clamp(min=X_LOGVAR_MIN)
        nll = 0.5 * ((x - mean).pow(2) * torch.exp(-x_logvar) + x_logvar + LOG_2PI)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return nll.flatten(1).sum(dim=1)


def model_nll(model, out, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per image for a model's forward output: [B]."""
    cfg = model.cfg
    return recon_nll(out.logits, x, cfg.likelihood, cfg.gaussian_sigma, model.x_logvar)


def loss_terms(model, out, x: torch.Tensor, beta: float = 1.0, free_bits: float = 0.0) -> LossTerms:
    """Loss = recon + beta * KL, averaged over the batch. The AE has no KL term.

    Free bits: each dimension's batch-mean KL enters the objective as max(KL_i, free_bits),
    so the optimiser gains nothing by pushing a dimension below the floor.
    """
    recon = model_nll(model, out, x).mean()
    if out.logvar is None:
        zero = recon.new_zeros(())
        return LossTerms(recon, recon, zero)
    kl_dims = kl_per_dim(out.mu, out.logvar).mean(dim=0)   # [d]
    kl = kl_dims.sum()
    kl_obj = torch.clamp(kl_dims, min=free_bits).sum() if free_bits > 0 else kl
    return LossTerms(recon + beta * kl_obj, recon, kl)
