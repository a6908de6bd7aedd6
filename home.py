"""VAE Latent Explorer: the home page. The objective, a few reconstructions, and each model's card.

Run the app with `streamlit run app.py`, which lists this page and those in app_pages/.
"""

import numpy as np
import streamlit as st

from explorer import claims, figures, models
from explorer.links import int_in, publish, sidebar_link
from explorer.sidebar import beta_of, sidebar

st.set_page_config(page_title="VAE Latent Explorer", page_icon="🫧", layout="wide")

st.title("VAE Latent Explorer")
st.markdown(
    "A **variational auto-encoder** (VAE) and a plain **auto-encoder** (AE) share the same encoder "
    "and decoder networks. The AE maps each image to a single point; the VAE maps it to a small "
    "Gaussian cloud and is penalised when that cloud strays from a standard normal. The pages on "
    "the left show what that one difference does to the latent space: where the codes land, what "
    "lies between them, and what comes out when you decode random points.")

sel = sidebar("home")

with st.expander("The objective, in equations", expanded=True):
    left, right = st.columns(2)
    with left:
        st.markdown("**Sampling a code** (the reparameterisation: noise enters from outside, so "
                    "gradients reach μ and σ):")
        st.latex(r"z = \mu(x) + \varepsilon \odot \sigma(x), \qquad \varepsilon \sim \mathcal{N}(0, I)")
        st.markdown("**The loss per image**, a reconstruction term plus a weighted pull towards the prior "
                    "p(z) = N(0, I):")
        # Two lines, so the equation fits its column at 1280 px.
        st.latex(r"\begin{aligned} \mathcal{L}_\beta(x) = &\underbrace{-\,\mathbb{E}_{q(z|x)}\log p(x \mid z)}_{\text{reconstruction}}"
                 r" \\ &+ \beta\, \underbrace{\mathrm{KL}\big(q(z \mid x)\,\|\,p(z)\big)}_{\text{regulariser}} \end{aligned}")
        st.markdown("With a diagonal Gaussian posterior the KL term has a closed form, summed over the d latent dimensions:")
        st.latex(r"\mathrm{KL} = \tfrac{1}{2} \sum_{i=1}^{d} \left( \sigma_i^2 - \log \sigma_i^2 - 1 + \mu_i^2 \right)")
    with right:
        st.markdown("**At β = 1 the negative loss is the ELBO**, a lower bound on the log-likelihood of the image:")
        # Two lines: on one, the equation is wider than its column and gets cut off.
        st.latex(r"\begin{aligned} \log p(x) \;\ge\; \mathrm{ELBO}(x) &= \mathbb{E}_{q(z|x)} \log p(x \mid z)"
                 r" \\ &\quad - \mathrm{KL}\big(q(z \mid x)\,\|\,p(z)\big) \end{aligned}")
        st.markdown("The gap is the KL between q(z|x) and the true posterior. **Importance sampling** with "
                    "K draws from q gives a bound that can only get tighter as K grows, and reaches log p(x) in the limit:")
        st.latex(r"\begin{aligned} \log p(x) &\;\ge\; \mathbb{E}\Big[\log \frac{1}{K} \sum_{k=1}^{K} "
                 r"\frac{p(x \mid z_k)\, p(z_k)}{q(z_k \mid x)}\Big] \\ &\;\ge\; \mathrm{ELBO}(x) \end{aligned}")
        st.caption("with z₁ … z_K drawn independently from q(z|x); K = 1 gives the ELBO itself.")
        st.markdown("The **AE** keeps only the reconstruction term with z = f(x): nothing asks its codes to fill "
                    "the space evenly, so decoding a random point can give nonsense. β > 1 pushes the VAE "
                    "harder towards the prior (smoother space, blurrier images); β < 1 does the reverse.")
        if sel is not None:
            st.markdown(f"**The likelihood p(x|z)** of the VAE on screen ({sel.vae_info['name']}): "
                        f"{claims.likelihood_of(sel.vae_info)}. " + claims.likelihood_note(sel.vae_info))

if sel is None:
    st.stop()

st.subheader("Reconstructions of the same test images")
st.caption("Top row: test images the models never trained on. Below: each model's reconstruction, decoded "
           "from the code it assigns (the VAE's posterior mean). The VAE's are usually a little blurrier: "
           "its decoder must work for every point inside each bubble, not just the centre.")
data = models.exploration_data(sel.dataset)
n_show = 8
if "home_seed" not in st.session_state:          # a link's images: the same draw
    try:
        st.session_state["home_seed"] = int_in(0, 10**6)(st.query_params.get("home_seed", "0"))
    except ValueError:
        st.session_state["home_seed"] = 0
if st.button("Show other images", key="home_shuffle"):
    st.session_state["home_seed"] += 1
