"""Every claim a page's caption makes about the shipped models, held against those models.

The captions are computed (explorer.claims); these tests check that what they compute is what the
sentence says, and that the fixed sentences the pages still carry (the AE's 2-D samples repeat a
few digits, its 20-D samples are smudges, 7 → 3 shows the AE's path leaving its codes, a VAE's
codes stay at the prior's scale) hold for the models shipped with the app.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from explorer import claims  # noqa: E402
from vae_core import latent, metrics  # noqa: E402
from vae_core.checkpoints import load_checkpoint  # noqa: E402
from vae_core.data import load_exploration  # noqa: E402

CKPT = REPO / "checkpoints"
N = 2000                       # the codes the pages use


@pytest.fixture(scope="module")
def data():
    return load_exploration("mnist", CKPT / "data")


@pytest.fixture(scope="module")
def clf():
    return metrics.load_classifier(CKPT / "classifiers" / "mnist-classifier.safetensors")


_MODELS: dict = {}


def model(name: str):
    if name not in _MODELS:
        _MODELS[name] = load_checkpoint(CKPT / f"{name}.safetensors").model.eval()
    return _MODELS[name]


def codes(name: str, data) -> tuple:
    mu, logvar = latent.encode_data(model(name), data.x[:N])
    return mu, None if logvar is None else np.exp(0.5 * logvar)


def judged(clf, images: np.ndarray) -> dict:
    with torch.no_grad():
        p = torch.softmax(clf(torch.as_tensor(images, dtype=torch.float32)), dim=1).numpy()
    return claims.judgement(p)


def test_the_prior_fit_caption_states_the_fraction_inside_and_the_total_variance(data):
    mu, sigma = codes("mnist-d2-vae-b1", data)
    fit = claims.prior_fit(mu, sigma)
    assert fit["inside_2sigma"] == pytest.approx(np.mean(np.hypot(mu[:, 0], mu[:, 1]) <= 2))
    # The numbers for this model: about a quarter of the means outside the 2σ circle.
    assert 0.6 < fit["inside_2sigma"] < 0.8
    text = claims.prior_fit_caption(fit)
    assert f"{fit['inside_2sigma']:.0%}" in text and "fewer than the 86%" in text
    # "the codes of all images together": samples z = μ + σε of every image have, per axis, the
    # variance of the means plus the mean σ² (law of total variance).
    rng = np.random.default_rng(0)
    z = np.repeat(mu, 20, 0) + np.repeat(sigma, 20, 0) * rng.standard_normal((20 * len(mu), 2))
    assert z.var(axis=0) == pytest.approx(fit["total"], rel=0.03)
    assert f"{fit['total'][0]:.2f}" in text and f"{fit['total'][1]:.2f}" in text


def test_a_vae_whose_means_fill_the_prior_is_said_to_match_it(data):
    mu, sigma = codes("mnist-d2-vae-b2", data)
    fit = claims.prior_fit(mu, sigma)
    assert abs(fit["inside_2sigma"] - claims.PRIOR_INSIDE_2SIGMA_2D) <= 0.05
    assert "about the 86%" in claims.prior_fit_caption(fit)


def test_the_range_caption_gives_the_true_extent_of_the_ae_codes(data):
    mu, _ = codes("mnist-d2-ae", data)
    text = claims.range_caption(mu)
    lo, hi = mu.min(axis=0), mu.max(axis=0)
    assert f"from {lo[0]:.1f} to {hi[0]:.1f} along z0" in text
    assert f"from {lo[1]:.1f} to {hi[1]:.1f} along z1" in text
    assert lo[0] < 0 < 40 < hi[0]                 # not "±44": the codes are far from symmetric


def test_the_bubble_scale_is_the_smallest_that_makes_a_bubble_visible_and_is_said(data):
    mu, sigma = codes("mnist-d2-vae-b1", data)
    k = claims.bubble_scale(mu, sigma)
    width = np.ptp(mu, axis=0).max()
    med = np.median(sigma)
    assert 2 * k * med >= width / 25
    smaller = [s for s in (1, 2, 5, 10, 20, 50, 100) if s < k]
    assert not smaller or 2 * smaller[-1] * med < width / 25
    assert k > 1 and f"{k}× its true size" in claims.bubble_caption(sigma, k)
    _, sigma8 = codes("mnist-d2-vae-b8", data)
    assert claims.bubble_scale(codes("mnist-d2-vae-b8", data)[0], sigma8) == 1     # big enough as they are


def test_over_the_prior_range_the_vae_grid_shows_more_digits_than_the_ae_grid(data, clf):
    verdict = {}
    for name in ("mnist-d2-vae-b1", "mnist-d2-ae"):
        mu, _ = codes(name, data)
        g = latent.latent_grid(model(name), mu, n=15, span="prior", quantile=0.05)
        verdict[name] = judged(clf, latent.decode(model(name), g.z))
    assert len(verdict["mnist-d2-vae-b1"]["classes"]) >= 9
    assert len(verdict["mnist-d2-ae"]["classes"]) <= 6


def test_the_ae_prior_samples_repeat_few_digits_in_2d_and_are_smudges_in_20d(data, clf):
    out = {}
    for name in ("mnist-d2-vae-b1", "mnist-d2-ae", "mnist-d20-vae-b1", "mnist-d20-ae"):
        _, images = latent.prior_samples(model(name), n=500, seed=0)
        out[name] = judged(clf, images)
    assert len(out["mnist-d2-ae"]["classes"]) < len(out["mnist-d2-vae-b1"]["classes"])
    assert out["mnist-d20-ae"]["frac"] < 0.1 < out["mnist-d20-vae-b1"]["frac"]
    # The Sampling page's reason: few of the 2-D AE's codes lie where the prior draws.
    mu, _ = codes("mnist-d2-ae", data)
    inside = np.mean(np.linalg.norm(mu, axis=1) <= 2 * np.sqrt(2))
    assert inside < 0.5 < claims.prior_mass_within(2 * np.sqrt(2), 2)


@pytest.mark.parametrize("a, b", [(7, 3), (2, 7)])
def test_the_interpolation_pairs_named_on_the_page_leave_the_ae_codes_behind(data, a, b):
    y = data.y.numpy()
    i0, i1 = int(np.flatnonzero(y == a)[0]), int(np.flatnonzero(y == b)[0])
    far = {}
    for name in ("mnist-d2-vae-b1", "mnist-d2-ae"):
        mu, _ = codes(name, data)
        d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        gap = np.median(np.sqrt(d2.min(axis=1)))
        ends, _ = latent.encode_data(model(name), data.x[[i0, i1]])
        z = latent.interpolate(ends[0], ends[1], steps=11)
        far[name] = np.sqrt(((z[:, None] - mu[None]) ** 2).sum(-1).min(axis=1)).max() / gap
    assert far["mnist-d2-ae"] > 2 * far["mnist-d2-vae-b1"]


@pytest.mark.parametrize("d", [2, 20])
def test_every_vae_of_a_family_keeps_its_codes_at_the_prior_scale_far_inside_the_ae(data, d):
    ae = claims.reach(codes(f"mnist-d{d}-ae", data)[0])
    vaes = {b: claims.reach(codes(f"mnist-d{d}-vae-b{b}", data)[0]) for b in ("0.5", "1", "2", "4", "8")}
    assert max(vaes.values()) < 4 < ae
    text = claims.spread_comparison({f"β={b}": r for b, r in vaes.items()}, ae)
    assert f"±{ae:.0f}" in text and f"±{vaes['0.5']:.1f} (β=0.5)" in text


def test_the_beta_trend_of_the_20d_family_says_dimensions_switch_off():
    rows = []
    for b in (0.5, 1, 2, 4, 8):
        m = load_checkpoint(CKPT / f"mnist-d20-vae-b{b:g}.safetensors").metrics
        rows.append({"beta": b, "kl": m["kl"], "recon": m["recon"], "active_units": m["active_units"]})
    text = claims.beta_trend(rows, {20})
    assert rows[0]["active_units"] > rows[-1]["active_units"]
    assert f"from {rows[0]['active_units']:g} to {rows[-1]['active_units']:g} of 20" in text
    assert rows[0]["kl"] > rows[-1]["kl"] and rows[0]["recon"] < rows[-1]["recon"]


def test_each_model_label_names_its_likelihood():
    from vae_core.checkpoints import list_checkpoints
    infos = {i["name"]: {**i, "model_config": i["model_config"].to_dict(),
                         "train_config": i["train_config"].to_dict()} for i in list_checkpoints(CKPT)}
    assert claims.likelihood_of(infos["mnist-bin-d32-vae-b1"]) == "Bernoulli, binarised data"
    assert "published" in claims.likelihood_note(infos["mnist-bin-d32-vae-b1"])
    assert claims.likelihood_of(infos["mnist-d2-vae-b1"]) == "Bernoulli"
    assert "not the log-probability" in claims.likelihood_note(infos["mnist-d2-vae-b1"])
    gaussian = [i for i in infos.values() if i["model_config"]["likelihood"] == "gaussian"]
    for info in gaussian:
        assert claims.likelihood_of(info).startswith("Gaussian σ=")
        assert "log-density" in claims.likelihood_note(info)
