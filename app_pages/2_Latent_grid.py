"""Latent grid: decode an n x n grid of codes over a 2-D plane, VAE beside AE."""

import numpy as np
import streamlit as st

from explorer import claims, figures, links, models, timing
from explorer.sidebar import dims_for, offer_2d_pair, sidebar

st.set_page_config(page_title="Latent grid · VAE Latent Explorer", page_icon="🔲", layout="wide")
st.title("Latent grid")
st.markdown("Each cell is the image the decoder draws for one point of a regular grid laid over a plane "
            "of latent space. A VAE's grid should change smoothly and show a digit almost everywhere; "
            "an AE's can break into smudges where no training code landed.")
notice = st.container()

sel = sidebar("grid")
if sel is None:
    st.stop()
offer_2d_pair(sel, "A grid can only cover a 2-D slice of them; with d = 2 it covers the whole latent space.")

N_CODES = 2000     # codes used for the data range, the principal plane and the map below
d = sel.latent_dim
kl = models.kl_per_dim(sel.vae, models.ckpt_key(sel.vae), sel.dataset)


# Range and plane change both the mosaics and the map: a full rerun. The grid size changes only the
# mosaics, so its slider lives in a fragment with them and a move never resends the maps.
c1, c2 = st.columns([2, 3])
links.restore("grid_span", links.one_of(["prior", "data"]))
links.restore("grid_q", links.float_in(0.005, 0.2, 0.005))
span = c1.segmented_control("Range", ["prior", "data"], default="prior", required=True, key="grid_span",
                            format_func={"prior": "Prior quantiles", "data": "Data range"}.get,
                            help="Prior: each axis runs between two quantiles of N(0, 1), the region "
                                 "samples come from. Data: between percentiles of the codes themselves.") or "prior"
q = c2.slider("Tail left out at each end", 0.005, 0.2, 0.05, step=0.005, format="%.3f", key="grid_q",
              help="0.05 spans the prior's 5% to 95% quantiles (±1.64) or the codes' 5th to 95th percentiles.")
links.publish("grid_span", span)
links.publish("grid_q", q)
plane, dims = "dims", (0, 1)
if d > 2:
    p1, p2, p3 = st.columns([2, 2, 2])
    plane = p1.radio("Plane (d > 2)", ["dims", "pca"], key="grid_plane", horizontal=True,
                     format_func={"dims": "Two dimensions", "pca": "Principal plane"}.get,
                     help="Two dimensions: the others stay at the data mean. Principal plane: "
                          "the two directions along which each model's codes vary most.")
    order = list(np.argsort(-kl)) if kl is not None else list(range(d))
    if plane == "dims":
        i = p2.selectbox("Horizontal axis", range(d), index=int(order[0]), key="grid_dim_u",
                         format_func=lambda k: f"z{k}" + (f" (KL {kl[k]:.2f})" if kl is not None else ""))
        j = p3.selectbox("Vertical axis", range(d), index=int(order[1]), key="grid_dim_v",
                         format_func=lambda k: f"z{k}" + (f" (KL {kl[k]:.2f})" if kl is not None else ""))
        if i == j:
            st.warning("Choose two different dimensions.")
            st.stop()
        dims = (int(i), int(j))
        p2.caption("Defaults: the VAE's two dimensions with the most KL (the most informative). "
                   "The AE's dimensions have no such order.")
    else:
        p2.caption("Each model gets its own principal plane, through the mean of its codes.")

# The dimensions are chosen on the VAE; a model with fewer gets the nearest pair it has.
latent = {label: int(info["model_config"]["latent_dim"]) for label, _, info in sel.pair}
model_dims = {label: dims_for(dims, latent[label]) for label in latent}


def what_to_notice() -> str:
    """The line under the title: what a digit classifier makes of each model's 15 × 15 grid over
    the range chosen, and why, in the words that fit the latent size on screen."""
    judged = {}
    for label, ckpt, info in sel.pair:
        g = models.grid(ckpt, models.ckpt_key(ckpt), sel.dataset, N_CODES, 15, plane, model_dims[label], span, q)
        judged[label] = models.judge(sel.dataset, models.grid_cells(g))
    if any(j is None for j in judged.values()):
        return ""
    text = ("**Notice:** a digit classifier finds, in the 15 × 15 grid, " +
            "; ".join(claims.judgement_caption(j, f"the {label}") for label, j in judged.items()) + ". ")
    if "AE" in judged and span == "prior":
        text += ("The prior's range is where the VAE's codes are; the AE's codes lie elsewhere, so this box "
                 "shows only a corner of its space. ")
        if latent["AE"] == 2:
            text += ("In two dimensions an AE's decoder still fills the gaps between its codes with digits; "
                     "with many dimensions (try the 20-D pair) its grid falls apart.")
        elif judged["AE"]["frac"] < judged["VAE"]["frac"]:
            text += ("With this many dimensions the AE's decoder has never been trained on most of the "
                     "plane, and its grid shows it.")
    return text


