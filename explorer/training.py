"""Helpers for the Train and Compare-β pages: the owner token that reconnects a user to their
job, presets, turning widget values into a JobSpec, the live figures, and the cached per-model
computations of the comparison page. Training itself happens on Ray, through vae_core.jobs.

Reconnecting: each browser session gets a random owner token, kept in st.session_state (so
switching pages keeps it) and written into the URL as ?trainer=<token> on every page while its
job is queued or running (so a refresh anywhere, which starts a new session, finds the job
again). Once the job is done the token leaves the address, and a token from an address is taken
over only while its job is unfinished: links are safe to share afterwards. Anyone holding the URL
while the job trains can see and stop it, so the token is 32 random hex digits and nothing else.
"""
from __future__ import annotations

import collections

import math
import re
import threading
import uuid
from typing import Optional

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from vae_core.config import ModelConfig, TrainConfig
from vae_core.checkpoints import check_name
from vae_core.errors import CheckpointError, ConfigError, VaeCoreError
from vae_core.jobs import JobSpec

from . import figures

OWNER_PARAM = "trainer"
_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")

MODEL_CHOICES = {"VAE": ("vae",), "AE": ("ae",), "AE and VAE (same seed)": ("ae", "vae")}

# Widget defaults: a 2-D MNIST VAE that learns a readable map in about a minute on 2 cores
# with one training thread (784-512-2 MLP, all 60,000 images, 15 epochs; measured by
# `python bench/bench_training_app.py --only a --default-config`).
DEFAULTS = {
    "dataset": "mnist", "models": "VAE", "beta": 1.0, "warmup": 0.0, "free_bits": 0.0,
    "latent": 2, "arch": "mlp", "hidden": "512", "channels": "32,64", "likelihood": "bernoulli",
    "epochs": 15, "lr": 1e-3, "batch": 128, "seed": 0, "max_train": 0,
}
PRESETS = {
    "MNIST 2-D VAE (about a minute)": {},
    "Fast demo (8x8 digits, seconds)": {"dataset": "digits", "models": "AE and VAE (same seed)",
                                        "hidden": "128", "epochs": 30, "batch": 64},
    "β-VAE with β = 4": {"beta": 4.0, "latent": 10},
    "AE vs VAE, same seed": {"models": "AE and VAE (same seed)", "epochs": 6},
    "Posterior collapse (β = 8, d = 20)": {"beta": 8.0, "latent": 20, "epochs": 6},
}


def _url_token() -> Optional[str]:
    t = st.query_params.get(OWNER_PARAM)
    return t if isinstance(t, str) and _TOKEN_RE.match(t) else None


def _unfinished(token: str) -> Optional[bool]:
    """True while the token's job is queued or running, False when it is done or unknown to the
    queue, None when the queue cannot be asked now (then nobody's address or token is touched).
    Polling it keeps the job from being stopped as abandoned while its student uses other pages."""
    from vae_core import jobs
    from vae_core.trainqueue import DONE
    try:
        status = jobs.status(token)
    except VaeCoreError:
        return None
    return status is not None and status not in DONE


def owner_token() -> str:
    """This user's owner token (see the module docstring): session state, else an address that
    brings the token of an unfinished job (a refresh while training), else a new one. A token of a
    finished job in an address is not taken over: a link shared after the fact never hands one
    student's finished, unsaved models to another, whose next Train would replace them."""
    token = st.session_state.get("train_owner")
    if token is None:
        from_url = _url_token()
        live = _unfinished(from_url) if from_url else False
        if live is None:                # the queue cannot say now: keep the address's token, decide later
            return from_url
        token = from_url if live else uuid.uuid4().hex
        st.session_state["train_owner"] = token
    return token


def show_token_while_training(job, known: bool = True) -> None:
    """The address carries ?trainer=<token> only while the job is queued or running (so a refresh
    finds it); once it is done the token leaves the address, and a link copied then is a plain view.
    known=False (the queue could not be asked): the address stays as it is."""
    if not known:
        return
    training = job is not None and not job.done
    st.session_state["train_active"] = training
    token = st.session_state.get("train_owner")
    if training and token and st.query_params.get(OWNER_PARAM) != token:
        st.query_params[OWNER_PARAM] = token
    elif not training and OWNER_PARAM in st.query_params:
        del st.query_params[OWNER_PARAM]


