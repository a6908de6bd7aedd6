"""True posterior: for a 2-D VAE, the exact p(z|x) and log p(x) by quadrature, beside the encoder's
q(z|x), the ELBO and the importance-weighted bound as K grows."""
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from explorer import background, families, figures, links, models, posterior, timing
from explorer.sidebar import offer_2d_pair, sidebar
from vae_core.errors import VaeCoreError
from vae_core.exact import RANK_IMAGES, ranking_id

import pandas as pd  # noqa: E402 - after explorer, which imports the heavy libraries in one order

st.set_page_config(page_title="True posterior · VAE Latent Explorer", page_icon="∑", layout="wide")
st.title("True posterior")
notice = st.container()
st.markdown("With d = 2, p(x) = ∫ p(x|z) p(z) dz is an integral a grid computes: the exact posterior p(z|x) and "
            "log p(x) are known. The VAE itself has only its encoder's guess q(z|x) and two lower bounds, the ELBO "
            "and the importance-weighted IWAE_K.")

sel = sidebar("post")
if sel is None:
    st.stop()
offer_2d_pair(sel, "The exact posterior needs the integral over z, which a grid computes only for d = 2.")
if sel.latent_dim != 2:
    st.stop()

data = models.exploration_data(sel.dataset)
labels = models.labels(sel.dataset)
KS = posterior.KS

# ------------------------------------------------------------------ choosing the image
c1, c2, _ = st.columns([1, 1, 2])
if labels is not None:
    classes = posterior.classes(sel.dataset)
    links.restore("post_class", links.int_in(0, len(classes) - 1))
    links.restore("post_k", links.int_in(0, 999))
    cls = c1.selectbox("Class", range(len(classes)), index=posterior.default_class(sel.dataset), key="post_class",
                       format_func=lambda c: classes[c])
    k = int(c2.number_input("Which example of it", 0, 999, 0, key="post_k"))
    i = posterior.image_of(labels, cls, k)
    links.publish("post_class", int(cls))
    links.publish("post_k", k)
else:
    links.restore("post_idx", links.int_in(0, len(data) - 1))
    i = int(c1.number_input("Test image index", 0, len(data) - 1, 0, key="post_idx"))
    links.publish("post_idx", i)

r = posterior.explain(sel.vae, models.ckpt_key(sel.vae), sel.dataset, i)
mu, sd = r["mu"], r["sigma"]
gap = r["log_px"] - r["elbo"]
post = np.exp(r["log_post"])
uu, vv = np.meshgrid(r["u"], r["v"])
pm = np.array([(post * uu).sum(), (post * vv).sum()]) / post.sum()          # the true posterior's mean
pc = np.cov(np.stack([uu.ravel(), vv.ravel()]), aweights=post.ravel())
p_sd = np.sqrt(np.diag(pc))
rho = pc[0, 1] / (p_sd[0] * p_sd[1])
shift = float(np.sqrt((((pm - mu) / p_sd) ** 2).sum()))                      # in the posterior's own σ
short = r["log_px"] - r["iw"][1000][0]                 # IWAE_1000's shortfall, and the noise of its mean
noise = r["iw"][1000][1] / np.sqrt(r["iw"][1000][2])
left_over = (f"leaves {short:.2f} of it" if short > 2 * noise else
             f"reaches it to within its own noise (±{noise:.2f})")
notice.markdown(
    f"**Notice:** the ELBO is {gap:.2f} nats below the exact log p(x), which is KL(q ‖ p(z|x)) = {r['kl_post']:.2f} "
    f"to the hundredth, and IWAE with K = 1000 {left_over}.")

# One square view (equal scales, so a tilt looks like one) over where p(z|x) is within e^-12 of its
# peak and q's 3σ ellipse.
mass = r["log_post"] >= r["log_post"].max() - 12
lo = np.minimum([uu[mass].min(), vv[mass].min()], mu - 3 * sd)
hi = np.maximum([uu[mass].max(), vv[mass].max()], mu + 3 * sd)
half = 0.6 * (hi - lo).max()
lo, hi = (lo + hi) / 2 - half, (lo + hi) / 2 + half
t = np.linspace(0, 2 * np.pi, 121)
fig = make_subplots(1, 2, shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.04,
                    subplot_titles=("the encoder's guess q(z|x)", "the true posterior p(z|x)"))
qd = np.exp(-0.5 * (((uu - mu[0]) / sd[0]) ** 2 + ((vv - mu[1]) / sd[1]) ** 2)) / (2 * np.pi * sd.prod())
for col, dens, top in ((1, qd, "#a50f15"), (2, post, "#08306b")):
    fig.add_trace(go.Contour(x=r["u"], y=r["v"], z=dens, colorscale=[[0, "white"], [1, top]], showscale=False,
                             contours=dict(start=dens.max() / 12, end=dens.max(), size=dens.max() / 12),
                             line=dict(width=0.5), hovertemplate="z = (%{x:.3f}, %{y:.3f})<br>density %{z:.3g}"
                             "<extra></extra>"), 1, col)
    for s in (1, 2):
        fig.add_trace(go.Scatter(x=mu[0] + s * sd[0] * np.cos(t), y=mu[1] + s * sd[1] * np.sin(t), mode="lines",
                                 line=dict(color="#d62728", width=2, dash="solid" if s == 1 else "dash"),
                                 name=f"q(z|x), {s}σ", showlegend=col == 2, hoverinfo="skip"), 1, col)
    fig.add_trace(go.Scatter(x=[pm[0]], y=[pm[1]], mode="markers", name="mean of p(z|x)", showlegend=col == 2,
                             marker=dict(symbol="x", size=10, color="#08306b")), 1, col)
