"""Metrics: the importance-weighted bound against a model with a known log p(x), KL and
active units against their definitions, k-NN on clusters, prior-sample quality ranges."""
import json
import math

import numpy as np
import pytest
import torch

from vae_core import metrics
from vae_core.config import ModelConfig, TrainConfig
from vae_core.models import build_model
from vae_core.train import evaluate_terms, fit


# ---------------------------------------------------------------- linear Gaussian model

class LinearGaussian:
    """p(z) = N(0, I_d), p(x|z) = N(Wz + b, s^2 I_D), so p(x) = N(b, W W^T + s^2 I).

    W = Q diag(c) with orthonormal columns Q, so the exact posterior is diagonal:
    Sigma = diag(1 / (1 + c^2 / s^2)), mu = Sigma W^T (x - b) / s^2.
    """

    def __init__(self, D=6, d=3, s=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
        self.c = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)[:d]
        self.W = q * self.c
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        self.s = s
        self.D, self.d = D, d

    def sample_x(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.d, generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + self.s * torch.randn(n, self.D, generator=g, dtype=torch.float64)

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s ** 2 * torch.eye(self.D, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        var = 1.0 / (1.0 + self.c ** 2 / self.s ** 2)
        mu = ((x - self.b) @ self.W) / self.s ** 2 * var
        return mu, torch.log(var).expand_as(mu)

    def worse_posterior(self, x):
        mu, logvar = self.posterior(x)
        return mu + 0.3, logvar + 0.5   # shifted and too wide

    def log_lik(self, x, z):
        mean = z @ self.W.T + self.b                       # [S, B, D]
        return torch.distributions.Normal(mean, self.s).log_prob(x).sum(-1)

    def elbo(self, x, mu, logvar):
        """E_q[log p(x|z)] - KL(q || p) in closed form for a diagonal Gaussian q."""
        var = logvar.exp()
        resid = x - mu @ self.W.T - self.b
        trace = (var * (self.W ** 2).sum(0)).sum(-1)
        expected_ll = (-0.5 * self.D * math.log(2 * math.pi * self.s ** 2)
                       - (resid.pow(2).sum(-1) + trace) / (2 * self.s ** 2))
        kl = 0.5 * (var + mu ** 2 - 1 - logvar).sum(-1)
        return expected_ll - kl


@pytest.fixture(scope="module")
def lg():
    model = LinearGaussian()
    return model, model.sample_x(256)


@pytest.mark.parametrize("k", [1, 7, 100])
def test_iw_exact_posterior_gives_log_px_for_any_k(lg, k):
    model, x = lg
    g = torch.Generator().manual_seed(k)
    est = metrics.iw_log_px_core(x, model.posterior, model.log_lik, k, sample_chunk=3, generator=g)
    assert est.shape == (256,)
    torch.testing.assert_close(est, model.log_px(x), rtol=0, atol=1e-9)


def test_iw_worse_posterior_is_below_and_rises_with_k(lg):
    model, x = lg
    truth = model.log_px(x).mean().item()
    means = []
    for k in [1, 10, 100, 1000]:
        g = torch.Generator().manual_seed(0)
        est = metrics.iw_log_px_core(x, model.worse_posterior, model.log_lik, k, sample_chunk=256, generator=g)
        means.append(est.mean().item())
    assert all(a < b for a, b in zip(means, means[1:])), means
    assert means[-1] < truth + 0.01, (means, truth)
    # The gap to log p(x) shrinks by a lot, not only a little.
    assert truth - means[-1] < 0.25 * (truth - means[0]), (means, truth)


def test_iw_k1_mean_is_the_elbo(lg):
    model, x = lg
    reps = 200
    xr = x.repeat(reps, 1)                                   # [reps * B, D]
    g = torch.Generator().manual_seed(3)
    est = metrics.iw_log_px_core(xr, model.worse_posterior, model.log_lik, 1, generator=g)
    elbo = model.elbo(x, *model.worse_posterior(x))
    diff = est.view(reps, -1) - elbo                        # per draw: estimate - ELBO
    se = diff.std() / math.sqrt(diff.numel())
    assert abs(diff.mean().item()) < 4 * se.item(), (diff.mean().item(), se.item())
    # and the ELBO is a real lower bound here, so the check is not vacuous
    assert (elbo < model.log_px(x)).all()


def test_iw_k_must_be_positive(lg):
    model, x = lg
    with pytest.raises(ValueError):
        metrics.iw_log_px_core(x, model.posterior, model.log_lik, 0)


# ---------------------------------------------------------------- models on digits

@pytest.fixture(scope="module")
def tiny_models(digits):
    train, test = digits
    out = {}
    for kind in ("vae", "ae"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind=kind, image_shape=(1, 8, 8), latent_dim=4, hidden=(64,)))
        fit(model, train, None, TrainConfig(epochs=8, batch_size=64, lr=3e-3, device="cpu"))
        out[kind] = model
    return out


def test_kl_per_dimension_sums_to_the_kl_term(tiny_models, digits):
    model = tiny_models["vae"]
    test = digits[1]
    per_dim = metrics.kl_per_dimension(model, test, batch_size=77)
    assert per_dim.shape == (4,)
    assert (per_dim >= 0).all()
    assert per_dim.sum() == pytest.approx(evaluate_terms(model, test)["kl"], rel=1e-5)
    assert metrics.kl_per_dimension(tiny_models["ae"], test) is None


def test_active_units_on_constructed_model(digits):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae", image_shape=(1, 8, 8), latent_dim=4, hidden=(32,)))
    with torch.no_grad():
        model.head.weight[:2] = 0.0          # mu_0, mu_1 ignore x: constant, so inactive
        model.head.bias[:2] = 0.7
        model.head.weight[2:4] *= 50.0       # mu_2, mu_3 vary strongly with x
    count, var = metrics.active_units(model, digits[1])
    assert count == 2
    assert var.shape == (4,)
    np.testing.assert_allclose(var[:2], 0.0, atol=1e-10)
    assert (var[2:] > 0.01).all()
    # the threshold is respected: above every variance, nothing is active
    assert metrics.active_units(model, digits[1], threshold=float(var.max()) + 1)[0] == 0


def test_active_units_for_the_ae_uses_codes(tiny_models, digits):
    count, var = metrics.active_units(tiny_models["ae"], digits[1])
    codes = metrics.embed_data(tiny_models["ae"], digits[1])
    np.testing.assert_allclose(var, codes.var(0), rtol=1e-4)
    assert count == int((codes.var(0) > 0.01).sum())


def test_iw_log_px_on_a_vae_beats_the_elbo_and_is_seeded(tiny_models, digits):
    model = tiny_models["vae"]
    test = digits[1]
    # one-sample ELBO estimates are noisy (sd ~0.1 nats here): average ten of them
    elbo = np.mean([-(t["recon"] + t["kl"]) for t in (evaluate_terms(model, test, seed=s) for s in range(10))])
    a = metrics.iw_log_px(model, test, k=64, max_rows=2000, seed=1)
    b = metrics.iw_log_px(model, test, k=64, max_rows=2000, seed=1)
    assert a == b
    assert a > elbo
    assert metrics.iw_log_px(tiny_models["ae"], test, k=4) is None


def test_iw_log_px_does_not_depend_on_how_it_is_batched(tiny_models, digits):
    """Images a few at a time and samples in small chunks estimate the same log p(x) as one big
    batch: only the Monte Carlo noise differs. (Tight bounds on purpose: here K = 8 instead of 256,
    what a chunk that dropped samples would give, already moves the mean by 0.03 nats and each
    image by a median 0.13.)"""
    model, test = tiny_models["vae"], digits[1]
    one_go = metrics.iw_log_px_per_image(model, test, k=256, batch_size=len(test), max_rows=10**7, seed=2)
    pieces = metrics.iw_log_px_per_image(model, test, k=256, batch_size=7, max_rows=7 * 30, seed=3)
    assert one_go.shape == pieces.shape == (len(test),)
    assert abs(one_go.mean() - pieces.mean()) < 0.01
    # Per image too: the same image gets the same estimate whichever batch it sat in.
    assert np.corrcoef(one_go, pieces)[0, 1] > 0.99
    assert np.median(np.abs(one_go - pieces)) < 0.08


def test_knn_on_separable_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 5)) * 20
    y = rng.integers(0, 4, 400)
    codes = centres[y] + rng.normal(size=(400, 5))
    assert metrics.knn_accuracy(codes[:300], y[:300], codes[300:], y[300:], k=5) == 1.0
    shuffled = rng.permutation(y)            # labels unrelated to the codes: near chance
    assert metrics.knn_accuracy(codes[:300], shuffled[:300], codes[300:], shuffled[300:]) < 0.5


