"""The sidebar every explorer page shares: the dataset and the pair of models (a VAE and an AE).

The choice lives in plain session-state keys (sel_dataset, sel_vae, sel_ae) so it holds across
pages; the widgets (keys sb_dataset, sb_vae, sb_ae) are refilled from them on each page,
because Streamlit forgets a widget's value when a page without that widget is shown.

Defaults: the β = 1 VAE of the default family (explorer.families: the shipped 20-D MNIST family,
so mnist-d20-vae-b1) beside the AE of its run. Pairs are read from the files' run records, never
from their names. A page never swaps the models on its own; the grid and map pages offer a
one-click switch to the 2-D pair when the chosen pair has more than two latent dimensions.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional

import streamlit as st

from . import claims, families, links, models, paths


@dataclass
class Selection:
    dataset: str
    vae_info: dict
    ae_info: Optional[dict]
    vae: object          # vae_core.checkpoints.Checkpoint
    ae: object           # Checkpoint or None when no AE was trained on this dataset
    infos: list          # every model of the dataset (for pages that offer other choices)

    @property
    def pair(self) -> list:
        """[(label, Checkpoint, info)] in display order: the VAE, then the AE when there is one."""
        out = [("VAE", self.vae, self.vae_info)]
        if self.ae is not None:
            out.append(("AE", self.ae, self.ae_info))
        return out

    @property
    def latent_dim(self) -> int:
        return int(self.vae_info["model_config"]["latent_dim"])


def dims_for(dims: tuple, latent_dim: int) -> tuple:
    """Two different dimensions of a model with `latent_dim` dimensions, close to the two asked for:
    each one the model has is kept, each one it lacks becomes its lowest unused dimension. The
    choice is made on the VAE; an AE beside it may have fewer dimensions (and no order to them)."""
    d = int(latent_dim)
    if d <= 2:
        return (0, 1)
    kept = [int(k) if 0 <= int(k) < d else None for k in dims]
    spare = iter(k for k in range(d) if k not in kept)
    return tuple(k if k is not None else next(spare) for k in kept)


def beta_of(info: dict) -> Optional[float]:
    """A VAE's β, from its run record (else its train config; TrainConfig's default, 1, when the
    checkpoint does not say); None for an AE, which has no KL term to weigh."""
    return families.beta_of(info)


def describe(info: dict) -> str:
    """A short label: name, latent size, β, and where the file came from."""
    mc = info["model_config"]
    beta = f", β={beta_of(info):g}" if beta_of(info) is not None else ""
    beta += f", {claims.likelihood_short(info)}"
    if info.get("source") != "yours":
        mine = ""
    elif info["name"] in st.session_state.get("my_models", ()):
        mine = " (yours)"
    else:
        mine = f" (by {info.get('owner') or 'an upload'})"
    return f"{info['name']} · d={mc['latent_dim']}{beta}{mine}"


def _name(info: Optional[dict]) -> Optional[str]:
    return None if info is None else info["name"]


def preferred_vae(vaes: list, aes: list) -> Optional[str]:
    """The name of the VAE a page opens on (explorer.families.preferred_vae)."""
    return _name(families.preferred_vae(vaes, aes))


def preferred_ae(vae: dict, aes: list) -> Optional[str]:
    """The name of the AE shown beside a VAE: its partner, else one of the same latent size."""
    return _name(families.preferred_ae(vae, aes))


def _default(options: list, preferred: Optional[str]) -> Optional[str]:
    if preferred in options:
        return preferred
    return options[0] if options else None


def empty_message() -> None:
    """What to do when no checkpoint exists: where they go and how to make one."""
    st.warning(
        f"No trained models were found. Pretrained checkpoints belong in "
        f"`{paths.shown(paths.shipped_dir(), 'VAE_CHECKPOINT_DIR')}`; models you train are saved in "
        f"`{paths.shown(paths.user_dir(), 'VAE_USER_DIR')}`.\n\n"
        "Train a pair on the **Train** page, or from a terminal in the app's folder:\n\n"
        f"`python -m vae_core sweep --dataset digits --betas 1 --latent-dim 2 --epochs 100 "
        f"--out-dir \"{paths.shown(paths.user_dir(), 'VAE_USER_DIR')}\" --prefix digits-d2`\n\n"
        "(set `VAE_CHECKPOINT_DIR` to use another folder of checkpoints).", icon=":material/folder_open:")


# The selection lives in sel_dataset / sel_vae / sel_ae, changed only by a user's choice (these
# callbacks, or select_pair). The widgets are set from it before they are drawn on every page:
# a widget's own state does not survive a change of page reliably (the browser can send back the
# value it last showed), so it is never the source of truth.

def _on_dataset_change() -> None:
    st.session_state["sel_dataset"] = st.session_state.get("sb_dataset")
    st.session_state.pop("sel_vae", None)       # the new dataset's default pair
    st.session_state.pop("sel_ae", None)


def _on_vae_change() -> None:
    # A new VAE brings its partner AE along, so the pair stays comparable.
    vae = st.session_state.get("sb_vae")
    st.session_state["sel_vae"] = vae
    aes = st.session_state.get("_sb_aes", [])
    vaes = {v["name"]: v for v in st.session_state.get("_sb_vaes", [])}
    if vae in vaes and aes:
        st.session_state["sel_ae"] = st.session_state["sb_ae"] = preferred_ae(vaes[vae], aes)


def _on_ae_change() -> None:
    st.session_state["sel_ae"] = st.session_state.get("sb_ae")


def select_pair(vae: str, ae: Optional[str]) -> None:
    """Make (vae, ae) the selection on every page; call from a button's on_click."""
    st.session_state["sel_vae"] = st.session_state["sb_vae"] = vae
    if ae:
        st.session_state["sel_ae"] = st.session_state["sb_ae"] = ae