publish("home_seed", st.session_state["home_seed"])
idx = models.shown_indices(len(data), st.session_state["home_seed"], n_show)
rows = [models.images(sel.dataset, idx)]
row_names = ["original"]
for label, ckpt, info in sel.pair:
    rows.append(models.reconstruct(ckpt, models.ckpt_key(ckpt), sel.dataset, idx))
    row_names.append(f"{label}: {info['name']}")
grid = figures.tile(np.concatenate(rows), ncols=n_show)
h = rows[0].shape[-2]
row_ticks = ([1 + i * (h + 1) + (h - 1) / 2 for i in range(len(rows))], row_names)
# A labelled picture, not a plotly chart: it is the first thing a new visitor waits for, and an
# image draws as soon as it arrives, while the first plotly chart waits for the browser to load
# and parse plotly's 4.7 MB script (about 1.5 s on 2 cores).
with st.container(key="home_recon"):
    st.image(figures.export_png(grid, rows=row_ticks, scale=max(1, round(84 / h))), output_format="PNG")
figures.export_buttons(grid, "reconstructions", "home_recon", "Reconstructions",
                       title="Test images and their reconstructions", rows=row_ticks, scale=4)
st.session_state["home_shown"] = idx


def model_card(label: str, ckpt, info: dict) -> None:
    mc = info["model_config"]
    tc = info.get("train_config") or {}
    m = info.get("metrics") or {}
    st.markdown(f"#### {label}: `{info['name']}`")
    st.caption(f"{'shipped with the app' if info.get('source') == 'shipped' else 'trained by you'} · "
               f"dataset {info['dataset'] or '?'} · likelihood {claims.likelihood_of(info)}")
    def fmt(key: str, spec: str, unit: str = "") -> str:
        return f"{m[key]:{spec}}{unit}" if m.get(key) is not None else "—"
    # A table, not metric cards: at 1280 px four cards to a row cut their labels and numbers off.
    rows = [("latent size d", str(mc["latent_dim"])),
            ("β", f"{beta_of(info):g}" if beta_of(info) is not None else "— (AE)"),
            ("test loss / image (at its β)", fmt("loss", ".1f", " nats")),
            ("ELBO (at β = 1)", fmt("elbo", ".1f", " nats")),
            (f"log p(x), importance-sampled (K = {m.get('iw_samples', 0)})", fmt("log_px", ".1f", " nats")),
            ("KL / image", fmt("kl", ".2f", " nats")),
            ("active units", f"{m['active_units']} / {mc['latent_dim']}" if m.get("active_units") is not None else "—"),
            ("k-NN accuracy of the codes", fmt("knn_acc", ".1%"))]
    st.markdown("| | |\n|---|---|\n" + "\n".join(f"| {k} | **{v}** |" for k, v in rows))
    st.caption("Loss: reconstruction + β·KL on the test set (lower is better; the AE's is reconstruction "
               "only). The ELBO is a lower bound on log p(x), which only a VAE defines. Active units: dimensions "
               "whose code varies across the data. k-NN accuracy: how well the codes' nearest neighbours "
               "predict the digit. " + (claims.likelihood_note(info) if mc["kind"] == "vae" else ""))
    hist = info.get("history") or []
    if hist and "test_loss" in hist[-1]:
        # A drawing, not a plotly chart: the home page loads no plotly at all (see the reconstructions).
        with st.container(key=f"home_hist_{label}"):
            st.image(figures.line_svg({"train": [h.get("train_loss") for h in hist],
                                       "test": [h.get("test_loss") for h in hist]},
                                      x=[h.get("epoch") for h in hist], title="Loss per epoch",
                                      x_title="epoch", y_title="nats / image"))
    with st.expander("Full configuration"):
        st.json({"model": mc, "training": tc, "metrics": {k: v for k, v in m.items() if not isinstance(v, list)}},
                expanded=False)


st.subheader("The two models")
cols = st.columns(len(sel.pair), border=True)
for col, (label, ckpt, info) in zip(cols, sel.pair):
    with col:
        model_card(label, ckpt, info)

st.subheader("Where to go next")
links = st.columns(4)
links[0].page_link("app_pages/1_Latent_map.py", label="Latent map", icon=":material/scatter_plot:")
links[1].page_link("app_pages/2_Latent_grid.py", label="Latent grid", icon=":material/grid_on:")
links[2].page_link("app_pages/3_Interpolation.py", label="Interpolation", icon=":material/swap_horiz:")
links[3].page_link("app_pages/4_Sampling.py", label="Sampling & traversal", icon=":material/casino:")
links[0].page_link("app_pages/9_Latent_arithmetic.py", label="Latent arithmetic", icon=":material/add_circle:")
links[1].page_link("app_pages/10_True_posterior.py", label="True posterior", icon=":material/functions:")
links[2].page_link("app_pages/11_Few_labels.py", label="Few labels", icon=":material/label:")
links[3].page_link("app_pages/6_Compare_beta.py", label="Compare β", icon=":material/compare:")

sidebar_link()