@pytest.fixture(scope="module")
def digit_classifier(digits):
    return metrics.train_classifier(digits[0], epochs=15, hidden=64, seed=0)


def test_classifier_learns_and_round_trips(digit_classifier, digits, tmp_path):
    assert metrics.classifier_accuracy(digit_classifier, digits[1]) > 0.85
    path = metrics.save_classifier(digit_classifier, tmp_path / "clf.safetensors", {"dataset": "digits"})
    loaded = metrics.load_classifier(path)
    x = digits[1].x[:20]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), digit_classifier(x))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a file")
    with pytest.raises(metrics.CheckpointError):
        metrics.load_classifier(bad)


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_prior_sample_quality_ranges(tiny_models, digit_classifier, kind):
    q = metrics.prior_sample_quality(tiny_models[kind], digit_classifier, n=300, seed=0)
    assert 0.1 <= q["prior_confidence"] <= 1.0          # max of 10 probabilities is at least 1/10
    assert 0.0 <= q["prior_confident_frac"] <= 1.0
    assert len(q["prior_class_hist"]) == 10
    assert sum(q["prior_class_hist"]) == pytest.approx(1.0)
    assert 0.0 <= q["prior_class_entropy"] <= math.log(10) + 1e-9
    assert q["prior_class_entropy_norm"] == pytest.approx(q["prior_class_entropy"] / math.log(10))
    assert 1.0 - 1e-9 <= q["prior_classifier_score"] <= 10.0 + 1e-9
    assert q == metrics.prior_sample_quality(tiny_models[kind], digit_classifier, n=300, seed=0)