def _sync(widget_key: str, sel_key: str, options: list, preferred: Optional[str]) -> None:
    """Set a widget from the held selection before the widget is drawn (the default when the held
    choice is not among the options)."""
    held = st.session_state.get(sel_key)
    value = held if held in options else _default(options, preferred)
    st.session_state[sel_key] = value
    if st.session_state.get(widget_key) != value:
        st.session_state[widget_key] = value


def _held(widget_key: str, sel_key: str, shown: str) -> str:
    """The held choice, after its widget is drawn. On the first run of a page after a change of
    page, the browser can send back the value a widget showed before the last programmatic change
    (the AE that followed a new VAE): the widget then shows a stale value that no user chose. The
    held choice wins, and one more run shows it."""
    held = st.session_state.get(sel_key)
    fixing = st.session_state.setdefault("_sb_fixing", set())
    if held is not None and shown != held and widget_key not in fixing:
        fixing.add(widget_key)              # once: never a loop of reruns
        st.session_state.pop(widget_key, None)
        st.rerun()
    fixing.discard(widget_key)
    if held is None or shown != held:       # after one correction the widget's value stands
        st.session_state[sel_key] = held = shown
    return held


_ADDRESS = (("data", "sel_dataset"), ("vae", "sel_vae"), ("ae", "sel_ae"))


def _from_address() -> None:
    """A session's first run takes the dataset and models of a link (?data=&vae=&ae=); the
    options check them (_sync: an unknown name falls back to the default)."""
    if st.session_state.get("_sb_from_address"):
        return
    st.session_state["_sb_from_address"] = True
    for param, sel_key in _ADDRESS:
        value = st.query_params.get(param)
        if isinstance(value, str) and value and st.session_state.get(sel_key) is None:
            st.session_state[sel_key] = value


def _to_address(dataset: str, vae: str, ae: Optional[str]) -> None:
    for (param, _), value in zip(_ADDRESS, (dataset, vae, ae)):
        if value is None:
            st.query_params.pop(param, None)
        else:
            links.publish(param, value)


