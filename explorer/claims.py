"""What the captions say about the models on screen, computed from those models.

Pure NumPy (no Streamlit), so tests/test_claims.py holds each sentence against the shipped models:
a caption that is fixed text can only be true for some models; these are true for the one shown.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

# P(‖z‖ ≤ 2) for z ~ N(0, I) in two dimensions: 1 − exp(−2²/2).
PRIOR_INSIDE_2SIGMA_2D = 1.0 - math.exp(-2.0)


def prior_fit(mu: np.ndarray, sigma: np.ndarray) -> dict:
    """How a 2-D VAE's posterior means sit in its prior.

    mu, sigma [N, 2]: posterior means and standard deviations of N test images.
    By the law of total variance the aggregate posterior q(z) = mean_x q(z|x) has, per axis,
    Var_q[z] = Var_x[μ(x)] + E_x[σ²(x)]; a VAE whose q(z) matched the prior N(0, I) would have 1
    on each axis. Returns the fraction of means inside the prior's 2σ circle, and per axis the
    variance of the means, the mean σ² and their sum.
    """
    mu = np.asarray(mu, dtype=np.float64)
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    inside = float(np.mean(np.linalg.norm(mu, axis=1) <= 2.0))
    var_mu = mu.var(axis=0)
    mean_s2 = s2.mean(axis=0)
    return {"n": len(mu), "inside_2sigma": inside, "var_mu": var_mu, "mean_sigma2": mean_s2,
            "total": var_mu + mean_s2}


def prior_fit_caption(fit: dict) -> str:
    """The sentence under a 2-D VAE's map, every number and comparison from `fit`."""
    inside = fit["inside_2sigma"]
    expected = PRIOR_INSIDE_2SIGMA_2D
    if inside < expected - 0.05:
        how = f"fewer than the {expected:.0%} of draws from the prior that fall there: the means spread wider than N(0, I)"
    elif inside > expected + 0.05:
        how = f"more than the {expected:.0%} of draws from the prior: the means crowd the centre, and the bubbles fill the rest"
    else:
        how = f"about the {expected:.0%} of draws from the prior that fall there"
    v, s, t = fit["var_mu"], fit["mean_sigma2"], fit["total"]
    return (f"{inside:.0%} of these {fit['n']:,} posterior means lie inside the prior's 2σ circle, {how}. "
            f"Variance of the means along z0, z1: {v[0]:.2f}, {v[1]:.2f}; average posterior variance σ²: "
            f"{s[0]:.3f}, {s[1]:.3f}. If the codes of all images together (means and bubbles) matched the "
            f"prior, the two would add up to 1 on each axis; here they add up to {t[0]:.2f} and {t[1]:.2f}.")


def code_range(xy: np.ndarray) -> np.ndarray:
    """[[min, max] per axis] of codes xy [N, 2]."""
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([xy.min(axis=0), xy.max(axis=0)], axis=1)


def range_caption(xy: np.ndarray, names: tuple = ("z0", "z1")) -> str:
    """"Codes run from a to b along z0 and from c to d along z1.": the true extent, not ±max|z|."""
    r = code_range(xy)
    return (f"Codes run from {r[0, 0]:.1f} to {r[0, 1]:.1f} along {names[0]} and from "
            f"{r[1, 0]:.1f} to {r[1, 1]:.1f} along {names[1]}.")


def bubble_scale(mu: np.ndarray, sigma: np.ndarray, visible: float = 1 / 25) -> int:
    """The smallest factor k in 1, 2, 5, 10, 20, 50, 100 at which a typical ±k·σ bubble is at least
    `visible` of the map's width, so a posterior of σ ≈ 0.07 on a map six units wide can be seen.
    mu, sigma [N, 2]."""
    width = float(np.ptp(np.asarray(mu, dtype=np.float64), axis=0).max()) or 1.0
    typical = float(np.median(np.asarray(sigma, dtype=np.float64)))
    for k in (1, 2, 5, 10, 20, 50, 100):
        if 2 * k * typical >= visible * width:
            return k
    return 100


def bubble_caption(sigma: np.ndarray, k: int) -> str:
    """What the drawn ellipses are, said with their scale."""
    med = float(np.median(np.asarray(sigma, dtype=np.float64)))
    if k == 1:
        return f"Each ellipse is one posterior bubble at its true size, ±σ (median σ {med:.2f})."
    return (f"Each ellipse is a posterior bubble drawn {k}× its true size, ±{k}σ: at its true size "
            f"(median σ {med:.2f}) it would be hidden under its dot.")


def bubble_title(k: int) -> str:
    """The drawn scale of the ellipses in a few words, for a map's title: a downloaded picture
    keeps its title but not the page's caption."""
    return "ellipses ±σ" if k == 1 else f"ellipses ±{k}σ ({k}× true size)"


def reach(codes: np.ndarray, q: float = 99.0) -> float:
    """The q-th percentile of |code| over all coordinates: how far a model's codes spread."""
    return float(np.percentile(np.abs(np.asarray(codes, dtype=np.float64)), q))