def test_classifier_score_is_high_for_real_digits_and_low_for_one_repeated_image(digit_classifier, digits):
    """The score of real images (every class, confidently) beats a 'sampler' that always gives one image."""
    class Fixed(torch.nn.Module):
        def __init__(self, images):
            super().__init__()
            self.cfg = ModelConfig(kind="ae", image_shape=(1, 8, 8), latent_dim=1, hidden=(4,))
            self.images = images
            self.w = torch.nn.Parameter(torch.zeros(1))

        def decode(self, z):                     # logits whose sigmoid is the stored images
            x = self.images[torch.arange(len(z)) % len(self.images)].clamp(1e-4, 1 - 1e-4)
            return torch.log(x) - torch.log1p(-x)

    real = metrics.prior_sample_quality(Fixed(digits[1].x), digit_classifier, n=300)
    one = metrics.prior_sample_quality(Fixed(digits[1].x[:1]), digit_classifier, n=300)
    assert real["prior_classifier_score"] > 2.5      # 3.4 with this small classifier
    assert one["prior_classifier_score"] < 1.5
    assert one["prior_class_entropy"] == 0.0


def test_prior_sample_quality_rejects_other_image_shapes(digit_classifier):
    model = build_model(ModelConfig(kind="vae", image_shape=(1, 28, 28), latent_dim=2, hidden=(16,)))
    with pytest.raises(metrics.ConfigError, match="28"):
        metrics.prior_sample_quality(model, digit_classifier, n=10)


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_evaluate_collects_json_numbers(tiny_models, digit_classifier, digits, kind):
    train, test = digits
    out = metrics.evaluate(tiny_models[kind], test, train=train, iw_samples=20,
                           classifier=digit_classifier, binarize=True, prior_n=100)
    json.dumps(out)                                   # plain numbers only
    assert out["active_units"] <= 4 and len(out["active_var"]) == 4
    assert 0.0 <= out["knn_acc"] <= 1.0 and out["knn_acc"] > 0.5
    assert out["knn_k"] == 5 and out["knn_train"] == len(train)   # digits: fewer than 10,000
    assert "prior_confidence" in out
    if kind == "vae":
        assert out["elbo"] == pytest.approx(-(out["recon"] + out["kl"]))
        assert out["log_px"] > out["elbo"] - 1.0
        assert sum(out["kl_per_dim"]) == pytest.approx(out["kl"], rel=1e-4)
        assert out["iw_samples"] == 20
    else:
        assert out["log_px"] is None and out["elbo"] is None and out["kl_per_dim"] is None
        assert out["kl"] == 0.0


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian_learned"])
def test_model_log_lik_matches_recon_nll(likelihood):
    from vae_core.losses import recon_nll
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae", image_shape=(1, 8, 8), latent_dim=3, hidden=(16,),
                                    likelihood=likelihood)).eval()
    x = torch.rand(5, 1, 8, 8)                          # grey levels, not only 0/1
    z = 3 * torch.randn(4, 5, 3)                        # [S, B, d], large enough for big logits
    with torch.no_grad():
        got = metrics.model_log_lik(model)(x, z)
        want = torch.stack([-recon_nll(model.decode(z[i]), x, likelihood, model.cfg.gaussian_sigma,
                                       model.x_logvar) for i in range(4)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("d, n, k", [(2, 800, 5), (20, 1500, 5), (3, 200, 1), (8, 600, 7)])
def test_knn_accuracy_agrees_with_scikit_learn(d, n, k):
    """The brute-force k-NN gives scikit-learn's KNeighborsClassifier's score (ties to the smallest label)."""
    from sklearn.neighbors import KNeighborsClassifier
    from vae_core.metrics import knn_accuracy
    rng = np.random.default_rng(d + n)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    ya, yb = rng.integers(0, 4, n), rng.integers(0, 4, n)
    a[:, 0] += ya
    b[:, 0] += yb
    assert knn_accuracy(a, ya, b, yb, k=k) == KNeighborsClassifier(k).fit(a, ya).score(b, yb)