def keep_owner_in_url() -> None:
    """On every page (app.py calls it): while this session's job trains, the address keeps its
    token, so a refresh on any page finds the job again, and the poll keeps the job from being
    taken for abandoned; a new session from such an address takes the token only if that job is
    still unfinished. Otherwise no page's address carries a token. When the queue cannot be asked,
    nothing changes. Creates no token: only the Train page does."""
    token = st.session_state.get("train_owner")
    from_url = _url_token()
    if token is None and from_url:
        live = _unfinished(from_url)
        if live:
            st.session_state["train_owner"] = token = from_url
            st.session_state["train_active"] = True
        elif live is False:
            del st.query_params[OWNER_PARAM]
        return
    if token is not None and st.session_state.get("train_active"):
        live = _unfinished(token)
        if live is False:
            st.session_state["train_active"] = False
        if live is not False and from_url != token:
            st.query_params[OWNER_PARAM] = token
        elif live is False and OWNER_PARAM in st.query_params:
            del st.query_params[OWNER_PARAM]
    elif OWNER_PARAM in st.query_params and token is not None:
        del st.query_params[OWNER_PARAM]


def apply_preset(name: str) -> None:
    """Fill the Train page's widgets (keys tr_<field>) with a preset's values."""
    values = {**DEFAULTS, **PRESETS.get(name, {})}
    for k, v in values.items():
        st.session_state[f"tr_{k}"] = v


def parse_sizes(text: str, what: str) -> tuple:
    """'512, 256' -> (512, 256); raises ConfigError naming the bad text."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1 or max(sizes) > 4096:
        raise ConfigError(f"{what} {text!r} are invalid: give whole numbers from 1 to 4096 separated by commas, e.g. 512,256")
    return sizes


def parse_betas(text: str) -> tuple:
    """'0.5, 1, 2, 4' -> (0.5, 1.0, 2.0, 4.0); raises ConfigError naming the bad text."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        betas = tuple(float(p) for p in parts)
    except ValueError:
        betas = ()
    if not betas or len(betas) > 8 or any(not math.isfinite(b) or b < 0 for b in betas):
        raise ConfigError(f"β values {text!r} are invalid: give 1 to 8 numbers of at least 0, e.g. 0.5, 1, 2, 4")
    return tuple(dict.fromkeys(betas))


def spec_from_values(v: dict, betas: tuple = (), save_dir=None, save_prefix=None) -> JobSpec:
    """The Train page's widget values (DEFAULTS' keys) as a checked JobSpec; raises ConfigError."""
    mcfg = ModelConfig(kind="vae", arch=v["arch"], latent_dim=int(v["latent"]),
                       hidden=parse_sizes(v["hidden"], "hidden sizes"),
                       channels=parse_sizes(v["channels"], "conv channels"), likelihood=v["likelihood"])
    tcfg = TrainConfig(dataset=v["dataset"], epochs=int(v["epochs"]), batch_size=int(v["batch"]),
                       lr=float(v["lr"]), beta=float(v["beta"]), warmup_epochs=float(v["warmup"]),
                       free_bits=float(v["free_bits"]), seed=int(v["seed"]), max_train=int(v["max_train"]),
                       device="auto")      # the worker's GPU where it has one
    if save_prefix is not None:
        try:
            check_name(save_prefix)     # else an empty prefix is refused as the puzzling name "-ae"
        except CheckpointError as e:
            raise CheckpointError(f"name prefix: {e}") from None
    return JobSpec(mcfg, tcfg, kinds=MODEL_CHOICES[v["models"]], betas=betas,
                   save_dir=None if save_dir is None else str(save_dir), save_prefix=save_prefix)


def fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "estimating…"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


# ---------------------------------------------------------------- live figures

RUN_COLOURS = [figures.AE_COLOUR, figures.VAE_COLOUR, "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
               "#7F3C8D", "#000000", "#999999"]


CURVE_PANELS = ("total loss", "reconstruction −log p(x|z)", "KL(q(z|x) ‖ p(z))")


