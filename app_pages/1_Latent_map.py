"""Latent map: where each model puts the test images, coloured by class, VAE beside AE."""
import os
import time
from functools import partial

import numpy as np
import streamlit as st

from explorer import charts, claims, figures, links, models, timing
from explorer.sidebar import offer_2d_pair, sidebar

st.set_page_config(page_title="Latent map · VAE Latent Explorer", page_icon="🗺️", layout="wide")
st.title("Latent map")
st.markdown("Every dot is a test image, placed at its code and coloured by its digit. Click a dot to "
            "see the image and what each model makes of it.")
notice = st.container()

sel = sidebar("map")
if sel is None:
    st.stop()
offer_2d_pair(sel, "With d = 2 the map shows the latent space itself, with the VAE's posterior bubbles.")

EXPLAIN = {
    "raw": "**Raw 2-D**: the latent space itself, no projection. Distances and empty regions are real. "
           "The circles are the prior N(0, I) at 1σ and 2σ. A VAE's dots are posterior means μ(x); the KL "
           "term pulls them, with their bubbles, towards the prior. An AE's codes may sit anywhere and at "
           "any scale.",
    "pca": "**PCA** shows the flat plane along which the codes vary most. It is linear: straight lines "
           "stay straight, and a distance in the plane is never more than the real distance between "
           "the codes, only less. So dots far apart here are far apart, but dots close here may not be: "
           "clusters apart in the other d − 2 dimensions, which are hidden, can overlap.",
    "tsne": "**t-SNE** keeps each point's nearest neighbours together. Cluster sizes, the gaps between "
            "clusters and empty space mean little: a blob can look separated or tight when it is not, "
            "and a different seed can move clusters around. Use it to see which classes mix.",
    "umap": "**UMAP** also keeps neighbourhoods and tends to keep more of the global layout than t-SNE, "
            "but distances and densities are still distorted, and the empty space between clusters "
            "is not evidence of holes in the latent space.",
}
LABELS = {"raw": "Raw 2-D", "pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}

dims = {label: int(info["model_config"]["latent_dim"]) for label, _, info in sel.pair}
all_2d = all(d == 2 for d in dims.values())
methods = ["raw"] if all_2d else ["pca", "tsne", "umap"]
data_n = len(models.exploration_data(sel.dataset))

c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
sizes = [n for n in (500, 1000, 2000, 5000, 10000) if n <= data_n] or [data_n]
links.restore("map_method", links.one_of(methods))
links.restore("map_n", links.one_of(sizes))
links.restore("map_seed", links.int_in(0, 9999))
method = c1.segmented_control("Projection", methods, default=methods[0], key="map_method",
                              format_func=LABELS.get, required=True,
                              help="How codes with more than two dimensions are drawn on a plane.")
method = method or methods[0]
n_points = c2.select_slider("Points", sizes, value=2000 if 2000 in sizes else sizes[-1], key="map_n",
                            help="How many test images to encode and draw. The shipped models' maps are "
                                 "precomputed; for a new model, both t-SNE or UMAP maps of 2,000 codes take "
                                 "one to two seconds on 2 cores, of 10,000 codes about ten, while the page stays "
                                 "usable (large UMAP maps compute on the training engine's workers; the first "
                                 "also starts them, about 25 s). Each map is computed once, then kept on disk.")
seed = int(c3.number_input("Seed", 0, 9999, 0, key="map_seed",
                           help="t-SNE and UMAP depend on it; raw and PCA do not.", disabled=method in ("raw", "pca")))
for key, value in (("map_method", method), ("map_n", n_points), ("map_seed", seed)):
    links.publish(key, value)
has_bubbles = dims.get("VAE") == 2
show_bubbles, n_bubbles = False, 0
if has_bubbles:
    with c4:
        show_bubbles = st.toggle("Posterior bubbles", value=True, key="map_bubbles",
                                 help="An ellipse around some of the VAE's posterior means: ±σ, enlarged by a "
                                      "stated factor when the bubbles are too small to see.")
        n_bubbles = st.slider("Bubbles drawn", 20, 400, 150, step=10, key="map_n_bubbles",
                              disabled=not show_bubbles)
else:
    c4.caption("Posterior bubbles are drawn for a 2-D VAE: use the 2-D pair to see them.")
st.caption(EXPLAIN[method])
if any(d == 2 for d in dims.values()) and not all_2d:
    st.caption("A model with d = 2 is drawn as it is: a projection of a plane would only distort it.")

# A t-SNE or UMAP map that is not ready is computed in the background (explorer.maps), the
# VAE's and the AE's side by side. The page first waits for it under a progress bar, keeping the
# maps it showed before on screen (WAIT_S: a 2,000-code map is ready within it); a map that takes
# longer is replaced meanwhile by the map the page showed before (same points) or by the PCA
# map, and the page redraws itself when the new one is ready (such a map computes on the training
# engine's workers: explorer.maps.start). VAE_MAP_WAIT_S sets the wait.
try:
    WAIT_S = max(0.0, float(os.environ.get("VAE_MAP_WAIT_S", "4")))
except ValueError:
    WAIT_S = 4.0
progress_slot = st.empty()
maps, pending, stand_in = {}, {}, {}
for label, ckpt, info in sel.pair:
    key = models.ckpt_key(ckpt)
    m = "raw" if dims[label] == 2 else method
    if m in ("tsne", "umap"):
        xy = models.map_ready(ckpt, key, sel.dataset, n_points, m, seed)
        if xy is None:
            pending[label] = models.start_map(ckpt, key, sel.dataset, n_points, m, seed, WAIT_S)
            continue
        maps[label] = xy
    else:
        maps[label] = models.map_2d(ckpt, key, sel.dataset, n_points, m, seed)


def progress_text(jobs, previous: bool = False) -> tuple[float, str]:
    """The bar's fraction and text; previous: the page still shows what its last run drew (a short
    wait blocks this run, and the browser keeps the last run's elements meanwhile: this page's maps,
    or another page's elements after a switch)."""
    left = max(j.seconds_left() or 0.0 for j in jobs)
    return (min(j.progress() for j in jobs),
            f"Computing the {LABELS[method]} map of {n_points} codes (seed {seed})"
            + "".join(sorted({f" {j.where}" for j in jobs if j.where}))
            + (f", about {left:.0f} s left" if left >= 1 else ", nearly done")
            + (". Until it is ready: " + "; ".join(f"the {label}'s {what}" for label, what in stand_in.items())
               if stand_in else ". Until it is ready, what is below is from before" if previous
               else "") + ".")


if pending and max(j.expected_s for j in pending.values()) <= WAIT_S:
    deadline = time.monotonic() + WAIT_S
    while not all(j.done.is_set() for j in pending.values()) and time.monotonic() < deadline:
        progress_slot.progress(*progress_text(pending.values(), previous=any(
            f"map_last_{label}" in st.session_state for label in pending)))
        # Wake the moment the maps are done; otherwise redraw the bar every 0.3 s (each redraw
        # costs the browser CPU time that the maps are computing with). A control moved meanwhile
        # takes effect at the next redraw, so at most 0.3 s later.
        until = min(deadline, time.monotonic() + 0.3)
        for j in pending.values():
            j.done.wait(max(0.0, until - time.monotonic()))
    progress_slot.empty()
failed = [j.error for j in pending.values() if j.error]
if failed:
    st.error(f"The {LABELS[method]} map could not be computed ({failed[0]}). Try PCA, or another seed.",
             icon=":material/error:")
for label, job in list(pending.items()):
    if job.done.is_set() and job.result is not None:
        maps[label] = job.result
        del pending[label]
for label, ckpt, info in sel.pair:
    last = st.session_state.get(f"map_last_{label}")
    key = models.ckpt_key(ckpt)
    if label in pending:
        if last and last["key"] == key and len(last["xy"]) == n_points:
            maps[label], stand_in[label] = last["xy"], last["what"]
        else:
            maps[label] = models.map_2d(ckpt, key, sel.dataset, n_points, "pca", seed)
            stand_in[label] = "PCA map"
    else:
        m = "raw" if dims[label] == 2 else method
        st.session_state[f"map_last_{label}"] = {
            "key": key, "xy": maps[label],
            "what": f"{LABELS[m]} map" + (f" (seed {seed})" if m in ("tsne", "umap") else "")}

if any(not j.done.is_set() for j in pending.values()):
    @timing.fragment(run_every=0.4)
    def wait_for_maps():
        jobs = [j for j in pending.values() if not j.error]
        if all(j.done.is_set() for j in jobs):
            st.rerun()
        st.progress(*progress_text(jobs))

    with progress_slot.container():
        wait_for_maps()


def axis_titles(label: str):
    if dims[label] == 2:
        return ("z0", "z1")
    if label in stand_in:
        return ("", "")
    return {"pca": ("PC1", "PC2"), "tsne": ("t-SNE 1", "t-SNE 2"), "umap": ("UMAP 1", "UMAP 2")}[method]


def picked_index() -> int | None:
    """The data index of the last dot clicked on either map (None before any click)."""
    for k in ("map_chart_VAE", "map_chart_AE"):
        idx = charts.clicked(k)
        if idx is not None:
            st.session_state["map_picked"] = idx
    idx = st.session_state.get("map_picked")
    return idx if idx is not None and 0 <= idx < data_n else None   # a pick from a larger dataset


# Read the click before drawing: the ring must mark the dot just clicked, not the one before it.
# The pick travels with the view's link: a class opening the teacher's link sees the same image.
links.restore("map_picked", links.int_in(0, data_n - 1))
idx = picked_index()
if idx is not None:
    links.publish("map_picked", int(idx))
reach = {label: claims.reach(models.codes(ckpt, models.ckpt_key(ckpt), sel.dataset, n_points)["mu"])
         for label, ckpt, _ in sel.pair}
text = ("**Notice:** 99 % of the " + "; of the ".join(f"{label}'s code coordinates lie within ±{r:.1f}"
                                                     for label, r in reach.items()) + ". ")
if "AE" in reach and reach["AE"] > 2 * reach["VAE"]:
    text += ("The KL term holds the VAE's codes at the prior's scale, each image a bubble; nothing holds "
             "the AE's, which sit wherever training left them.")
elif "AE" in reach:
    text += ("Here the two spread about as far: this VAE's prior term is weak against its reconstruction term "
             "(a small β, or a Gaussian likelihood with a small σ, acts like one).")
notice.markdown(text)
cols = st.columns(len(sel.pair))
for col, (label, ckpt, info) in zip(cols, sel.pair):
    c = models.codes(ckpt, models.ckpt_key(ckpt), sel.dataset, n_points)
    bubbles = label == "VAE" and has_bubbles and show_bubbles
    title = f"{label}: {stand_in[label]} for now" if label in stand_in else f"{label}: {info['name']}"
    scale = claims.bubble_scale(c["mu"], c["sigma"]) if bubbles else 1
    if bubbles:
        title += " · " + claims.bubble_title(scale)
    fig = figures.scatter_codes(
        maps[label], c["labels"], models.exploration_data(sel.dataset).classes, title=title,
        axis_titles=axis_titles(label), sigma=scale * c["sigma"] if bubbles else None,
        n_ellipses=n_bubbles if bubbles else 0, prior=dims[label] == 2,
        marks=None, height=560)
    if idx is not None and idx < n_points:
        fig.add_shape(charts.ring(*maps[label][idx], f"image {idx}"))
    with col:
        figures.chart(fig, f"map_chart_{label}", clickable=True)
        if dims[label] == 2:
            text = claims.range_caption(maps[label])
            if label == "VAE" and c["sigma"] is not None:
                text += " " + claims.prior_fit_caption(claims.prior_fit(c["mu"], c["sigma"]))
                if bubbles:
                    text += " " + claims.bubble_caption(c["sigma"], scale)
            elif label == "AE":
                text += " Nothing ties the AE's codes to a scale or to the origin."
            st.caption(text)

st.subheader("The image you picked")
if idx is None:
    st.info("Click a dot on either map to see its image and both reconstructions here. "
            "The interpolation page can start from the last two images you pick.", icon=":material/touch_app:")
else:
    picks = st.session_state.setdefault("map_picks", [])
    if not picks or picks[-1] != idx:
        picks.append(idx)
        del picks[:-2]
    imgs = [models.images(sel.dataset, [idx])[0]]
    names = [f"test image {idx}" + (f" (class {models.labels(sel.dataset)[idx]})"
                                    if models.labels(sel.dataset) is not None else "")]
    for label, ckpt, info in sel.pair:
        imgs.append(models.reconstruct(ckpt, models.ckpt_key(ckpt), sel.dataset, (idx,))[0])
        names.append(f"{label} reconstruction")
    for c, img, name in zip(st.columns(4), imgs, names):
        c.image(figures.upscale(img, 168), output_format="PNG", caption=name)
    st.download_button("Download the image and its reconstructions (PNG)",
                       partial(figures.png_bytes, figures.tile(np.stack(imgs), ncols=len(imgs)), scale=4),
                       file_name=f"map-image-{idx}.png", mime="image/png", key="map_pick_png", on_click="ignore")
    if sel.pair[0][2]["model_config"]["latent_dim"] <= 8 and maps:
        mu = models.codes(sel.vae, models.ckpt_key(sel.vae), sel.dataset, max(n_points, idx + 1))
        st.caption(f"VAE posterior: μ = {figures.vector_text(mu['mu'][idx])}, "
                   f"σ = {figures.vector_text(mu['sigma'][idx])}")

links.sidebar_link()
