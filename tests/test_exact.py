"""The quadrature's log p(x) and posterior against a closed form, and the bounds around it on a
shipped 2-D VAE: ELBO ≤ IWAE_K ≤ log p(x), IWAE_1000 close to it, and the ELBO's gap equal to
KL(q || p(z|x))."""
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_core import exact
from vae_core.checkpoints import load_checkpoint
from vae_core.data import load_exploration
from vae_core.errors import ConfigError

CKPT = Path(__file__).resolve().parent.parent / "checkpoints"


def linear_gaussian(d_x: int = 5, sigma: float = 0.7, seed: int = 0):
    """p(z) = N(0, I_2), p(x|z) = N(Wz + b, σ² I): then p(x) = N(b, WWᵀ + σ² I) exactly, and the
    posterior is N(Σ Wᵀ(x − b)/σ², Σ) with Σ = (I + WᵀW/σ²)⁻¹."""
    g = np.random.default_rng(seed)
    W, b = g.normal(size=(d_x, 2)), g.normal(size=d_x)
    Wt, bt = torch.as_tensor(W, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)

    def log_lik(x, z):                                     # x [1, d_x], z [S, 1, 2] -> [S, 1]
        mean = z @ Wt.T + bt
        return (-0.5 * ((x - mean) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)).sum(-1)
    return W, b, sigma, log_lik


def test_quadrature_matches_the_linear_gaussian_closed_form():
    from scipy.stats import multivariate_normal
    W, b, sigma, log_lik = linear_gaussian()
    x = np.random.default_rng(1).normal(size=5) * 2 + b
    truth = multivariate_normal(b, W @ W.T + sigma ** 2 * np.eye(5)).logpdf(x)
    cov = np.linalg.inv(np.eye(2) + W.T @ W / sigma ** 2)
    mean = cov @ W.T @ (x - b) / sigma ** 2
    # A deliberately poor q (the prior): the grid must find the posterior on its own.
    r = exact.posterior(torch.as_tensor(x[None], dtype=torch.float32), log_lik, np.zeros(2), np.ones(2))
    assert r["log_px"] == pytest.approx(truth, abs=1e-4)
    p = np.exp(r["log_post"]) * r["cell"]
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    uu, vv = np.meshgrid(r["u"], r["v"])
    m = np.array([(p * uu).sum(), (p * vv).sum()])
    c = np.array([[(p * (uu - m[0]) ** 2).sum(), (p * (uu - m[0]) * (vv - m[1])).sum()],
                  [(p * (uu - m[0]) * (vv - m[1])).sum(), (p * (vv - m[1]) ** 2).sum()]])
    assert m == pytest.approx(mean, abs=1e-4)
    assert c == pytest.approx(cov, abs=1e-4)
    # With q equal to the true posterior (diagonal here only if cov is), KL(q || p(z|x)) is 0.
    kl = exact.kl_q_to_posterior(mean, np.sqrt(np.diag(cov)), torch.as_tensor(x[None], dtype=torch.float32),
                                 log_lik, r["log_px"])
    rho = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    # KL(N(m, D) || N(m, C)) with D = diag(C): ½ (tr C⁻¹D − 2 + log det C / det D)
    assert kl == pytest.approx(0.5 * (2 / (1 - rho ** 2) - 2 + np.log(1 - rho ** 2)), abs=1e-3)


@pytest.fixture(scope="module")
def shipped():
    model = load_checkpoint(CKPT / "mnist-d2-vae-b1.safetensors").model.eval()
    data = load_exploration("mnist", CKPT / "data")
    return model, [exact.explain(model, data.x[i:i + 1], ks=(1, 10, 100, 1000), repeats=30) for i in range(6)], data


def test_the_bounds_sit_below_the_exact_log_px_and_tighten_with_k(shipped):
    _, results, _ = shipped
    for r in results:
        iw = {k: m for k, (m, _) in r["iw"].items()}
        sd = {k: s for k, (_, s) in r["iw"].items()}
        assert r["elbo"] <= r["log_px"] + 0.05
        # IWAE_K is biased low: its mean over 30 draws lies below log p(x) up to its noise.
        for k in iw:
            assert iw[k] <= r["log_px"] + 3 * sd[k] / np.sqrt(30) + 0.02
        assert iw[1000] >= iw[1] - 0.05
        # At K = 1000 the bias is small: under about Var(w)/(2K p(x)²), a nat or so on these images.
        assert r["log_px"] - iw[1000] < 1.5


def test_the_elbo_gap_is_the_kl_to_the_true_posterior(shipped):
    _, results, _ = shipped
    for r in results:
        # log p(x) − ELBO = KL(q || p(z|x)); the ELBO is Monte Carlo (2,000 samples), hence the tolerance.
        assert r["log_px"] - r["elbo"] == pytest.approx(r["kl_post"], abs=0.15)
        assert r["kl_post"] >= 0


def test_a_finer_grid_does_not_move_log_px(shipped):
    from vae_core.metrics import model_log_lik
    model, results, data = shipped
    r = results[3]
    finer = exact.posterior(data.x[3:4], model_log_lik(model), r["mu"], r["sigma"], n=321)
    assert finer["log_px"] == pytest.approx(r["log_px"], abs=0.01)


def test_a_model_that_is_not_a_2d_vae_is_refused():
    model = load_checkpoint(CKPT / "mnist-d20-vae-b1.safetensors").model
    with pytest.raises(ConfigError, match="2-D"):
        exact.explain(model, torch.zeros(1, 1, 28, 28))
