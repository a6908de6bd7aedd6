"""Interpolation: walk in a straight line (or along an arc) between the codes of two images."""
from functools import partial

import numpy as np
import streamlit as st

from explorer import figures, links, models, timing
from explorer.sidebar import sidebar

st.set_page_config(page_title="Interpolation · VAE Latent Explorer", page_icon="↔️", layout="wide")
st.title("Interpolation")
st.markdown("Encode two images, walk from one code to the other, and decode every step. In a VAE the "
            "walk stays among codes the decoder has learnt to use; an AE's path can cross empty space "
            "where the decoder was never trained, and the images in the middle show it.")
notice = st.container()

sel = sidebar("interp")
if sel is None:
    st.stop()

data = models.exploration_data(sel.dataset)
labels = models.labels(sel.dataset)
classes = None
if labels is not None:
    classes = data.classes or [str(c) for c in range(int(labels.max()) + 1)]
N_CODES = 2000

# ------------------------------------------------------------------ choosing the two images
st.subheader("1 · Choose two images")
modes = ["class", "index", "random", "map"] if labels is not None else ["index", "random", "map"]
links.restore("interp_mode", links.one_of(modes))
mode = st.segmented_control("Pick by", modes, default=modes[0], required=True, key="interp_mode",
                            format_func={"class": "Class", "index": "Index", "random": "Random",
                                         "map": "From the map"}.get) or modes[0]
links.publish("interp_mode", mode)


def nth_of_class(c: int, k: int) -> int:
    where = np.flatnonzero(labels == c)
    return int(where[k % len(where)]) if len(where) else 0


if mode == "class":
    a, b = st.columns(2)
    for key, hi in (("interp_class_a", len(classes) - 1), ("interp_class_b", len(classes) - 1),
                    ("interp_k_a", 999), ("interp_k_b", 999)):
        links.restore(key, links.int_in(0, hi))
    # 7 → 3 by default: on the shipped 2-D pair the AE's path between them leaves its codes far
    # behind (about 7× the typical gap) while the VAE's stays near codes (under 2×).
    ca = a.selectbox("Start class", range(len(classes)), index=7 % len(classes), key="interp_class_a",
                     format_func=lambda c: classes[c])
    ka = a.number_input("Which example of it", 0, 999, 0, key="interp_k_a")
    cb = b.selectbox("End class", range(len(classes)), index=3 % len(classes), key="interp_class_b",
                     format_func=lambda c: classes[c])
    kb = b.number_input("Which example of it", 0, 999, 0, key="interp_k_b")
    i0, i1 = nth_of_class(ca, ka), nth_of_class(cb, kb)
    for key, value in (("interp_class_a", ca), ("interp_class_b", cb), ("interp_k_a", ka), ("interp_k_b", kb)):
        links.publish(key, int(value))
elif mode == "index":
    a, b = st.columns(2)
    for key in ("interp_idx_a", "interp_idx_b"):
        links.restore(key, links.int_in(0, len(data) - 1))
    i0 = int(a.number_input("Start image index", 0, len(data) - 1, 0, key="interp_idx_a"))
    i1 = int(b.number_input("End image index", 0, len(data) - 1, 1, key="interp_idx_b"))
    links.publish("interp_idx_a", i0)
    links.publish("interp_idx_b", i1)
elif mode == "random":
    if st.button("New random pair", key="interp_random"):
        st.session_state["interp_seed"] = st.session_state.get("interp_seed", 0) + 1
    rng = np.random.default_rng(st.session_state.get("interp_seed", 0))
    i0, i1 = (int(v) for v in rng.choice(len(data), 2, replace=False))
else:
    picks = [p for p in st.session_state.get("map_picks", []) if 0 <= int(p) < len(data)]
    if len(picks) < 2:
        st.info("Click two dots on the **Latent map** page first; the last two you click are used here. "
                "Until then, the first two test images are shown.", icon=":material/scatter_plot:")
        i0, i1 = 0, 1
    else:
        i0, i1 = int(picks[-2]), int(picks[-1])

c1, c2 = st.columns(2)
links.restore("interp_method", links.one_of(["lerp", "slerp"]))
links.restore("interp_steps", links.int_in(3, 25))
method = c1.segmented_control("Path", ["lerp", "slerp"], default="lerp", required=True, key="interp_method",
                              format_func={"lerp": "Linear", "slerp": "Spherical"}.get,
                              help="Linear: a straight line. Spherical: an arc around the origin. If the two "
                                   "codes have the same length, the arc keeps that length all the way; if not, "
                                   "the length changes along it. This matters in many dimensions: there N(0, I) "
                                   "puts almost all its samples near radius √d, so the centre is nearly empty "
                                   "and a straight line between two codes dips towards it. In 2-D there is no "
                                   "such shell: the prior is densest at the origin.") or "lerp"
steps = c2.slider("Steps (endpoints included)", 3, 25, 11, key="interp_steps")
links.publish("interp_method", method)
links.publish("interp_steps", steps)

paths = {label: models.path(ckpt, models.ckpt_key(ckpt), sel.dataset, i0, i1, steps, method)
         for label, ckpt, _ in sel.pair}
ends = models.images(sel.dataset, [i0, i1])


def describe(i: int) -> str:
    return f"image {i}" + (f" (a {classes[labels[i]]})" if labels is not None else "")


# ------------------------------------------------------------------ the slider: only this part reruns
st.subheader("2 · Walk along the path")