def sidebar(page: str = "") -> Optional[Selection]:
    """Draw the shared sidebar; return the selection with both models loaded, or None (and a
    message on the page) when no VAE exists for any dataset."""
    start_umap_warmup()
    infos = models.list_models()
    _from_address()
    with st.sidebar:
        st.subheader("Models")
        if not infos:
            st.caption("No models yet.")
            empty_message()
            return None
        datasets = sorted({i["dataset"] or "unknown" for i in infos},
                          key=lambda d: (d != "mnist", d))
        _sync("sb_dataset", "sel_dataset", datasets, "mnist")
        dataset = st.selectbox("Dataset", datasets, key="sb_dataset", on_change=_on_dataset_change,
                               help="The data the models were trained on; the views show its test images.")
        dataset = _held("sb_dataset", "sel_dataset", dataset)
        mine = [i for i in infos if (i["dataset"] or "unknown") == dataset]
        vaes = [i for i in mine if i["model_config"]["kind"] == "vae"]
        aes = [i for i in mine if i["model_config"]["kind"] == "ae"]
        by_name = {i["name"]: i for i in mine}
        st.session_state["_sb_aes"] = aes
        st.session_state["_sb_vaes"] = vaes
        if not vaes:
            st.warning(f"No VAE was trained on {dataset}: train one on the Train page.")
            return None
        vae_names = [i["name"] for i in vaes]
        _sync("sb_vae", "sel_vae", vae_names, preferred_vae(vaes, aes))
        vae_name = st.selectbox("VAE", vae_names, key="sb_vae", on_change=_on_vae_change,
                                format_func=lambda n: describe(by_name[n]),
                                help="The variational model: each image becomes a Gaussian bubble in latent space.")
        vae_name = _held("sb_vae", "sel_vae", vae_name)
        ae_name = None
        if aes:
            ae_names = [i["name"] for i in aes]
            _sync("sb_ae", "sel_ae", ae_names, preferred_ae(by_name[vae_name], aes))
            ae_name = st.selectbox("AE", ae_names, key="sb_ae", on_change=_on_ae_change,
                                   format_func=lambda n: describe(by_name[n]),
                                   help="The plain auto-encoder: each image becomes one point.")
            ae_name = _held("sb_ae", "sel_ae", ae_name)
        else:
            st.info(f"No plain AE was trained on {dataset}: the views show the VAE alone.")
        vae_info = by_name[vae_name]
        ae_info = by_name.get(ae_name) if ae_name else None
        _to_address(dataset, vae_name, ae_name)
        st.caption("Likelihood p(x|z): " + "; ".join(
            f"{label} {claims.likelihood_of(i)}" for label, i in (("VAE", vae_info), ("AE", ae_info)) if i) +
            " (Bern. = Bernoulli on grey pixels, 0/1 = binarised pixels, Gauss. = Gaussian).")
        if ae_info and ae_info["model_config"]["latent_dim"] != vae_info["model_config"]["latent_dim"]:
            st.caption("The two models have different latent sizes: compare with care.")
        st.caption("Pretrained models, and the models saved on this server (labelled with who trained "
                   "them). A model trained in the app appears here once it is saved.")
    vae = models.load_model(vae_info["path"])
    ae = models.load_model(ae_info["path"]) if ae_info else None
    return Selection(dataset, vae_info, ae_info, vae, ae, mine)


def offer_2d_pair(sel: Selection, why: str) -> None:
    """When the pair is not 2-D, offer the dataset's 2-D pair with one click (never switch silently)."""
    if sel.latent_dim == 2:
        return
    vaes2 = [i for i in sel.infos if i["model_config"]["kind"] == "vae" and i["model_config"]["latent_dim"] == 2]
    if not vaes2:
        return
    aes = [i for i in sel.infos if i["model_config"]["kind"] == "ae"]
    pick = preferred_vae(vaes2, aes)
    ae = _name(families.partner_ae(next(i for i in vaes2 if i["name"] == pick), aes))
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    c1.info(f"These models have {sel.latent_dim} latent dimensions. {why}", icon=":material/lightbulb:")
    c2.button("Use the 2-D pair", key="use_2d_pair", on_click=select_pair, args=(pick, ae),
              help=f"{pick} beside {ae}" if ae else pick)


_warm_lock = threading.Lock()
_warm_started = False


def start_umap_warmup(delay_s: float = 8.0) -> None:
    """Compile UMAP's numba code once per server in a background thread, so the first UMAP
    map a user asks for does not pay for the compilation. It starts `delay_s` after the first
    page so that page is not slowed by the import (which holds the GIL for seconds).
    VAE_NO_UMAP_WARMUP=1 turns it off (tests)."""
    global _warm_started
    with _warm_lock:
        if _warm_started or os.environ.get("VAE_NO_UMAP_WARMUP") == "1":
            return
        _warm_started = True

    def run():
        time.sleep(delay_s)
        t0 = time.perf_counter()
        try:
            from vae_core.projections import warmup_umap
            warmup_umap()
        except Exception as e:  # a failed warm-up only costs speed: UMAP compiles on first use instead
            print(f"UMAP warm-up failed ({e}); UMAP will compile on first use", file=sys.stderr, flush=True)
        else:
            print(f"UMAP warm-up finished in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        # Everything loaded so far (torch, plotly, scikit-learn, UMAP, numba) lives as long as the
        # server. Moving it out of the garbage collector's view (gc.freeze) keeps Python's own full
        # collections, which otherwise walk millions of such objects, from stalling a slider move
        # for a quarter of a second now and then. One collection first, so no garbage is frozen.
        gc.collect()
        gc.freeze()

    threading.Thread(target=run, name="umap-warmup", daemon=True).start()
