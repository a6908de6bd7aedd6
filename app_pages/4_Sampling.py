"""Sampling and traversal: decode codes drawn from the prior, move along one latent dimension at a
time, and encode a digit you draw."""
from functools import partial

import numpy as np
import streamlit as st

from explorer import claims, figures, links, models, timing
from explorer.sidebar import sidebar
from vae_core.errors import DataError

st.set_page_config(page_title="Sampling · VAE Latent Explorer", page_icon="🎲", layout="wide")
st.title("Sampling and traversal")

sel = sidebar("sampling")
if sel is None:
    st.stop()
data = models.exploration_data(sel.dataset)
N_CODES = 2000

tab_samples, tab_traverse, tab_draw = st.tabs(["Samples from the prior", "Traverse one dimension",
                                               "Draw your own digit"])

# ------------------------------------------------------------------ prior samples
with tab_samples:
    st.markdown("Draw codes from the prior N(0, T²·I) and decode them. The VAE was trained so that its "
                "codes fill this distribution, so most samples should look like digits. The AE was never "
                "asked to put its codes there: its samples show what its decoder makes of points it may "
                "never have seen.")

    def ae_prior_note(judged: dict) -> str:
        """Why the AE's samples look the way they do, for the latent size on screen."""
        if sel.ae is None:
            return ""
        ae_dim = int(sel.ae_info["model_config"]["latent_dim"])
        c = models.codes(sel.ae, models.ckpt_key(sel.ae), sel.dataset, N_CODES)
        radius = 2.0 * np.sqrt(ae_dim)
        inside = float(np.mean(np.linalg.norm(c["mu"], axis=1) <= radius))
        where = (f"{inside:.0%} of the AE's test codes lie within radius 2√d = {radius:.1f} of the origin, "
                 f"where {claims.prior_mass_within(radius, ae_dim):.0%} of the prior's draws fall, ")
        if ae_dim == 2:
            return (where + "so these samples land in one corner of its space and repeat the few digits "
                    "coded there. They still look like digits because in two dimensions its decoder fills "
                    "the gaps between codes; with many dimensions (the 20-D pair) most of the space is gap, "
                    "and the AE's samples turn into smudges.")
        return where + "and with this many dimensions most of the space around them is empty to its decoder."

    @timing.fragment
    def samples_view():
        c1, c2, c3 = st.columns([2, 3, 1], vertical_alignment="bottom")
        links.restore("samp_n", links.one_of([16, 25, 36, 64, 100]))
        links.restore("samp_temp", links.float_in(0.1, 2.0, 0.1))
        n = c1.select_slider("Samples", [16, 25, 36, 64, 100], value=36, key="samp_n")
        temp = c2.slider("Temperature T", 0.1, 2.0, 1.0, step=0.1, key="samp_temp",
                         help="The standard deviation of the codes drawn: below 1 stays near the centre "
                              "(cleaner, less varied), above 1 reaches the prior's tails.")
        if "samp_seed" not in st.session_state:          # a link's samples: the same codes drawn
            try:
                st.session_state["samp_seed"] = links.int_in(0, 10**6)(st.query_params.get("samp_seed", "0"))
            except ValueError:
                st.session_state["samp_seed"] = 0
        if c3.button("Resample", key="samp_resample", icon=":material/casino:"):
            st.session_state["samp_seed"] = st.session_state["samp_seed"] + 1
        seed = st.session_state["samp_seed"]
        for key, value in (("samp_n", n), ("samp_temp", temp), ("samp_seed", seed)):
            links.publish(key, value)
        cols = st.columns(len(sel.pair))
        ncols = int(np.ceil(np.sqrt(n)))
        judged = {}
        for col, (label, ckpt, info) in zip(cols, sel.pair):
            s = models.samples(ckpt, models.ckpt_key(ckpt), n, seed, float(temp))
            judged[label] = models.judge(sel.dataset, s["images"])
            mosaic = figures.tile(s["images"], ncols=ncols)
            with col:
                figures.show_mosaic(mosaic, f"samp_fig_{label}", height=520, title=f"{label}: {info['name']}")
                figures.export_buttons(mosaic, f"samples-{info['name']}-T{temp:g}-seed{seed}", f"samp_{label}",
                                       f"{label} samples",
                                       title=f"{label}: {info['name']}, z ~ N(0, {temp:g}²·I), seed {seed}",
                                       scale=max(1, 1200 // mosaic.shape[1]))
        if all(j is not None for j in judged.values()):
            st.markdown("**Notice:** a digit classifier finds " +
                        "; ".join(claims.judgement_caption(j, f"the {label}") for label, j in judged.items()) +
                        ". " + ae_prior_note(judged))
        st.caption(f"The same random codes (seed {seed}) go into both decoders. "
                   "Samples are decoder means, so they look smoother than draws from p(x|z) would. "
                   "A model whose samples look good can still have a poor likelihood, and the reverse.")

    samples_view()

# ------------------------------------------------------------------ traversal
with tab_traverse:
    st.markdown("Start from one code and change a single latent dimension, keeping the others fixed. "
                "Dimensions are listed by the VAE's average KL: the ones at the top carry most of the "
                "information; those near zero KL are unused (their posterior equals the prior), so "
                "moving along them changes nothing.")
    kl = models.kl_per_dim(sel.vae, models.ckpt_key(sel.vae), sel.dataset)
    d = sel.latent_dim
    order = np.argsort(-kl) if kl is not None else np.arange(d)
    if kl is not None:
        figures.chart(figures.bar_kl(kl, order, title="VAE: mean KL per latent dimension (sorted)"),
                      "trav_kl")
        src = "stored in the checkpoint" if (sel.vae.metrics or {}).get("kl_per_dim") else \
            f"measured on {min(N_CODES, len(data))} test images"
        st.caption(f"KL per dimension, {src}. Total {kl.sum():.1f} nats; "
                   f"{int((kl > 0.01 * max(kl.max(), 1e-9)).sum())} of {d} dimensions are in use.")

    @timing.fragment
    def traverse_view():
        c1, c2, c3 = st.columns([2, 2, 3])
        dim = c1.selectbox("Dimension", [int(i) for i in order], key="trav_dim",
                           format_func=lambda i: f"z{i}" + (f" · KL {kl[i]:.2f} nats" if kl is not None else ""))
        base = c2.radio("Start from", ["origin", "image"], key="trav_base", horizontal=True,
                        format_func={"origin": "the origin (z = 0)", "image": "a test image"}.get)
        idx = 0
        if base == "image":
            idx = int(c2.number_input("Test image index", 0, len(data) - 1, 0, key="trav_idx"))
        r = c3.slider("Range (in standard deviations)", 0.5, 5.0, 3.0, step=0.5, key="trav_range",
                      help="The VAE moves from −r to +r (prior units); the AE moves r standard deviations "
                           "of its own codes either side of their mean, since its scale is arbitrary.")
        steps = 11
        starts = {}
        # One strip per row, the page's full width: side by side each tile was about 33 px, too
        # small to read on a projector; stacked, each is about twice that.
        cols = [st.container() for _ in sel.pair]
        for col, (label, ckpt, info) in zip(cols, sel.pair):
            key = models.ckpt_key(ckpt)
            c = models.codes(ckpt, key, sel.dataset, N_CODES)
            if base == "origin":
                z = np.zeros(c["mu"].shape[1], np.float32) if label == "VAE" else c["mu"].mean(0)
                start = "z = 0" if label == "VAE" else "the mean of its codes"
            else:
                z = models.encode_images(ckpt, key, models.images(sel.dataset, [idx]))["mu"][0]
                start = f"image {idx}'s code"
            starts[label] = (z, start)
            dd = min(dim, c["mu"].shape[1] - 1)
            if label == "VAE":
                values = np.linspace(-r, r, steps)
            else:
                m, s = float(c["mu"][:, dd].mean()), float(c["mu"][:, dd].std())
                values = m + np.linspace(-r, r, steps) * s
            imgs = models.traversal(ckpt, key, tuple(float(v) for v in z), (dd,), tuple(float(v) for v in values))
            strip = figures.tile(imgs, ncols=steps)
            with col:
                figures.show_mosaic(strip, f"trav_fig_{label}", height=200,
                                    title=f"{label}: z{dd} from {values[0]:.2g} to {values[-1]:.2g}",
                                    x_ticks=figures.mosaic_ticks(values, imgs.shape[-2], every=2))
                st.caption(f"Starting from {start}." + (" The AE's dimensions have no order or meaning of "
                                                          "their own; the same index is shown." if label == "AE" else ""))

        # A toggle, not an expander: an expander's body runs on every slider move even when closed.
        if st.toggle("Show the VAE's eight most informative dimensions at once", key="trav_top_on"):
            top = tuple(int(i) for i in order[:min(8, d)])
            values = tuple(float(v) for v in np.linspace(-r, r, steps))
            z0, start = starts["VAE"]       # the same start as the single traversal above
            imgs = models.traversal(sel.vae, models.ckpt_key(sel.vae), tuple(float(v) for v in z0), top, values)
            grid = figures.tile(imgs, ncols=steps)
            h = imgs.shape[-2]
            figures.show_mosaic(grid, "trav_top", height=80 * len(top) + 60,
                                y_ticks=([1 + i * (h + 1) + (h - 1) / 2 for i in range(len(top))],
                                         [f"z{i}" for i in top]),
                                x_ticks=figures.mosaic_ticks(values, h, every=2))
            st.caption(f"Each row starts from {start} and moves one dimension from {-r:g} to {r:g}.")
            st.download_button("Download (PNG)", partial(figures.png_bytes, grid, scale=3), file_name="traversals.png",
                               mime="image/png", key="trav_png")

    traverse_view()

# ------------------------------------------------------------------ your own digit
with tab_draw:
    st.markdown("Draw a digit (a light stroke on the dark square, like the training images) or upload a "
                "picture of one. Both models encode it; you see what each reconstructs and where your "
                "digit lands among the test codes. A digit unlike the training data shows how each model "
                "copes with something new.")
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:  # not installed, or built for another Streamlit: uploading a picture always works
        st_canvas = None
    left, right = st.columns([1, 2])
    pixels, source = None, None
    with left:
        if st_canvas is not None:
            canvas = st_canvas(stroke_width=22, stroke_color="#FFFFFF", background_color="#000000",
                               height=280, width=280, drawing_mode="freedraw", return_image_data=True,
                               key="draw_canvas")
            if canvas is not None and canvas.json_data is not None and canvas.json_data.get("objects"):
                pixels, source = canvas.image_data, "your drawing"
            elif canvas is not None and canvas.json_data is not None:
                st.session_state["draw_empty_canvas"] = True
        else:
            st.caption("The drawing canvas (streamlit-drawable-canvas) is not installed: upload a picture instead.")
        up = st.file_uploader("…or upload a PNG/JPEG of a digit", type=["png", "jpg", "jpeg"], key="draw_upload")
        if up is not None:
            from PIL import Image, UnidentifiedImageError
            try:
                img = Image.open(up)        # reads the header only: the size is known before decoding
                if img.width * img.height > 4096 * 4096:
                    st.error(f"{up.name} is {img.width} × {img.height} pixels, too large to read here: "
                             "upload a picture of at most 4096 × 4096 pixels (a digit needs a few hundred).")
                else:
                    pixels, source = np.asarray(img.convert("RGBA")), f"the upload {up.name}"
            except Image.DecompressionBombError:
                st.error(f"{up.name} is too large to read here: upload a picture of at most 4096 × 4096 pixels.")
            except (UnidentifiedImageError, OSError) as e:
                st.error(f"{up.name} is not a picture this app can read ({e}): upload a PNG or JPEG.")
    with right:
        st.session_state.pop("draw_codes", None)     # kept only for the digit shown now, never a stale one
        if pixels is None:
            st.info("Nothing drawn yet: draw a digit on the black square (or upload one) and it will be "
                    "encoded here.", icon=":material/draw:")
        else:
            try:
                x = models.prepare_drawing(pixels, tuple(sel.vae.model_config.image_shape))
            except DataError as e:
                st.warning(str(e), icon=":material/draw:")
                x = None
            if x is not None:
                cols = st.columns(1 + len(sel.pair))
                cols[0].image(figures.upscale(x[0], 140), output_format="PNG", caption=f"{source}, as the model sees it")
                enc = {}
                for col, (label, ckpt, info) in zip(cols[1:], sel.pair):
                    enc[label] = models.encode_images(ckpt, models.ckpt_key(ckpt), x)
                    col.image(figures.upscale(enc[label]["recon"][0], 140), output_format="PNG", caption=f"{label} reconstruction")
                shown = np.stack([x[0]] + [enc[label]["recon"][0] for label, _, _ in sel.pair])
                st.download_button("Download your digit and its reconstructions (PNG)",
                                   partial(figures.png_bytes, figures.tile(shown, ncols=len(shown)), scale=4),
                                   file_name="your-digit.png", mime="image/png", key="draw_png", on_click="ignore")
                st.session_state["draw_codes"] = {k: v["mu"][0].tolist() for k, v in enc.items()}
                mcols = st.columns(len(sel.pair))
                for col, (label, ckpt, info) in zip(mcols, sel.pair):
                    key = models.ckpt_key(ckpt)
                    dim = int(info["model_config"]["latent_dim"])
                    pl = models.plane(ckpt, key, sel.dataset, N_CODES, "pca", (0, 1))
                    c = models.codes(ckpt, key, sel.dataset, N_CODES)
                    p = models.to_plane(pl, enc[label]["mu"])[0]
                    gap = models.typical_gap(ckpt, key, sel.dataset, N_CODES)
                    far = models.nearest_code_distance(ckpt, key, sel.dataset, N_CODES, enc[label]["mu"])[0] / max(gap, 1e-12)
                    fig = figures.scatter_codes(pl["xy"], c["labels"], data.classes,
                                                title=f"{label}: where your digit lands", axis_titles=pl["labels"],
                                                prior=dim == 2, marks=[(p[0], p[1], "yours", "#FFD700")],
                                                height=400, marker_size=3, picture=True)
                    figures.chart(fig, f"draw_map_{label}", where=col)
                    col.caption(f"Distance to the nearest test code: {far:.1f}× the typical gap between codes"
                                + (" (latent space itself)." if dim == 2 else " (drawn in the PCA plane)."))

links.sidebar_link()
