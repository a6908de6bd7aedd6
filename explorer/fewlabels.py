"""The Few labels page's computations, cached for the whole server (vae_core.fewlabels does the
work): here rather than in the page so that the start-up warm-up (explorer.warm) can fill the
same caches before the first visitor asks."""
from __future__ import annotations

import os

import streamlit as st

from vae_core import fewlabels as fl

from . import models


def data_stamp(dataset: str) -> str:
    """Where the training images would be read from, and whether they are there: a server that gains
    or loses them (or a test pointing VAE_DATA_DIR elsewhere) never reuses the other's split."""
    from vae_core.data import data_dir
    folder = data_dir(dataset)
    return f"{folder}|{folder.is_dir() and any(folder.iterdir())}|{os.environ.get('VAE_DATA_DIR', '')}"


@st.cache_resource(show_spinner=False, max_entries=4)
def few_split(dataset: str, stamp: str):
    """The unlabelled pool and the held-out test set (vae_core.fewlabels.split): held once per
    server, not copied per session (the pool's pixels take tens of MB)."""
    data = models.exploration_data(dataset)
    return fl.split(dataset, data.x.numpy(), None if data.y is None else data.y.numpy())


@st.cache_data(show_spinner=False, max_entries=16)
def pixel_curve(dataset: str, stamp: str, ns: tuple, std: bool) -> dict:
    """Accuracy curve of the raw pixels (the same for every model of a dataset)."""
    sp = few_split(dataset, stamp)
    return fl.accuracy_curve(fl.flatten(sp.pool_x), sp.pool_y, fl.flatten(sp.test_x), sp.test_y, ns,
                             fl.draws_for(ns), standardised=std)


@st.cache_data(show_spinner=False, max_entries=16)
def pca_curve(dataset: str, stamp: str, dim: int, ns: tuple, std: bool) -> dict:
    """Accuracy curve of `dim` principal components of the pixels, fitted on the unlabelled pool."""
    sp = few_split(dataset, stamp)
    pool, test = fl.pca_features(fl.flatten(sp.pool_x), fl.flatten(sp.test_x), dim)
    return fl.accuracy_curve(pool, sp.pool_y, test, sp.test_y, ns, fl.draws_for(ns), standardised=std)


@st.cache_data(show_spinner=False, max_entries=32)
def split_codes(_ckpt, key: str, dataset: str, stamp: str) -> tuple:
    """A model's deterministic codes (the VAE's μ, the AE's z) of the pool and of the test set:
    encoded once per model (about half a second for 22,000 images), whatever n is asked for."""
    from vae_core.latent import encode_data
    sp = few_split(dataset, stamp)
    return encode_data(_ckpt.model, sp.pool_x)[0], encode_data(_ckpt.model, sp.test_x)[0]


@st.cache_data(show_spinner=False, max_entries=128)
def code_curve(_ckpt, key: str, dataset: str, stamp: str, ns: tuple, std: bool) -> dict:
    """Accuracy curve of a model's codes (split_codes)."""
    sp = few_split(dataset, stamp)
    pool, test = split_codes(_ckpt, key, dataset, stamp)
    return fl.accuracy_curve(pool, sp.pool_y, test, sp.test_y, ns, fl.draws_for(ns), standardised=std)


def default_n(ns: tuple) -> int:
    """The labelled images per class the page's slider starts at."""
    return 10 if 10 in ns else ns[-1]


def warm(dataset: str, pair: list, family: list, std: bool) -> None:
    """Fill the caches the page reads on a visit with models `pair` [checkpoints] and the other
    members `family` [checkpoints] of its β family, at its slider's first n."""
    stamp = data_stamp(dataset)
    split = few_split(dataset, stamp)
    ns = tuple(fl.available_ns(split.pool_y))
    if not ns or not pair:
        return
    pixel_curve(dataset, stamp, ns, std)
    pca_curve(dataset, stamp, int(pair[0].model.cfg.latent_dim), ns, std)
    for ckpt in pair:
        code_curve(ckpt, models.ckpt_key(ckpt), dataset, stamp, ns, std)
    n = default_n(ns)
    for ckpt in family:
        code_curve(ckpt, models.ckpt_key(ckpt), dataset, stamp, (n,), std)