def _panels_layout() -> dict:
    """The three panels of the live curves (the live view redraws this figure every second)."""
    layout = figures.panels_layout(CURVE_PANELS, gap=0.06)
    layout.update(height=330, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    for i in range(len(CURVE_PANELS)):
        sfx = "" if i == 0 else str(i + 1)
        layout[f"xaxis{sfx}"]["title"] = dict(text="epoch")
        layout[f"yaxis{sfx}"]["title"] = dict(text="nats per image" if i == 0 else "")
    return layout


def curves_figure(job) -> go.Figure:
    """Total loss, reconstruction and KL (nats per image) against epochs, for every run of a job:
    train (solid) and test (dashed) per epoch, and the smoothed per-batch values (thin) under them."""
    traces = []
    axes = {1: ("x", "y"), 2: ("x2", "y2"), 3: ("x3", "y3")}
    for i, run in enumerate(job.runs):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)] if len(job.runs) > 1 or run.kind == "vae" else figures.AE_COLOUR
        if run.steps and run.steps_per_epoch:
            s = np.asarray(run.steps, dtype=np.float64)
            every = max(1, len(s) // 600)     # a few hundred points are enough for a line
            for col, at in ((1, 1), (2, 3), (3, 4)):
                if run.kind == "ae" and col == 3:
                    continue
                traces.append(go.Scatter(x=s[::every, 0] / run.steps_per_epoch, y=s[::every, at], mode="lines",
                                         name=f"{run.label} per batch (smoothed)", legendgroup=run.label,
                                         showlegend=col == 1, line=dict(color=colour, width=1), opacity=0.45,
                                         xaxis=axes[col][0], yaxis=axes[col][1]))
        if not run.history:
            continue
        ep = [r["epoch"] for r in run.history]
        for col, key in ((1, "loss"), (2, "recon"), (3, "kl")):
            if run.kind == "ae" and key == "kl":
                continue
            for split, dash in (("train", "solid"), ("test", "dash")):
                ys = [r.get(f"{split}_{key}") for r in run.history]
                if ys[0] is None:
                    continue
                traces.append(go.Scatter(x=ep, y=ys, mode="lines+markers", name=f"{run.label} {split}",
                                         legendgroup=run.label, showlegend=col == 1,
                                         line=dict(color=colour, dash=dash), xaxis=axes[col][0], yaxis=axes[col][1]))
    layout = _panels_layout()
    if not any(r.kind == "vae" and r.history for r in job.runs):
        layout["annotations"].append(dict(
            text="no KL yet: the AE has no KL term,<br>a VAE's appears after its first epoch",
            xref="x3 domain", yref="y3 domain", x=0.5, y=0.5, showarrow=False))
    return go.Figure(data=traces, layout=layout)


def recon_strip(originals: np.ndarray, recons: list) -> np.ndarray:
    """Originals [n, H, W] on top, then one row per model's reconstructions: one uint8 image."""
    rows = [originals] + [r for r in recons if r is not None]
    n = originals.shape[0]
    grid = np.concatenate([np.asarray(r)[:n, None] for r in rows])   # [(k+1) n, 1, H, W]
    return figures.upscale(figures.tile(grid, ncols=n), size=56 * len(rows))


_CODES_FIGS: "collections.OrderedDict" = collections.OrderedDict()
_CODES_LOCK = threading.Lock()


def codes_figure(run, labels, classes=None, title="") -> Optional[go.Figure]:
    """The latest 2-D test codes of a run, coloured by class, with the prior's circles for a VAE.

    The codes change once an epoch but the live view redraws every second (each poll brings a new
    copy of the same array), so the figure is kept for a fingerprint of the codes it was built from.
    The figure returned is shared: do not change it."""
    if run.codes is None:
        return None
    z = run.codes
    title = title or f"{run.label}: test codes after epoch {run.codes_epoch}"
    z = np.asarray(z)
    key = (z.shape, z.tobytes()[:64], z.tobytes()[-64:], float(z.sum()), title, run.kind, len(labels))
    with _CODES_LOCK:
        hit = _CODES_FIGS.get(key)
        if hit is not None:
            _CODES_FIGS.move_to_end(key)
            return hit[1]
    fig = figures.scatter_codes(z, labels, classes, title=title, axis_titles=("z₁", "z₂"),
                                prior=run.kind == "vae", height=380, marker_size=3, picture=True)
    with _CODES_LOCK:
        _CODES_FIGS[key] = (z, fig)
        while len(_CODES_FIGS) > 16:
            _CODES_FIGS.popitem(last=False)
    return fig


@st.cache_data(show_spinner=False, max_entries=64)
def model_views(path: str, mtime_ns: int, dataset: str, n_codes: int = 2000, n_recon: int = 8,
                n_prior: int = 16) -> dict:
    """What one column of the comparison shows, computed once per checkpoint version.

    codes [n, 2]: the raw 2-D means, or their first two principal components when d > 2
    (fitted per model); labels [n]; originals and recons [n_recon, H, W]; prior [n_prior, H, W]
    decoded from z ~ N(0, I) with a fixed seed; kl_dims [d] (VAE) from the exploration data.
    """
    from vae_core.metrics import kl_per_dimension

    from .models import exploration_data, load_model
    ckpt = load_model(path)
    model = ckpt.model
    data = exploration_data(dataset)
    sub = data.subset(min(n_codes, len(data)))
    with torch.no_grad():
        z = torch.cat([model.embed(sub.x[i:i + 1000]) for i in range(0, len(sub), 1000)]).numpy()
        d = z.shape[1]
        if d == 2:
            xy, how = z, "raw 2-D means"
        elif d == 1:
            xy, how = np.concatenate([z, np.zeros_like(z)], 1), "1-D code (on a line)"
        else:
            from sklearn.decomposition import PCA
            pca = PCA(2, random_state=0).fit(z)
            xy = pca.transform(z)
            how = f"PCA of {d}-D means ({pca.explained_variance_ratio_.sum():.0%} of variance)"
        from vae_core.runs import fixed_indices
        idx = fixed_indices(data, n_recon)
        x = data.x[idx]
        recon = model.decode_image(model.embed(x))[:, 0].numpy()
        gen = torch.Generator().manual_seed(0)
        prior = model.decode_image(torch.randn(n_prior, d, generator=gen))[:, 0].numpy()
    kl = kl_per_dimension(model, sub)
    # A traversal of the dimension the model uses most (the VAE's largest KL; the AE's largest
    # spread), from the first test image's code, over ±3 prior units (VAE) or ±3 of its own spread.
    if kl is not None:
        k = int(np.argmax(kl))
        values = np.linspace(-3.0, 3.0, 7)
    else:
        k = int(np.argmax(z.std(axis=0)))
        values = z[:, k].mean() + 3.0 * z[:, k].std() * np.linspace(-1.0, 1.0, 7)
    with torch.no_grad():
        start = model.embed(x[:1]).repeat(len(values), 1)
        start[:, k] = torch.as_tensor(values, dtype=start.dtype)
        trav = model.decode_image(start)[:, 0].numpy()
    return {"codes": xy.astype(np.float32), "how": how, "labels": None if sub.y is None else sub.y.numpy(),
            "classes": data.classes, "originals": x[:, 0].numpy(), "recons": recon, "prior": prior,
            "kl_dims": None if kl is None else np.asarray(kl, dtype=np.float64), "latent_dim": d,
            "reach": float(np.percentile(np.abs(z), 99)), "trav": trav, "trav_dim": k,
            "trav_values": values.astype(np.float64)}


def shared_reach(code_sets: list) -> float:
    """A round half-width that holds 99.5 % of every set's codes on both axes (1, 2, 2.5, 5 x 10^k)."""
    if not code_sets:
        return 1.0
    r = max(float(np.quantile(np.abs(np.asarray(c, dtype=np.float64)), 0.995)) for c in code_sets)
    r = max(r, 1e-3)
    k = 10 ** math.floor(math.log10(r))
    return next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= r)


