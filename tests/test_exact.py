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
from vae_core.metrics import model_log_lik

CKPT = Path(__file__).resolve().parent.parent / "checkpoints"


def linear_gaussian(d_x: int = 5, sigma: float = 0.7, seed: int = 0):
    """p(z) = N(0, I_2), p(x|z) = N(Wz + b, σ² I): then p(x) = N(b, WWᵀ + σ² I) exactly, and the
    posterior is N(Σ Wᵀ(x − b)/σ², Σ) with Σ = (I + WᵀW/σ²)⁻¹."""
    g = np.random.default_rng(seed)
    W, b = g.normal(size=(d_x, 2)), g.normal(size=d_x)
    Wt, bt = torch.as_tensor(W, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)

    def log_lik(x, z):                                     # x [B, d_x], z [S, B, 2] -> [S, B]
        mean = z @ Wt.T + bt
        return (-0.5 * ((x - mean) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)).sum(-1)
    return W, b, sigma, log_lik


def closed_form(W, b, sigma, x):
    from scipy.stats import multivariate_normal
    log_px = multivariate_normal(b, W @ W.T + sigma ** 2 * np.eye(len(b))).logpdf(x)
    cov = np.linalg.inv(np.eye(2) + W.T @ W / sigma ** 2)
    return log_px, cov @ W.T @ (x - b) / sigma ** 2, cov


def test_quadrature_matches_the_linear_gaussian_closed_form():
    W, b, sigma, log_lik = linear_gaussian()
    xs = np.random.default_rng(1).normal(size=(3, 5)) * 2 + b        # a batch of three
    # A deliberately poor q (the prior): the grid must find each posterior on its own.
    r = exact.posterior(torch.as_tensor(xs, dtype=torch.float32), log_lik, np.zeros((3, 2)), np.ones((3, 2)))
    for i, x in enumerate(xs):
        truth, mean, cov = closed_form(W, b, sigma, x)
        assert r["log_px"][i] == pytest.approx(truth, abs=1e-4)
        p = np.exp(r["log_post"][i]) * r["cell"][i]
        assert p.sum() == pytest.approx(1.0, abs=1e-9)
        uu, vv = np.meshgrid(r["u"][i], r["v"][i])
        m = np.array([(p * uu).sum(), (p * vv).sum()])
        c = np.array([[(p * (uu - m[0]) ** 2).sum(), (p * (uu - m[0]) * (vv - m[1])).sum()],
                      [(p * (uu - m[0]) * (vv - m[1])).sum(), (p * (vv - m[1]) ** 2).sum()]])
        assert m == pytest.approx(mean, abs=1e-4)
        assert c == pytest.approx(cov, abs=1e-5)


def test_a_narrow_posterior_far_from_the_prior_is_found():
    """σ = 0.02: the posterior is about 0.01 wide, narrower than the coarse prior grid's cells; the
    fine passes must still land on it and integrate it."""
    W, b, sigma, log_lik = linear_gaussian(d_x=20, sigma=0.02, seed=3)
    x = W @ np.array([2.5, -1.7]) + b
    truth, mean, _ = closed_form(W, b, sigma, x)
    q_sd = np.full((1, 2), 0.01)
    r = exact.posterior(torch.as_tensor(x[None], dtype=torch.float32), log_lik, mean[None] + 0.02, q_sd)
    assert r["log_px"][0] == pytest.approx(truth, abs=1e-3)


def test_the_kl_to_the_posterior_matches_the_gaussian_closed_form():
    W, b, sigma, log_lik = linear_gaussian()
    x = np.random.default_rng(1).normal(size=5) * 2 + b
    truth, mean, cov = closed_form(W, b, sigma, x)
    xt = torch.as_tensor(x[None], dtype=torch.float32)
    # q = N(m, D), D = diag(C): KL(N(m, D) || N(m, C)) = ½ (tr C⁻¹D − 2 + log det C / det D).
    rho = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    kl = exact.kl_q_to_posterior(xt, log_lik, mean[None], np.sqrt(np.diag(cov))[None], [truth])
    assert kl[0] == pytest.approx(0.5 * (2 / (1 - rho ** 2) - 2 + np.log(1 - rho ** 2)), abs=1e-4)
    assert rho ** 2 > 0.01                                     # a real tilt, so the KL is not trivially 0
    # A shifted, wider q: the Gaussian KL formula.
    qm, qs = mean + np.array([0.3, -0.2]), np.array([0.5, 0.8])
    ci = np.linalg.inv(cov)
    ref = 0.5 * (np.trace(ci @ np.diag(qs ** 2)) + (mean - qm) @ ci @ (mean - qm) - 2
                 + np.log(np.linalg.det(cov) / np.prod(qs ** 2)))
    assert exact.kl_q_to_posterior(xt, log_lik, qm[None], qs[None], [truth])[0] == pytest.approx(ref, abs=1e-4)
    # And the ELBO of that q is log p(x) minus it (Gauss–Hermite is exact for this quadratic log p(x|z)).
    assert exact.elbo(xt, log_lik, qm[None], qs[None])[0] == pytest.approx(truth - ref, abs=1e-4)