fig.update_xaxes(range=[lo[0], hi[0]], title_text="z0", gridcolor="#e5e5e5", constrain="domain")
fig.update_yaxes(range=[lo[1], hi[1]], gridcolor="#e5e5e5", scaleanchor="x", scaleratio=1)
fig.update_yaxes(title_text="z1", col=1)
fig.update_layout(height=400, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.18),
                  plot_bgcolor="white")
left, right = st.columns([1, 5], vertical_alignment="center")
left.image(figures.upscale(data.x[i].numpy(), 160), caption=f"test image {i}", output_format="PNG")
figures.chart(fig, "post_fig", where=right)
tilt = f"tilted (correlation {rho:+.2f}), which" if abs(rho) >= 0.1 else f"barely tilted (correlation {rho:+.2f});"
right.caption(
    f"Same axes on both sides; the red ellipses are q's 1σ and 2σ. q is centred at ({mu[0]:.2f}, {mu[1]:.2f}) with "
    f"σ = ({sd[0]:.3f}, {sd[1]:.3f}); the true posterior's mean is ({pm[0]:.2f}, {pm[1]:.2f}), {shift:.1f} of its "
    f"own σ away, with σ = ({p_sd[0]:.3f}, {p_sd[1]:.3f}), and it is {tilt} "
    + ("an axis-aligned q cannot follow." if abs(rho) >= 0.1 else " the mismatch is in its position and width."))

m = st.columns(4)
m[0].metric("exact log p(x)", f"{r['log_px']:.2f}", help=f"Quadrature on a {len(r['u'])} × {len(r['v'])} grid over "
            "where the integrand has its mass (nats).")
m[1].metric("ELBO", f"{r['elbo']:.2f}", help="E_q[log p(x|z)] (Gauss–Hermite on q) minus KL(q(z|x) || p(z)) "
            "in closed form.")
m[2].metric("gap: log p(x) − ELBO", f"{gap:.3f}")
m[3].metric("KL(q(z|x) ‖ p(z|x))", f"{r['kl_post']:.3f}", help="By quadrature over q's own ±6σ box: "
            "E_q[log q(z|x) − log p(x, z)] + log p(x), with no use of the ELBO.")
st.caption(f"The gap and the KL differ by {abs(gap - r['kl_post']):.4f} nats: ELBO = log p(x) − KL(q(z|x) ‖ p(z|x)), "
           "so the ELBO is exactly as loose as q is wrong.")

# ------------------------------------------------------------------ the bound as K grows
st.subheader("The importance-weighted bound tightens as K grows")


@timing.fragment
def bound_view():
    links.restore("post_K", links.one_of(KS))
    K = st.select_slider("Importance samples K", KS, value=100, key="post_K",
                         help="IWAE_K = log (1/K) Σ p(x|z_k) p(z_k) / q(z_k|x), z_k drawn from q(z|x). "
                              f"Averaged over independent draws from a pool of {posterior.POOL} samples. K = 1 is "
                              "the ELBO in expectation.")
    links.publish("post_K", K)
    mean, spread, n = r["iw"][K]
    a, b = st.columns([1, 3])
    a.metric(f"IWAE, K = {K}", f"{mean:.2f}", delta=f"{mean - r['log_px']:.3f} from exact", delta_color="off",
             help=f"Mean of {n} independent draws (one draw spreads by ±{spread:.2f}).")
    a.caption(f"K = {K} closes {100 * (mean - r['elbo']) / gap:.0f}% of the ELBO's gap of {gap:.2f} nats."
              if gap > 1e-3 else "q is the posterior here: every K gives log p(x).")
    ks = list(KS)
    fig = go.Figure([go.Scatter(x=ks, y=[r["iw"][k][0] for k in ks], mode="lines+markers", name="IWAE_K",
                                error_y=dict(type="data", array=[r["iw"][k][1] for k in ks], visible=True,
                                             thickness=1)),
                     go.Scatter(x=[K], y=[mean], mode="markers", name=f"K = {K}",
                                marker=dict(size=14, color="#d62728"))],
                    layout=dict(height=300, margin=dict(l=10, r=10, t=10, b=10),
                                xaxis=dict(type="log", title="K (importance samples)"),
                                yaxis=dict(title="nats"), legend=dict(orientation="h", y=-0.3)))
    fig.add_hline(y=r["log_px"], line=dict(color="black", dash="dash"), annotation_text="exact log p(x)",
                  annotation_position="bottom right")
    fig.add_hline(y=r["elbo"], line=dict(color="grey", dash="dot"), annotation_text="ELBO",
                  annotation_position="top left")
    figures.chart(fig, "post_bound", where=b)
    b.caption(f"Bars: how far one draw of IWAE_K strays (±1 s.d.). At K = 1 the mean is {r['iw'][1][0]:.2f}, the "
              f"ELBO's {r['elbo']:.2f} up to sampling noise; at K = 1000 it is {r['iw'][1000][0]:.2f}, " +
              (f"still {short:.2f} below the exact value" if short > 2 * noise else
               f"within its noise (±{noise:.2f}) of the exact value") +
              ". IWAE_K is biased low, by about Var[w] / (2K p(x)²) with w = p(x, z)/q(z|x): the worse q fits, "
              "the more samples it takes.")