@timing.fragment
def walk():
    links.restore("interp_t", links.int_in(0, steps - 1))
    if st.session_state.get("interp_t", 0) > steps - 1:      # fewer steps than the link's step
        st.session_state["interp_t"] = steps - 1
    t = st.slider("Step along the path", 0, steps - 1, steps // 2, key="interp_t",
                  help="0 is the start image's code, the last step the end image's.")
    links.publish("interp_t", t)
    cols = st.columns(2 + len(sel.pair))
    cols[0].image(figures.upscale(ends[0], 140), output_format="PNG", caption=f"start: {describe(i0)}")
    for col, (label, ckpt, info) in zip(cols[1:], sel.pair):
        col.image(figures.upscale(paths[label]["images"][t], 140), output_format="PNG",
                  caption=f"{label} at step {t} of {steps - 1}")
    cols[-1].image(figures.upscale(ends[1], 140), output_format="PNG", caption=f"end: {describe(i1)}")
    # The PNG is made only on a click (a callable), so a slider move pays nothing for it.
    shown = np.stack([ends[0]] + [paths[label]["images"][t] for label, _, _ in sel.pair] + [ends[1]])
    st.download_button("Download these images (PNG)",
                       partial(figures.png_bytes, figures.tile(shown, ncols=len(shown)), scale=4),
                       file_name=f"interpolation-{i0}-{i1}-{method}-step{t}.png", mime="image/png",
                       key="interp_walk_png", on_click="ignore")
    st.session_state["interp_shown_t"] = t


walk()

# ------------------------------------------------------------------ every step at once
st.subheader("3 · All steps")
rows = [paths[label]["images"] for label, _, _ in sel.pair]
strip = figures.tile(np.concatenate(rows), ncols=steps)
h = rows[0].shape[-2]
names = [f"{label}" for label, _, _ in sel.pair]
figures.show_mosaic(strip, "interp_strip", height=110 * len(rows) + 60,
                    x_ticks=figures.mosaic_ticks(list(range(steps)), h, every=max(1, steps // 12)),
                    y_ticks=([1 + i * (h + 1) + (h - 1) / 2 for i in range(len(rows))], names), x_title="step")
figures.export_buttons(strip, f"interpolation-{i0}-{i1}-{method}", "interp", "The strip",
                       title=f"{describe(i0)} → {describe(i1)}, {'linear' if method == 'lerp' else 'spherical'} path",
                       rows=([1 + i * (h + 1) + (h - 1) / 2 for i in range(len(rows))],
                             [f"{label}: {info['name']}" for label, _, info in sel.pair]),
                       cols=figures.mosaic_ticks(list(range(steps)), h, every=max(1, steps // 12)),
                       x_title="step", scale=4)

# ------------------------------------------------------------------ the path on the map
st.subheader("4 · The path through latent space")
st.caption("The path drawn over each model's test codes: the latent space itself when d = 2, else its "
           "principal plane (PCA is linear, so a straight path stays straight; t-SNE and UMAP cannot place "
           "new points faithfully, so they are not offered here). A projection can hide that the path is "
           "far from the codes in the other dimensions: the distance chart below measures it in full.")
# Everything is computed before anything of this part is drawn: the notice at the top is filled
# first, so the page above the charts has its final height when they arrive (explorer/charts.py
# draws a chart below the fold only once it comes near).
maps, dist = {}, {}
for label, ckpt, info in sel.pair:
    key = models.ckpt_key(ckpt)
    dim = int(info["model_config"]["latent_dim"])
    pl = models.plane(ckpt, key, sel.dataset, N_CODES, "pca", (0, 1))
    c = models.codes(ckpt, key, sel.dataset, N_CODES)
    p2 = models.to_plane(pl, paths[label]["z"])
    maps[label] = figures.scatter_codes_shared(pl["xy"], c["labels"], data.classes, title=f"{label}: {info['name']}",
                                               axis_titles=pl["labels"], prior=dim == 2, path=p2, height=460,
                                               marker_size=3, picture=True)
    gap = models.typical_gap(ckpt, key, sel.dataset, N_CODES)
    dist[label] = models.nearest_code_distance(ckpt, key, sel.dataset, N_CODES, paths[label]["z"]) / max(gap, 1e-12)

fig = figures.line_chart({f"{label}": v for label, v in dist.items()}, x=list(range(steps)),
                         title="Distance from each step to the nearest test code",
                         y_title="× typical gap between codes", x_title="step", height=300)
fig.add_hline(y=1.0, line=dict(color="grey", dash="dot"))
far = {label: float(np.max(v)) for label, v in dist.items()}
text = ("**Notice:** along this path the " +
        "; the ".join(f"{label}'s steps stray at most {v:.1f}× the typical gap from any test code"
                      for label, v in far.items()) + ". ")
if "AE" in far and far["AE"] > far["VAE"]:
    text += "The AE's middle steps cross space its decoder was never trained on."
elif "AE" in far:
    text += ("For this pair the AE's path stays as close to its codes as the VAE's: try another pair "
             "(7 → 3 and 2 → 7 show the difference on the shipped 2-D pair).")
notice.markdown(text)
for col, label in zip(st.columns(len(maps)), maps):
    figures.chart(maps[label], f"interp_map_{label}", where=col)
figures.chart(fig, "interp_dist")
st.caption("Distances are divided by each model's median distance between a code and its nearest neighbour, "
           f"measured on {min(N_CODES, len(data))} test codes, so the two models compare despite their different scales. "
           "Values well above 1 mean the step lies in empty space, where the decoder has seen no data: "
           "watch the AE's middle steps.")

links.sidebar_link()