@st.cache_data(show_spinner=False, max_entries=64)
def codes_picture(path: str, mtime_ns: int, dataset: str, reach: float, prior: bool) -> np.ndarray:
    """model_views' codes drawn as figures.codes_thumbnail (about 5 ms to draw 2,000 dots), kept:
    Compare β draws one per column on every rerun."""
    v = model_views(path, mtime_ns, dataset)
    return figures.codes_thumbnail(v["codes"], v["labels"], reach, prior=prior)


METRIC_KEYS = ("recon", "kl", "loss", "elbo", "log_px", "active_units", "knn_acc", "prior_confidence")


@st.cache_data(show_spinner=False, max_entries=64)
def computed_metrics(path: str, mtime_ns: int, dataset: str, n_images: int = 500, iw_samples: int = 50) -> dict:
    """vae_core.metrics.evaluate on the first n_images exploration images (for checkpoints that
    carry no metrics); marked with where they came from so the table can say so."""
    from vae_core.metrics import evaluate

    from .models import exploration_data, load_model
    ckpt = load_model(path)
    data = exploration_data(dataset).subset(n_images)
    tc = ckpt.train_config
    beta = tc.beta if tc else 1.0
    m = evaluate(ckpt.model, data, iw_samples=iw_samples, beta=beta, seed=0,
                 binarize=bool(tc and tc.binarize))
    m["source"] = f"computed here on {len(data)} images, {iw_samples} importance samples"
    return m


def metrics_for(info: dict) -> dict:
    """Stored metrics when the checkpoint has the basic ones, else computed (cached)."""
    stored = info.get("metrics") or {}
    if "recon" in stored and "kl" in stored:
        return {**stored, "source": stored.get("source", "stored in the checkpoint")}
    from pathlib import Path
    p = Path(info["path"])
    return computed_metrics(str(p), p.stat().st_mtime_ns, info["dataset"])


