"""Loss terms against torch.distributions: KL, the three reconstruction NLLs, their sum."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence as td_kl

from vae_core import ForwardOutput, ModelConfig, build_model
from vae_core.losses import kl_divergence, kl_per_dim, loss_terms, model_nll, recon_nll

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def test_kl_per_dim_matches_torch_distributions(gen):
    mu = torch.randn(16, 7, generator=gen, dtype=torch.float64) * 3
    logvar = torch.randn(16, 7, generator=gen, dtype=torch.float64) * 2
    ref = td_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    assert torch.allclose(kl_per_dim(mu, logvar), ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(kl_divergence(mu, logvar), ref.sum(dim=1), rtol=1e-10, atol=1e-12)
    assert kl_divergence(mu, logvar).shape == (16,)


def test_kl_is_zero_only_at_the_prior():
    mu = torch.zeros(3, 4)
    logvar = torch.zeros(3, 4)
    assert torch.equal(kl_divergence(mu, logvar), torch.zeros(3))
    assert (kl_divergence(mu + 0.1, logvar) > 0).all()
    assert (kl_divergence(mu, logvar - 0.1) > 0).all()


def test_kl_float32_agrees_with_float64_reference(gen):
    mu = torch.randn(32, 20, generator=gen)
    logvar = torch.randn(32, 20, generator=gen)
    ref = td_kl(Normal(mu.double(), torch.exp(0.5 * logvar.double())), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl_divergence(mu, logvar).double(), ref, rtol=1e-5, atol=1e-5)


def _batch(gen, shape=(4, 1, 5, 6)):
    logits = torch.randn(*shape, generator=gen, dtype=torch.float64) * 4
    x = torch.rand(*shape, generator=gen, dtype=torch.float64)
    return logits, x


def test_bernoulli_nll_matches_torch_distributions(gen):
    logits, x = _batch(gen)
    xb = (x > 0.5).double()
    for target in (xb, x):   # binary pixels, and grey levels as a continuous relaxation
        ref = -Bernoulli(logits=logits, validate_args=False).log_prob(target).flatten(1).sum(1)
        got = recon_nll(logits, target, "bernoulli")
        assert got.shape == (4,)
        assert torch.allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_bernoulli_nll_is_stable_for_huge_logits():
    logits = torch.tensor([[[[80.0, -80.0]]]])
    x = torch.tensor([[[[1.0, 0.0]]]])
    nll = recon_nll(logits, x, "bernoulli")
    assert torch.isfinite(nll).all() and nll.item() < 1e-20


@pytest.mark.parametrize("sigma", [0.05, 0.1, 1.0])
def test_gaussian_fixed_sigma_matches_torch_distributions(gen, sigma):
    logits, x = _batch(gen)
    ref = -Normal(torch.sigmoid(logits), sigma).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(recon_nll(logits, x, "gaussian", sigma=sigma), ref, rtol=1e-10, atol=1e-9)


def test_gaussian_learned_variance_matches_torch_distributions(gen):
    logits, x = _batch(gen)
    x_logvar = torch.randn(1, 5, 6, generator=gen, dtype=torch.float64)
    ref = -Normal(torch.sigmoid(logits), torch.exp(0.5 * x_logvar)).log_prob(x).flatten(1).sum(1)
    got = recon_nll(logits, x, "gaussian_learned", x_logvar=x_logvar)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-9)


def test_learned_variance_is_floored_so_the_loss_stays_bounded():
    """A pixel that is always 0 reconstructed exactly would let sigma -> 0 and -log p -> -inf."""
    from vae_core.losses import X_LOGVAR_MIN
    logits = torch.full((1, 1, 2, 2), -30.0, dtype=torch.float64)   # mean ~ 0 everywhere
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    at_floor = recon_nll(logits, x, "gaussian_learned", x_logvar=torch.full((1, 2, 2), X_LOGVAR_MIN,
                                                                             dtype=torch.float64))
    below = torch.full((1, 2, 2), -40.0, dtype=torch.float64, requires_grad=True)
    got = recon_nll(logits, x, "gaussian_learned", x_logvar=below)
    assert torch.allclose(got, at_floor)
    assert got.item() == pytest.approx(4 * 0.5 * (X_LOGVAR_MIN + math.log(2 * math.pi)), rel=1e-9)
    got.sum().backward()   # no pull further down once at the floor
    assert torch.count_nonzero(below.grad) == 0
    assert math.exp(0.5 * X_LOGVAR_MIN) == pytest.approx(0.05)


def test_recon_nll_refuses_unknown_or_incomplete_likelihoods(gen):
    logits, x = _batch(gen)
    with pytest.raises(ValueError, match="x_logvar"):
        recon_nll(logits, x, "gaussian_learned")
    with pytest.raises(ValueError, match="laplace"):
        recon_nll(logits, x, "laplace")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian_learned"])
def test_model_nll_uses_the_models_likelihood(likelihood):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae", image_shape=(1, 8, 8), latent_dim=3, hidden=(16,),
                                    likelihood=likelihood, gaussian_sigma=0.3))
    if model.x_logvar is not None:
        with torch.no_grad():
            model.x_logvar.copy_(torch.linspace(-3, 1, 64).view(1, 8, 8))
    x = torch.rand(5, 1, 8, 8)
    out = model(x)
    mean = torch.sigmoid(out.logits)
    if likelihood == "bernoulli":
        ref = -Bernoulli(logits=out.logits, validate_args=False).log_prob(x)
    elif likelihood == "gaussian":
        ref = -Normal(mean, 0.3).log_prob(x)
    else:
        ref = -Normal(mean, torch.exp(0.5 * model.x_logvar)).log_prob(x)
    assert torch.allclose(model_nll(model, out, x), ref.flatten(1).sum(1), rtol=1e-5, atol=1e-4)


def _vae_out(seed=0, d=4, b=6):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind="vae", image_shape=(1, 8, 8), latent_dim=d, hidden=(16,)))
    x = torch.rand(b, 1, 8, 8)
    return model, model(x), x


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_loss_is_recon_plus_beta_kl(beta):
    model, out, x = _vae_out()
    t = loss_terms(model, out, x, beta=beta)
    recon = -Bernoulli(logits=out.logits, validate_args=False).log_prob(x).flatten(1).sum(1).mean()
    kl = td_kl(Normal(out.mu, torch.exp(0.5 * out.logvar)), Normal(0.0, 1.0)).sum(1).mean()
    assert torch.allclose(t.recon, recon, rtol=1e-5)
    assert torch.allclose(t.kl, kl, rtol=1e-5)
    assert torch.allclose(t.loss, recon + beta * kl, rtol=1e-5)
    assert t.loss.shape == t.recon.shape == t.kl.shape == ()


def test_free_bits_changes_the_objective_but_not_the_reported_kl():
    model, out, x = _vae_out()
    plain = loss_terms(model, out, x, beta=2.0)
    kl_dims = kl_per_dim(out.mu, out.logvar).mean(0).detach()
    floor = float(kl_dims.max()) + 1.0   # above every dimension: all are lifted to the floor
    fb = loss_terms(model, out, x, beta=2.0, free_bits=floor)
    assert torch.equal(fb.kl, plain.kl)
    assert torch.equal(fb.recon, plain.recon)
    assert torch.allclose(fb.loss, plain.recon + 2.0 * floor * kl_dims.numel(), rtol=1e-6)
    assert fb.loss > plain.loss
    # A floor between dimensions lifts only those below it.
    mid = float(kl_dims.median())
    part = loss_terms(model, out, x, beta=1.0, free_bits=mid)
    assert torch.allclose(part.loss, plain.recon + torch.clamp(kl_dims, min=mid).sum(), rtol=1e-6)


def test_free_bits_removes_the_kl_gradient_below_the_floor():
    torch.manual_seed(0)
    mu = (torch.randn(8, 3) * 0.1).requires_grad_()
    logvar = (torch.randn(8, 3) * 0.1).requires_grad_()
    x = torch.rand(8, 1, 2, 2)
    logits = torch.randn(8, 1, 2, 2)   # independent of mu and logvar: only the KL term reaches them

    class M:
        cfg = ModelConfig(kind="vae", image_shape=(1, 2, 2), latent_dim=3, hidden=(4,))
        x_logvar = None

    out = ForwardOutput(logits, mu, logvar, mu)
    loss_terms(M, out, x, beta=1.0, free_bits=10.0).loss.backward()
    assert torch.equal(mu.grad, torch.zeros_like(mu)) and torch.equal(logvar.grad, torch.zeros_like(logvar))
    mu.grad = logvar.grad = None
    loss_terms(M, out, x, beta=1.0, free_bits=0.0).loss.backward()
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


def test_ae_has_zero_kl_whatever_beta():
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="ae", image_shape=(1, 8, 8), latent_dim=4, hidden=(16,)))
    x = torch.rand(6, 1, 8, 8)
    out = model(x)
    for beta, fb in [(1.0, 0.0), (10.0, 3.0)]:
        t = loss_terms(model, out, x, beta=beta, free_bits=fb)
        assert t.kl.item() == 0.0
        assert torch.equal(t.loss, t.recon)
    assert math.isclose(t.recon.item(), recon_nll(out.logits, x).mean().item(), rel_tol=1e-6)
