"""Few labels: a k-NN classifier trained on n labelled images per class, on the models' codes, on
PCA of the pixels and on the pixels themselves (vae_core.fewlabels)."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from explorer import charts, families, figures, links, models, timing
from explorer import fewlabels as fx
from explorer.sidebar import preferred_vae, select_pair, sidebar
from vae_core import fewlabels as fl
from vae_core import runmeta

import pandas as pd  # noqa: E402 - after explorer, which imports the heavy libraries in one order

st.set_page_config(page_title="Few labels · VAE Latent Explorer", page_icon="🏷️", layout="wide")
st.title("Few labels")
st.caption("The models learnt their codes without a single label. Give a classifier only a few labelled "
           "images per class: does it do better on the codes than on the raw pixels?")

sel = sidebar("few")
if sel is None:
    st.stop()

PCA_COLOUR, PIXEL_COLOUR = "#009E73", "#777777"
d = sel.latent_dim
links.restore("few_std", lambda t: {"True": True, "False": False}[t])
standardised = bool(st.session_state.get("few_std", False))     # its checkbox is drawn at the foot


# ------------------------------------------------------------------ the data
if models.labels(sel.dataset) is None:
    st.warning(f"The images of {sel.dataset} have no class labels, so there is nothing to classify.")
    links.sidebar_link()
    st.stop()
stamp = fx.data_stamp(sel.dataset)
try:
    with st.spinner("Reading the images…"):
        split = fx.few_split(sel.dataset, stamp)
except Exception as e:      # noqa: BLE001 - a DataError with the reason, shown instead of a crash
    st.warning(f"Few-label accuracy cannot be measured here: {e}")
    links.sidebar_link()
    st.stop()
ns = tuple(fl.available_ns(split.pool_y))
if not ns:
    st.warning("Some class has no labelled image to draw from: nothing to measure.")
    links.sidebar_link()
    st.stop()

with st.spinner("Classifying the test digits from a few labels (a few seconds, on a first visit only)…"):
    base = {"pixels": fx.pixel_curve(sel.dataset, stamp, ns, standardised),
            "pca": fx.pca_curve(sel.dataset, stamp, d, ns, standardised)}
    curves = {label: fx.code_curve(ckpt, models.ckpt_key(ckpt), sel.dataset, stamp, ns, standardised)
              for label, ckpt, _ in sel.pair}
family = [i for i in families.groups(sel.infos).get(runmeta.family_key(sel.vae_info), [sel.vae_info])
          if families.beta_of(i) is not None]
series = {f"VAE μ ({d}-D)": (curves["VAE"], figures.VAE_COLOUR)}
if "AE" in curves:
    series[f"AE z ({sel.ae_info['model_config']['latent_dim']}-D)"] = (curves["AE"], figures.AE_COLOUR)
series[f"PCA of pixels ({d}-D)"] = (base["pca"], PCA_COLOUR)
series[f"pixels ({split.test_x[0].size}-D)"] = (base["pixels"], PIXEL_COLOUR)


def pct(curve: dict, n: int) -> str:
    return f"{fl.at(curve, n)[0] * 100:.0f} %"


def notice_text(n: int) -> str:
    """What to notice at n labels per class, from the numbers: the VAE against the pixels."""
    (v, sv), (p, sp_) = fl.at(curves["VAE"], n), fl.at(base["pixels"], n)
    others = [f"{pct(base['pca'], n)} on {d} principal components"]
    if "AE" in curves:
        others.append(f"{pct(curves['AE'], n)} on the AE's codes")
    text = (f"**Notice:** with {n:,} labelled image{'s' if n > 1 else ''} per class, k-NN on the VAE's "
            f"{d}-D codes gets {v * 100:.0f} % of the test digits right, against {p * 100:.0f} % on the "
            f"raw pixels ({', '.join(others)}). ")
    if abs(v - p) <= max(sv, sp_):
        return text + "Here the codes and the pixels are within the spread of the draws."
    if v > p:
        # The gap between the two percentages as shown (68 % against 63 % is 5 points, not 4).
        return text + f"Here the codes beat the pixels by {round(v * 100) - round(p * 100)} points."
    return text + f"Here the pixels beat the VAE's codes by {round(p * 100) - round(v * 100)} points."


def curve_figure(n: int) -> go.Figure:
    """Accuracy against n. The x axis is linear in log10(n), ticked with n: a log scale on which
    rings of a fixed size in pixels stay round (plotly narrows them on a log axis)."""
    fig = go.Figure()
    for name, (c, colour) in series.items():
        fig.add_trace(go.Scatter(x=np.log10(c["n"]), y=np.asarray(c["mean"]) * 100, customdata=c["n"], name=name,
                                 mode="lines+markers", line=dict(color=colour), marker=dict(size=7),
                                 error_y=dict(type="data", array=np.asarray(c["std"]) * 100, thickness=1.2),
                                 hovertemplate="%{customdata:,} per class: %{y:.1f} %<extra>" + name + "</extra>"))
    fig.add_vline(x=np.log10(n), line=dict(color="grey", dash="dot"))
    # The chosen n is marked by shapes only (the rule and a ring on each curve): a slider move then
    # redraws them alone (explorer.charts), not the chart.
    for name, (c, colour) in series.items():
        fig.add_shape(charts.ring(np.log10(n), fl.at(c, n)[0] * 100, f"{name} at {n}", colour=colour, width=2.5,
                                  diameter=15))
    fig.update_layout(title="Test accuracy against labelled images per class", height=360,
                      margin=dict(l=10, r=10, t=40, b=10), yaxis_title="test accuracy (%)",
                      xaxis=dict(title="labelled images per class (log scale)", tickvals=np.log10(ns).tolist(),
                                 ticktext=[f"{v:,}" for v in ns]),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return fig


def family_at(n: int) -> list:
    """(mean, spread) at n labels per class of every VAE of the family: measured at that n only, so
    a first visit pays for one n, not four, for each member."""
    out = []
    for info in family:
        if info["name"] == sel.vae_info["name"]:
            out.append(fl.at(curves["VAE"], n))
            continue
        member = models.load_model(info["path"])
        out.append(fl.at(fx.code_curve(member, models.ckpt_key(member), sel.dataset, stamp, (n,), standardised), n))
    return out


def family_figure(n: int) -> go.Figure:
    betas = [families.beta_of(i) for i in family]
    ms = family_at(n)
    fig = go.Figure(go.Scatter(
        x=betas, y=[m * 100 for m, _ in ms], name=f"VAE μ ({d}-D)", mode="lines+markers",
        line=dict(color=figures.VAE_COLOUR), marker=dict(size=[14 if i["name"] == sel.vae_info["name"] else 8
                                                             for i in family]),
        error_y=dict(type="data", array=[s * 100 for _, s in ms], thickness=1.2),
        text=[i["name"] for i in family], hovertemplate="%{text}: %{y:.1f} %<extra></extra>"))
    refs = [(f"pixels {pct(base['pixels'], n)}", base["pixels"], PIXEL_COLOUR)]
    if "AE" in curves:
        refs.insert(0, (f"AE {pct(curves['AE'], n)}", curves["AE"], figures.AE_COLOUR))
    for text, c, colour in refs:
        fig.add_hline(y=fl.at(c, n)[0] * 100, line=dict(color=colour, dash="dash"), annotation_text=text,
                      annotation_position="top left", annotation_font_color=colour)
    fig.update_layout(title=f"Across the β family, {n:,} per class", height=360,
                      margin=dict(l=10, r=10, t=40, b=10), yaxis_title="test accuracy (%)",
                      xaxis=dict(type="log", title="β (log scale)", tickvals=betas,
                                 ticktext=[f"{b:g}" for b in betas]))
    return fig


# ------------------------------------------------------------------ the slider: only this part reruns
@timing.fragment
def view():
    links.restore("few_n", links.one_of(list(ns)))
    if st.session_state.get("few_n") not in ns:          # a size this data cannot supply
        st.session_state.pop("few_n", None)
    st.session_state.setdefault("few_n", fx.default_n(ns))
    notice = st.container()
    n = st.select_slider("Labelled images per class", list(ns), key="few_n", help="The classifier is trained on this many labelled images of each "
                                           "class, drawn at random from the unlabelled pool.")
    links.publish("few_n", n)
    notice.markdown(notice_text(n))
    c1, c2 = st.columns([3, 2])
    figures.chart(curve_figure(n), "few_curve", where=c1)
    with c2, st.spinner("Measuring the family…"):
        figures.chart(family_figure(n), "few_family")


view()
if ns[-1] < fl.NS[-1]:
    st.info(f"The slider stops at {ns[-1]:,} labelled images per class: {split.note}, and the rarest class has "
            f"only {int(np.bincount(split.pool_y).min()):,} images there.", icon=":material/info:")

if d <= 2:
    aes = [i for i in sel.infos if i["model_config"]["kind"] == "ae"]
    big = [i for i in sel.infos if i["model_config"]["kind"] == "vae" and i["model_config"]["latent_dim"] > 2]
    if big:
        pick = preferred_vae(big, aes)
        partner = families.partner_ae(next(i for i in big if i["name"] == pick), aes)
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.info(f"These codes have {d} dimensions, and so has their PCA: two numbers cannot keep ten digits "
                "apart. A larger latent space keeps more of what tells them apart.", icon=":material/lightbulb:")
        c2.button(f"Use {pick}", key="few_use_big", on_click=select_pair,
                  args=(pick, partner["name"] if partner else None))

with st.expander("The numbers"):
    rows = {name: [f"{m * 100:.1f} ± {s * 100:.1f}" for m, s in zip(c["mean"], c["std"])]
            for name, (c, _) in series.items()}
    st.dataframe(pd.DataFrame(rows, index=[f"{n:,} per class" for n in ns]).T, key="few_table")
    st.caption("Test accuracy in %, mean ± spread (standard deviation) over "
               + ", ".join(f"{k} draws at {n:,}" for n, k in zip(ns, fl.draws_for(ns)))
               + " of the labelled set; every feature set is judged on the same draws.")

st.caption(f"How it is measured: {split.note}. The classifier is k-nearest neighbours (k = 5, or 1 with one "
           "image per class), Euclidean distance: nothing to tune, which is fair when there are too few labels "
           f"to tune anything on. PCA is fitted on the unlabelled pool, without labels, as the models were trained; "
           "the VAE's code is its posterior mean μ.")
st.checkbox("Standardise every feature first (mean 0, standard deviation 1 over the unlabelled images)",
            key="few_std", help="Gives every pixel and every latent dimension the same weight in the distance. "
                                "For k-NN that inflates nearly-always-black border pixels and a VAE's unused "
                                "dimensions: compare the numbers with it on and off.")
links.publish("few_std", standardised)
links.sidebar_link()
