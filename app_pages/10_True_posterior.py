"""True posterior: for a 2-D VAE, the exact p(z|x) and log p(x) by quadrature, beside the encoder's
q(z|x), the ELBO and the importance-weighted bound as K grows."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from explorer import figures, links, models, timing
from explorer.sidebar import offer_2d_pair, sidebar

st.set_page_config(page_title="True posterior · VAE Latent Explorer", page_icon="∑", layout="wide")
st.title("True posterior")
st.markdown("With two latent dimensions the integral p(x) = ∫ p(x|z) p(z) dz can be computed on a grid, "
            "so the exact posterior p(z|x) and the exact log p(x) are known. Compare them with what the "
            "encoder guesses, q(z|x), and with the two bounds the VAE can compute: the ELBO and the "
            "importance-weighted bound.")
notice = st.container()

sel = sidebar("post")
if sel is None:
    st.stop()
offer_2d_pair(sel, "The exact posterior needs the integral over z, which a grid computes only for d = 2.")
if sel.latent_dim != 2:
    st.stop()

data = models.exploration_data(sel.dataset)
labels = models.labels(sel.dataset)
KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@st.cache_data(show_spinner="Integrating over the latent plane…", max_entries=256)
def explain(_ckpt, key: str, dataset: str, i: int) -> dict:
    from vae_core.exact import explain as run
    return run(_ckpt.model, models.exploration_data(dataset).x[i:i + 1], ks=KS, repeats=20)


c1, c2 = st.columns(2)
if labels is not None:
    classes = data.classes or [str(c) for c in range(int(labels.max()) + 1)]
    links.restore("post_class", links.int_in(0, len(classes) - 1))
    links.restore("post_k", links.int_in(0, 999))
    cls = c1.selectbox("Class", range(len(classes)), index=3 % len(classes), key="post_class",
                       format_func=lambda c: classes[c])
    k = int(c2.number_input("Which example of it", 0, 999, 0, key="post_k"))
    where = np.flatnonzero(labels == cls)
    i = int(where[k % len(where)]) if len(where) else 0
    links.publish("post_class", int(cls))
    links.publish("post_k", k)
else:
    links.restore("post_idx", links.int_in(0, len(data) - 1))
    i = int(c1.number_input("Test image index", 0, len(data) - 1, 0, key="post_idx"))
    links.publish("post_idx", i)

r = explain(sel.vae, models.ckpt_key(sel.vae), sel.dataset, i)
gap = r["log_px"] - r["elbo"]
notice.markdown(f"**Notice:** for this image the ELBO falls {gap:.2f} nats short of the exact log p(x), and "
                f"that gap is the KL from the encoder's q(z|x) to the true posterior ({r['kl_post']:.2f} nats by "
                f"quadrature). With K = 1000 samples the importance-weighted bound closes all but "
                f"{r['log_px'] - r['iw'][1000][0]:.2f} nats of it.")

# ------------------------------------------------------------------ the two posteriors
left, right = st.columns([1, 2])
left.image(figures.upscale(data.x[i].numpy(), 200), caption=f"test image {i}", output_format="PNG")
mu, sd = r["mu"], r["sigma"]
post = np.exp(r["log_post"])
t = np.linspace(0, 2 * np.pi, 121)
fig = go.Figure([go.Contour(x=r["u"], y=r["v"], z=post, colorscale="Blues", showscale=False, ncontours=12,
                            name="true posterior p(z|x)", hovertemplate="z = (%{x:.3f}, %{y:.3f})<extra></extra>")] +
                [go.Scatter(x=mu[0] + s * sd[0] * np.cos(t), y=mu[1] + s * sd[1] * np.sin(t), mode="lines",
                            line=dict(color="#d62728", width=2, dash="solid" if s == 1 else "dash"),
                            name=f"q(z|x), {s}σ", hoverinfo="skip") for s in (1, 2)] +
                [go.Scatter(x=[mu[0]], y=[mu[1]], mode="markers", marker=dict(color="#d62728", size=8),
                            name="q's mean μ")],
                layout=dict(height=420, margin=dict(l=10, r=10, t=40, b=10), xaxis=dict(title="z0"),
                            yaxis=dict(title="z1", scaleanchor="x"),
                            title=dict(text=f"VAE {sel.vae_info['name']}: p(z|x) (shaded) and q(z|x) (red)",
                                       x=0.5, xanchor="center"), legend=dict(orientation="h", y=-0.2)))
right.plotly_chart(fig, key="post_fig", config=figures.CONFIG)
right.caption(f"The true posterior is drawn on a {len(r['u'])} × {len(r['v'])} grid over where it has its mass. "
              f"q(z|x) is the encoder's Gaussian, μ = ({mu[0]:.2f}, {mu[1]:.2f}), σ = ({sd[0]:.3f}, {sd[1]:.3f}); "
              "it is axis-aligned by construction, while the true posterior can be tilted, skewed or split.")

# ------------------------------------------------------------------ the numbers and the bound
st.subheader("The bound tightens as K grows")


@timing.fragment
def bound_view():
    links.restore("post_K", links.one_of(KS))
    K = st.select_slider("Importance samples K", KS, value=1000, key="post_K",
                         help="IWAE_K = log (1/K) Σ p(x|z_k) p(z_k) / q(z_k|x), z_k drawn from q(z|x); averaged "
                              "over a pool of 20,000 draws cut into groups of K. K = 1 is the ELBO in expectation.")
    links.publish("post_K", K)
    m = st.columns(4)
    m[0].metric("exact log p(x)", f"{r['log_px']:.2f}", help="By quadrature on the grid (nats).")
    m[1].metric(f"IWAE, K = {K}", f"{r['iw'][K][0]:.2f}", delta=f"{r['iw'][K][0] - r['log_px']:.2f} from exact",
                delta_color="off")
    m[2].metric("ELBO", f"{r['elbo']:.2f}", help="Reconstruction (2,000 samples) minus the closed-form KL to the prior.")
    m[3].metric("KL(q ‖ p(z|x))", f"{r['kl_post']:.2f}", help="By quadrature over q's own grid; equals log p(x) − ELBO.")
    ks = list(KS)
    fig = go.Figure([go.Scatter(x=ks, y=[r["iw"][k][0] for k in ks], mode="lines+markers", name="IWAE_K",
                                error_y=dict(type="data", array=[r["iw"][k][1] for k in ks], visible=True)),
                     go.Scatter(x=[K], y=[r["iw"][K][0]], mode="markers", name=f"K = {K}",
                                marker=dict(size=14, color="#d62728"))],
                    layout=dict(height=340, margin=dict(l=10, r=10, t=30, b=10),
                                xaxis=dict(type="log", title="K (importance samples)"),
                                yaxis=dict(title="nats"), legend=dict(orientation="h", y=-0.3)))
    fig.add_hline(y=r["log_px"], line=dict(color="black", dash="dash"), annotation_text="exact log p(x)")
    fig.add_hline(y=r["elbo"], line=dict(color="grey", dash="dot"), annotation_text="ELBO")
    st.plotly_chart(fig, key="post_bound", config=figures.CONFIG)
    st.caption("Bars: the spread of one IWAE_K estimate (over the groups of K draws). Each estimate is a lower "
               "bound only on average; the gap of the mean to the exact value is the estimator's bias, which "
               "shrinks roughly like 1/K.")


bound_view()

# ------------------------------------------------------------------ the family, ranked exactly
st.subheader("Ranking a 2-D family by log p(x)")
fam = [info for info in sel.infos if info["model_config"]["kind"] == "vae" and info["model_config"]["latent_dim"] == 2]


@st.cache_data(show_spinner="Integrating for every model and image…", max_entries=16)
def family_table(names: tuple, dataset: str, n: int) -> list:
    from vae_core.exact import explain as run
    rows = []
    by = {i["name"]: i for i in sel.infos}
    for name in names:
        ckpt = models.load_model(by[name]["path"])
        res = [run(ckpt.model, models.exploration_data(dataset).x[j:j + 1], ks=(1000,), repeats=1) for j in range(n)]
        rows.append({"model": name, "exact log p(x)": float(np.mean([x["log_px"] for x in res])),
                     "IWAE, K = 1000": float(np.mean([x["iw"][1000][0] for x in res])),
                     "ELBO": float(np.mean([x["elbo"] for x in res]))})
    return sorted(rows, key=lambda row: -row["exact log p(x)"])


N_RANK = 50
if st.toggle(f"Rank the {len(fam)} 2-D VAEs here on the first {N_RANK} test images (about a second per model)",
             key="post_rank"):
    rows = family_table(tuple(i["name"] for i in fam), sel.dataset, N_RANK)
    st.dataframe(rows, hide_index=True, key="post_rank_table")
    st.caption("Ranked by the exact value. The importance-weighted estimate is always a little lower, by a "
               "different amount for each model, so on these models it can put two close models in the wrong order.")

links.sidebar_link()