bound_view()

# ------------------------------------------------------------------ the family, ranked exactly
group = next((g for g in families.groups(sel.infos).values() if any(m["name"] == sel.vae_info["name"] for m in g)), [])
fam = [m for m in group if m["model_config"]["kind"] == "vae" and m["model_config"]["latent_dim"] == 2]


def family_members(fam: list) -> tuple:
    """(name, path, ranking id) of each member that still loads: a file removed or replaced by a
    broken one since the list was read is left out, never a crash."""
    out = []
    for m in fam:
        try:
            ckpt = models.load_model(m["path"])
        except (OSError, VaeCoreError):
            continue
        out.append((m["name"], m["path"], ranking_id(ckpt.model, models.ckpt_key(ckpt))))
    return tuple(out)


def family_table(job, members: tuple, dataset: str) -> list:
    """(name, path, ranking id) per model -> rows of mean exact log p(x), IWAE_1000 and ELBO,
    best first; one step of the background job per model."""
    rows = []
    for name, path, key in members:
        rows.append({"model": name, **posterior.ranking(path, key, dataset)})
        job.step()
    return sorted(rows, key=lambda row: -row["exact log p(x)"])


members = family_members(fam) if len(fam) >= 2 else ()
if len(members) >= 2:
    st.subheader("Ranking the family by log p(x)")
    stored = [posterior.stored_ranking(key, sel.dataset) for _, _, key in members]
    if st.toggle(f"Rank the {len(members)} 2-D VAEs of this family on the first {RANK_IMAGES} test images"
                 + ("" if all(stored) else " (under a minute the first time, in the background; then kept)"),
                 key="post_rank"):
        rows = None
        if all(stored):       # the shipped families, and any family ranked on this server before
            rows = sorted(({"model": name, **values} for (name, _, _), values in zip(members, stored)),
                          key=lambda row: -row["exact log p(x)"])
        else:
            # A server thread shared by every session does the integrals (explorer.background): the
            # page stays usable meanwhile, a class asking at once starts them once, and the thread
            # gives way to those that run pages.
            job = background.start(("post_rank", members, sel.dataset, RANK_IMAGES),
                                   partial(family_table, members=members, dataset=sel.dataset),
                                   total=len(members))
            if not job.done.is_set():
                @timing.fragment(run_every=1.0)
                def wait_for_ranking():
                    if job.done.is_set():
                        st.rerun()
                    left = job.seconds_left()
                    st.progress(job.progress(), text=f"Integrating p(x) for each model: {job.steps} of {job.total} "
                                "done" + (f", about {max(left, 1):.0f} s left" if left is not None else "")
                                + ". The rest of the page works meanwhile.")

                wait_for_ranking()
            elif job.error:
                st.error(f"The ranking could not be computed ({job.error}).", icon=":material/error:")
                if st.button("Try again", key="post_rank_retry"):
                    background.start(("post_rank", members, sel.dataset, RANK_IMAGES),
                                     partial(family_table, members=members, dataset=sel.dataset),
                                     total=len(members), retry=True)
                    st.rerun()
            else:
                rows = job.result
        if rows is not None:
            by_iwae = sorted(range(len(rows)), key=lambda j: -rows[j]["IWAE, K = 1000"])
            rows = [{"rank": j + 1, **row, "rank by IWAE": by_iwae.index(j) + 1} for j, row in enumerate(rows)]
            # A static table, not st.dataframe: five rows need no grid, and the grid's canvas took the
            # browser 0.4-0.7 s to draw when the toggle was switched on.
            st.table(pd.DataFrame(rows).style.format(precision=2).hide(axis="index"))
            swapped = sum(row["rank by IWAE"] != row["rank"] for row in rows)
            worst = max(rows, key=lambda q: q["exact − IWAE"])
            st.caption(f"Ranked by the exact value, nats per image. IWAE with K = 1000 falls short by "
                       f"{min(q['exact − IWAE'] for q in rows):.2f} to {worst['exact − IWAE']:.2f} nats "
                       f"(most for {worst['model']}); " +
                       (f"it puts {swapped} of the {len(rows)} models in a different place." if swapped else
                        "here it still ranks the models in the same order."))

links.sidebar_link()