def plane_text(label: str) -> str:
    """Which plane a model's grid covers, in words."""
    if latent[label] == 2:
        return "Plane: the whole 2-D latent space."
    if plane == "pca":
        return "Plane: this model's own principal plane, PC1 × PC2."
    i, j = model_dims[label]
    text = f"Plane: z{i} × z{j}, the other dimensions at the mean of this model's codes."
    swaps = [f"z{new} for z{old}" for old, new in zip(dims, model_dims[label]) if old != new]
    if swaps:
        text += f" The {label} has only {latent[label]} dimensions, so it shows {' and '.join(swaps)}."
    return text


@timing.fragment
def mosaics(span: str, q: float, plane: str, model_dims: dict):
    links.restore("grid_n", links.int_in(3, 30))
    n = st.slider("Grid size (n × n)", 3, 30, 15, key="grid_n")
    links.publish("grid_n", n)
    # No spinner: even a 30 x 30 grid decodes in tens of milliseconds, and each st.spinner
    # starts a timer thread, a cost every slider move would pay.
    grids = {label: models.grid(ckpt, models.ckpt_key(ckpt), sel.dataset, N_CODES, n, plane, model_dims[label], span, q)
             for label, ckpt, info in sel.pair}
    cols = st.columns(len(sel.pair))
    for col, (label, ckpt, info) in zip(cols, sel.pair):
        g = grids[label]
        every = max(1, n // 6)
        with col:
            figures.show_mosaic(g["image"], f"grid_fig_{label}", height=600, title=f"{label}: {info['name']}",
                                x_ticks=figures.mosaic_ticks(g["u"], g["cell"], pad=0, every=every),
                                y_ticks=figures.mosaic_ticks(g["v"][::-1], g["cell"], pad=0, every=every),
                                x_title=g["labels"][0], y_title=g["labels"][1])
            st.caption(plane_text(label))
            figures.export_buttons(g["image"], f"grid-{info['name']}-{n}x{n}", f"grid_{label}",
                                   f"{label} mosaic", title=f"{label}: {info['name']}",
                                   cols=figures.mosaic_ticks(g["u"], g["cell"], pad=0, every=every),
                                   rows=figures.mosaic_ticks(g["v"][::-1], g["cell"], pad=0, every=every),
                                   x_title=g["labels"][0], y_title=g["labels"][1],
                                   scale=max(1, 1600 // g["image"].shape[1]))


notice.markdown(what_to_notice())
mosaics(span, q, plane, model_dims)

if st.toggle("Show where the grid lies on the codes", value=True, key="grid_show_map"):
    cols = st.columns(len(sel.pair))
    for col, (label, ckpt, info) in zip(cols, sel.pair):
        key = models.ckpt_key(ckpt)
        g = models.grid(ckpt, key, sel.dataset, N_CODES, 2, plane, model_dims[label], span, q)   # the extent only
        pl = models.plane(ckpt, key, sel.dataset, N_CODES, plane, model_dims[label])
        c = models.codes(ckpt, key, sel.dataset, N_CODES)
        u, v = g["u"], g["v"]
        inside = ((pl["xy"][:, 0] >= u[0]) & (pl["xy"][:, 0] <= u[-1]) &
                  (pl["xy"][:, 1] >= v[0]) & (pl["xy"][:, 1] <= v[-1])).mean()
        mfig = figures.scatter_codes_shared(pl["xy"], c["labels"], models.exploration_data(sel.dataset).classes,
                                            title=f"{label} codes in this plane", axis_titles=g["labels"],
                                            rect=(u[0], u[-1], v[0], v[-1]), prior=latent[label] == 2,
                                            height=420, marker_size=3, picture=True)
        with col:
            figures.chart(mfig, f"grid_map_{label}")
            st.caption(f"{inside:.0%} of {len(pl['xy'])} test codes fall inside the dashed box." +
                       (" Codes are projected onto the plane; other dimensions are not at the mean for them."
                        if latent[label] > 2 else ""))

with st.expander("What to look for, and what can mislead"):
    st.markdown(
        "- **Smooth change** from cell to cell means nearby codes decode to similar images: the space is "
        "continuous. The KL term pushes the VAE towards this; the AE has no such pressure.\n"
        "- **Prior range vs data range.** With the prior range the VAE grid covers where samples come from. "
        "An AE's codes can live far from the origin at any scale, so its prior-range grid may show mostly "
        "one blurry shape: switch to the data range to see its own region.\n"
        "- **A slice, not the whole.** When d > 2 the grid shows one plane; the other dimensions are held "
        "at the data mean, a point that may itself decode to a blend. Dimensions with little KL barely "
        "change the image: the VAE has switched them off.\n"
        "- **Cells are decoder means**, the average image p(x|z) predicts, so they look smoother than "
        "any sample from it.")

links.sidebar_link()