# Which way is better for each column of the metrics table (None: a trade-off, not a score).
BETTER = {"recon": "min", "kl": None, "loss": None, "elbo": "max", "log_px": "max",
          "active_units": None, "knn_acc": "max", "prior_confidence": "max"}
COLUMN_NAMES = {"recon": "distortion: recon (nats)", "kl": "rate: KL (nats)", "loss": "loss at its β",
                "elbo": "ELBO", "log_px": "IW log p(x)", "active_units": "active units",
                "knn_acc": "k-NN accuracy", "prior_confidence": "prior-sample confidence"}


def best_rows(values: list, better: Optional[str]) -> set:
    """Indices of the best finite value(s) in a column (ties all marked); empty for a trade-off."""
    if better is None:
        return set()
    finite = [(i, v) for i, v in enumerate(values) if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return set()
    target = (min if better == "min" else max)(v for _, v in finite)
    return {i for i, v in finite if v == target}


def rate_distortion_figure(rows: list) -> go.Figure:
    """One point per model: x = KL (rate), y = reconstruction (distortion), labelled with β.
    The AE is drawn at rate 0 with an open marker (conceptual placement; see the page text)."""
    fig = go.Figure()
    vaes = sorted([r for r in rows if r["beta"] is not None], key=lambda r: r["beta"])
    if vaes:
        fig.add_trace(go.Scatter(x=[r["kl"] for r in vaes], y=[r["recon"] for r in vaes],
                                 mode="lines+markers+text", name="VAE", text=[f"β={r['beta']:g}" for r in vaes],
                                 textposition="top center", marker=dict(size=11, color=figures.VAE_COLOUR),
                                 line=dict(color=figures.VAE_COLOUR, dash="dot"),
                                 hovertemplate="%{text}<br>rate %{x:.2f} nats<br>distortion %{y:.2f} nats<extra></extra>"))
    for r in rows:
        if r["beta"] is None:
            fig.add_trace(go.Scatter(x=[0.0], y=[r["recon"]], mode="markers+text", name=f"AE ({r['name']})",
                                     text=["AE (rate 0, conceptual)"], textposition="middle right",
                                     marker=dict(size=13, symbol="diamond-open", color=figures.AE_COLOUR,
                                                 line=dict(width=2)),
                                     hovertemplate="AE<br>distortion %{y:.2f} nats<extra></extra>"))
    fig.update_layout(title="Rate–distortion: what each β buys", height=420,
                      xaxis_title="rate: KL(q(z|x) ‖ p(z)), nats per image",
                      yaxis_title="distortion: −log p(x|z), nats per image",
                      margin=dict(l=10, r=10, t=50, b=10))
    top = max([r["kl"] for r in vaes if r["kl"] is not None] or [1.0])
    fig.update_xaxes(range=[-0.06 * top, 1.12 * top])   # room for the AE's marker at 0 and the labels
    return fig


def versus_beta_figure(rows: list, panels: list) -> go.Figure:
    """One figure, a panel per (metric key, title, y title) side by side, each the VAEs' metric
    against β on a log axis. One figure, not one per metric: the browser pays for each chart it
    draws on every change of the page."""
    layout = figures.panels_layout([title for _, title, _ in panels], gap=0.12)
    traces = []
    for i, (key, _, y_title) in enumerate(panels):
        sfx = "" if i == 0 else str(i + 1)
        vaes = sorted([r for r in rows if r["beta"] is not None and r.get(key) is not None], key=lambda r: r["beta"])
        traces.append(go.Scatter(x=[r["beta"] for r in vaes], y=[r[key] for r in vaes], mode="lines+markers",
                                 marker=dict(size=9, color=figures.VAE_COLOUR), line=dict(color=figures.VAE_COLOUR),
                                 text=[r["name"] for r in vaes], showlegend=False, xaxis=f"x{sfx}", yaxis=f"y{sfx}",
                                 hovertemplate="%{text}<br>β=%{x:g}: %{y:.3g}<extra></extra>"))
        layout[f"xaxis{sfx}"]["title"] = dict(text="β (log scale)")
        layout[f"yaxis{sfx}"]["title"] = dict(text=y_title)
        if vaes and min(r["beta"] for r in vaes) > 0:
            betas = sorted({r["beta"] for r in vaes})
            layout[f"xaxis{sfx}"].update(type="log", tickvals=betas, ticktext=[f"{b:g}" for b in betas])
    layout.update(height=320, margin=dict(l=10, r=10, t=50, b=10))
    return go.Figure(data=traces, layout=layout)