def spread_comparison(vae_reaches: dict, ae_reach: Optional[float]) -> str:
    """A sentence comparing how far each β's codes spread with the AE's, e.g. "99 % of the
    codes lie within ±2.9 (β=0.5) … ±2.1 (β=8); the AE's within ±38"."""
    parts = [f"±{r:.1f} ({label})" for label, r in vae_reaches.items()]
    text = "99 % of the VAEs' code coordinates lie within " + ", ".join(parts)
    if ae_reach is not None:
        text += f"; the AE's within ±{ae_reach:.0f}, {ae_reach / max(max(vae_reaches.values()), 1e-9):.0f}× further out"
    return text + "."


def judgement(probs: np.ndarray, sure: float = 0.9) -> dict:
    """What a digit classifier makes of decoded images. probs [N, classes]: p(c|x) per image.
    Returns n, sure (images whose top class has p > `sure`), their fraction, and the classes those
    images show (sorted): a sampler that draws only a few classes well shows few of them."""
    p = np.asarray(probs, dtype=np.float64)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    ok = conf > sure
    return {"n": len(p), "sure": int(ok.sum()), "frac": float(ok.mean()) if len(p) else 0.0,
            "classes": sorted({int(c) for c in pred[ok]})}


def judgement_caption(judged: dict, what: str) -> str:
    """"the VAE: 20 of 36 clear digits, 9 different" from a judgement()."""
    k = len(judged["classes"])
    return (f"{what}: {judged['sure']} of {judged['n']} clear digits, "
            f"{k} different digit{'s' if k != 1 else ''}")


def prior_mass_within(radius: float, d: int) -> float:
    """P(‖z‖ ≤ radius) for z ~ N(0, I_d): ‖z‖² follows a χ² law with d degrees of freedom."""
    from scipy.stats import chi2
    return float(chi2.cdf(radius ** 2, d))


def beta_trend(rows: list, dims: set) -> str:
    """The Compare β page's "Notice" line from its metric rows (dicts with beta, kl, recon,
    active_units), lowest β to highest: what rising β did to the models shown."""
    rows = sorted((r for r in rows if r.get("beta") is not None), key=lambda r: r["beta"])
    if len(rows) < 2:
        return "**Notice:** choose at least two VAEs with different β to see what β does."
    lo, hi = rows[0], rows[-1]
    parts = []
    if lo.get("kl") is not None and hi.get("kl") is not None:
        parts.append(f"the rate (KL) goes from {lo['kl']:.1f} to {hi['kl']:.1f} nats")
    if lo.get("recon") is not None and hi.get("recon") is not None:
        parts.append(f"the reconstruction cost from {lo['recon']:.1f} to {hi['recon']:.1f} nats")
    if lo.get("active_units") is not None and hi.get("active_units") is not None:
        d = max(dims) if dims else None
        parts.append(f"the active dimensions from {lo['active_units']:g} to {hi['active_units']:g}"
                     + (f" of {d}" if d else ""))
    text = f"**Notice:** from β = {lo['beta']:g} to β = {hi['beta']:g}, " + ", ".join(parts) + "."
    if dims and max(dims) <= 2:
        text += " With two latent dimensions every VAE needs both: choose a 20-D family to see dimensions switch off."
    return text


def likelihood_of(info: dict) -> str:
    """The decoder's likelihood p(x|z) in a few words, from a model's configs: "Bernoulli",
    "Bernoulli, binarised data", "Gaussian σ=0.1" or "Gaussian, learned σ"."""
    mc = info.get("model_config") or {}
    tc = info.get("train_config") or {}
    kind = mc.get("likelihood", "bernoulli")
    if kind == "gaussian":
        return f"Gaussian σ={float(mc.get('gaussian_sigma', 0.1)):g}"
    if kind == "gaussian_learned":
        return "Gaussian, learned σ"
    return "Bernoulli, binarised data" if tc.get("binarize") else "Bernoulli"


def likelihood_note(info: dict) -> str:
    """What this model's "log p(x)" means, for the likelihood it was trained with."""
    what = likelihood_of(info)
    if what == "Bernoulli, binarised data":
        return ("This model was trained on binarised pixels (each 0 or 1) with a Bernoulli likelihood, so its "
                "log p(x) is the log-probability of a binary image: comparable with published binarised-MNIST numbers.")
    if what == "Bernoulli":
        return ("This model puts a Bernoulli likelihood on grey-level pixels (the reconstruction term is a binary "
                "cross-entropy). Grey pixels are not 0/1 outcomes, so its \"log p(x)\" is not the log-probability of "
                "any image: it ranks models trained the same way, but is not comparable with published numbers "
                "(only a model trained on binarised pixels is).")
    return (f"This model's likelihood is {what}: its log p(x) is a log-density over continuous pixel values. It "
            "depends on σ and the pixel scale, and is comparable neither with a Bernoulli model's numbers nor with "
            "published binarised-MNIST results.")


def likelihood_short(info: dict) -> str:
    """likelihood_of() in a word or two, for a model's label in a narrow box."""
    text = likelihood_of(info)
    return {"Bernoulli": "Bern.", "Bernoulli, binarised data": "Bern. 0/1"}.get(
        text, text.replace("Gaussian", "Gauss.").replace(", learned σ", " σ learned"))