def test_the_iwae_curve_from_a_pool_is_the_definition():
    log_w = np.log(np.random.default_rng(0).lognormal(0, 1.5, size=4000))
    c = exact.iw_curve(log_w, ks=(1, 10, 1000), shuffles=1)
    assert c[1][0] == pytest.approx(log_w.mean())
    assert c[1000][2] == 4
    blocks = log_w.reshape(4, 1000)
    assert c[1000][0] == pytest.approx(np.mean(np.log(np.exp(blocks).mean(1))))
    assert c[1][0] < c[10][0] < c[1000][0] < np.log(np.exp(log_w).mean()) + 0.5


@pytest.fixture(scope="module")
def shipped():
    model = load_checkpoint(CKPT / "mnist-d2-vae-b1.safetensors").model.eval()
    data = load_exploration("mnist", CKPT / "data")
    return model, [exact.explain(model, data.x[i:i + 1]) for i in range(6)], data


def test_the_bounds_sit_below_the_exact_log_px_and_tighten_with_k(shipped):
    """IWAE_K is a biased-low estimator: E[IWAE_K] ≤ log p(x), with a bias of about
    Var_q[w] / (2K p(x)²) = Var[w/p(x)] / 2K. Its mean over the pool's n independent draws sits
    below the exact value up to that mean's noise (spread / √n); and the ELBO (K = 1) lowest."""
    _, results, _ = shipped
    for r in results:
        iw = r["iw"]
        assert r["elbo"] <= r["log_px"]
        assert r["iw"][1][0] == pytest.approx(r["elbo"], abs=4 * iw[1][1] / np.sqrt(iw[1][2]))
        for k, (mean, spread, n) in iw.items():
            assert mean <= r["log_px"] + 3 * spread / np.sqrt(n) + 1e-3, k
        assert iw[1000][0] >= iw[10][0] >= iw[1][0]
        # Var[w/p(x)] on these images is at most a few hundred, so the bias at K = 1000 is under
        # about 0.5 nat; allow three times the noise of the mean of the pool's four draws on top.
        assert r["log_px"] - iw[1000][0] < 0.5 + 3 * iw[1000][1] / 2


def test_the_elbo_gap_is_the_kl_to_the_true_posterior(shipped):
    _, results, _ = shipped
    for r in results:
        # log p(x) − ELBO = KL(q || p(z|x)): three quadratures on three different grids (the
        # posterior's, q's box, Gauss–Hermite nodes) that share nothing but the decoder.
        assert r["log_px"] - r["elbo"] == pytest.approx(r["kl_post"], abs=0.01)
        assert r["kl_post"] > 0.05                 # a real gap on a real model, not 0 = 0


def test_a_finer_grid_does_not_move_log_px(shipped):
    model, results, data = shipped
    x = data.x[:6]
    mu, sigma = np.stack([r["mu"] for r in results]), np.stack([r["sigma"] for r in results])
    finer = exact.posterior(x, model_log_lik(model), mu, sigma, n=160, passes=3)
    assert finer["log_px"] == pytest.approx([r["log_px"] for r in results], abs=0.005)
    # and the batch gives each image the number it gets alone
    batch = exact.exact_vs_iwae(model, x, k=10, batch=4)
    assert batch["log_px"] == pytest.approx([r["log_px"] for r in results], abs=1e-5)   # batched sums differ by ~2e-6 nats in the last float digits


def test_a_model_that_is_not_a_2d_vae_is_refused():
    for name in ("mnist-d20-vae-b1", "mnist-d2-ae"):
        model = load_checkpoint(CKPT / f"{name}.safetensors").model
        with pytest.raises(ConfigError, match="2-D"):
            exact.explain(model, torch.zeros(1, 1, 28, 28))


@pytest.mark.parametrize("where", ["absolute", "bare name"])
def test_a_ranking_kept_for_a_data_file_is_not_read_back_once_that_file_is_replaced(tmp_path, monkeypatch, where):
    """A dataset given as an .npz path (absolute, or a bare file name in the working folder) is
    named by the path, size and time of change of the file: the values stored for it are read back
    while the file is the same, and not after it is replaced in place (they would describe other
    images)."""
    import os
    from vae_core.exact import RANK_KEYS, ranking_file, read_ranking, write_ranking
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "mine.npz"
    name = str(data) if where == "absolute" else "mine.npz"
    np.savez(data, x=np.zeros((4, 2, 2), np.float32))
    values = {key: -float(i + 1) for i, key in enumerate(RANK_KEYS)}
    write_ranking(tmp_path / "store", "abc", name, values)
    assert str(tmp_path) not in ranking_file(tmp_path / "store", "abc", name).name
    assert read_ranking(tmp_path / "store", "abc", name) == values
    np.savez(data, x=np.ones((5, 2, 2), np.float32))
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))     # a second later, whatever the clock's grain
    assert read_ranking(tmp_path / "store", "abc", name) is None
    assert read_ranking(tmp_path / "store", "abc", "mnist") is None
