"""Latent arithmetic: add an attribute vector (thicker, more slanted, class a → class b) to an
image's code and decode it, in the VAE beside the AE."""
from functools import partial

import numpy as np
import streamlit as st

from explorer import arithmetic as ar
from explorer import figures, links, models, timing
from explorer.sidebar import preferred_vae, select_pair, sidebar

st.set_page_config(page_title="Latent arithmetic · VAE Latent Explorer", page_icon="➕", layout="wide")
st.title("Latent arithmetic")
notice = st.container()
st.markdown("An **attribute vector** v is the mean code of images with an attribute minus that of images "
            "without it. Decode an image's code plus α·v: where the latent space is smooth the image gains the "
            "attribute and stays the same digit; where z + α·v leaves the codes, the decoder has nothing to go on.")

sel = sidebar("arith")
if sel is None:
    st.stop()

ALPHAS, MEASURE, UNITS = ar.ALPHAS, ar.MEASURE, ar.UNITS

data = models.exploration_data(sel.dataset)
labels = models.labels(sel.dataset)
classes = None
if labels is not None:
    classes = data.classes or [str(c) for c in range(int(labels.max()) + 1)]
n_vec, held, held_is_new = ar.held_out(len(data))
clf = ar.classifier(sel.dataset)

if sel.latent_dim <= 2:
    aes = [i for i in sel.infos if i["model_config"]["kind"] == "ae"]
    big = [i for i in sel.infos if i["model_config"]["kind"] == "vae" and i["model_config"]["latent_dim"] > 2]
    if big:
        from explorer import families
        pick = preferred_vae(big, aes)
        partner = families.partner_ae(next(i for i in big if i["name"] == pick), aes)
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.info(f"These models have {sel.latent_dim} latent dimensions, nearly all spent on telling the digits "
                "apart: a style such as thickness has little room of its own.", icon=":material/lightbulb:")
        c2.button(f"Use {pick}", key="arith_use_big", on_click=select_pair,
                  args=(pick, partner["name"] if partner else None))


# ------------------------------------------------------------------ 1 · the vector
st.subheader("1 · Choose the vector and the image")
kinds = ["thicker", "slant", "class"] if labels is not None else ["thicker", "slant"]
names = {"thicker": "Thicker", "slant": "More slanted", "class": "Class a → class b"}
c0, c1, c2 = st.columns([2, 1, 1])
links.restore("arith_vec", links.one_of(kinds))
kind = c0.segmented_control("Vector", kinds, default=kinds[0], required=True, key="arith_vec",
                            format_func=names.get) or kinds[0]
links.publish("arith_vec", kind)
ca = cb = 0
if kind == "class":
    for k in ("arith_from", "arith_to"):
        links.restore(k, links.int_in(0, len(classes) - 1))
    ca = int(c1.selectbox("Class a (from)", range(len(classes)), index=7 % len(classes), key="arith_from",
                          format_func=lambda c: classes[c]))
    cb = int(c2.selectbox("Class b (to)", range(len(classes)), index=3 % len(classes), key="arith_to",
                          format_func=lambda c: classes[c]))
    links.publish("arith_from", ca)
    links.publish("arith_to", cb)

# The image: a class and an example of it (for a class vector, an example of class a).
if labels is not None:
    links.restore("arith_class", links.int_in(0, len(classes) - 1))
    links.restore("arith_k", links.int_in(0, 999))
    if kind == "class":
        img_class = ca
        k = int(c0.number_input(f"Which {classes[ca]} to start from", 0, 999, 0, key="arith_k"))
    else:
        img_class = int(c1.selectbox("Image: class", range(len(classes)), index=2 % len(classes),
                                     key="arith_class", format_func=lambda c: classes[c]))
        links.publish("arith_class", img_class)
        k = int(c2.number_input("Which example of it", 0, 999, 0, key="arith_k"))
    links.publish("arith_k", k)
    where = np.flatnonzero(labels == img_class)
    index = int(where[k % len(where)]) if len(where) else 0
else:
    links.restore("arith_idx", links.int_in(0, len(data) - 1))
    index = int(c1.number_input("Image index", 0, len(data) - 1, 0, key="arith_idx"))
    links.publish("arith_idx", index)

within = labels is not None
if kind == "class":
    st.latex(rf"v \;=\; \bar z\,[\,y = \text{{{classes[cb]}}}\,] \;-\; \bar z\,[\,y = \text{{{classes[ca]}}}\,]"
             r"\qquad \hat x(\alpha) \;=\; \mathrm{decoder}\big(z + \alpha\, v\big)")
else:
    name = MEASURE[kind]
    if within:
        st.latex(rf"v \;=\; \frac{{1}}{{K}}\sum_{{k=1}}^{{K}} \Big(\bar z\,[\,y = k,\ \mathrm{{{name}}}(x) \in \text{{top }}25\%\,]"
                 rf" \;-\; \bar z\,[\,y = k,\ \mathrm{{{name}}}(x) \in \text{{bottom }}25\%\,]\Big)")
    else:
        st.latex(rf"v \;=\; \bar z\,[\,\mathrm{{{name}}}(x) \in \text{{top }}25\%\,] \;-\; "
                 rf"\bar z\,[\,\mathrm{{{name}}}(x) \in \text{{bottom }}25\%\,]")
    defn = (r"\mathrm{ink}(x) = \textstyle\sum_{ij} x_{ij}" if kind == "thicker"
            else r"\mathrm{slant}(x) = \mu_{11} / \mu_{02}")
    st.latex(defn + r"\qquad \hat x(\alpha) \;=\; \mathrm{decoder}\big(z + \alpha\, v\big)")

vecs = {label: ar.vector(ckpt, models.ckpt_key(ckpt), sel.dataset, n_vec, kind, ca, cb) for label, ckpt, _ in sel.pair}
gaps = {label: models.typical_gap(ckpt, models.ckpt_key(ckpt), sel.dataset, n_vec) for label, ckpt, _ in sel.pair}
explain = {
    "thicker": "ink is the ink mass (the sum of the pixels)" +
               ("; digits are scaled to one size, so within a class more ink means a thicker stroke. "
                if sel.dataset == "mnist" else ". "),
    "slant": "slant is the shear of the pixels' second central moments: positive leans right, like /, "
             "negative like \\. ",
    "class": f"z̄[y = b]: the mean code of the class-b images. "}[kind]
if kind != "class":
    explain = ("z̄[…]: the mean code of the images in […]" +
               (", quartered within their own class k, so that v is not simply the step from a class "
                "low in it to one high in it (for ink, from a 1 to a 0). " if within else ". ") + explain)
st.caption(explain + f"Each model's v comes from its own codes of the first {n_vec} test images, and α counts in "
           "that model's v (α = 1 adds v once). Its length: " +
           "; ".join(f"{label} {np.linalg.norm(vecs[label]):.2f} = {np.linalg.norm(vecs[label]) / max(gaps[label], 1e-12):.1f}× "
                     "its typical gap between neighbouring codes" for label, _, _ in sel.pair) + ".")
original = models.images(sel.dataset, [index])[0]
describe = f"image {index}" + (f" (a {classes[labels[index]]})" if labels is not None else "")


def score_text(kind: str, s: float) -> str:
    if kind == "thicker":
        return f"ink {s:.0f}"
    if kind == "slant":
        return f"slant {s:+.2f}"
    return f"p({classes[cb]}) = {s:.2f}"


# ------------------------------------------------------------------ 3 · the slider: only this part reruns
st.subheader("2 · Add α·v")


@timing.fragment
def add_vector():
    links.restore("arith_alpha", links.float_in(-2.0, 2.0, 0.25))
    alpha = st.slider("α (in units of each model's v)", -2.0, 2.0, 1.0, 0.25, key="arith_alpha",
                      help="0 decodes the image's own code; 1 adds v once; negative values subtract it "
                           "(thinner, leaning left, or away from class b).")
    links.publish("arith_alpha", alpha)
    cols = st.columns(1 + len(sel.pair) + 1)
    cols[0].image(figures.upscale(original, 168), output_format="PNG", caption=f"original: {describe}")
    shown = [original]
    for col, (label, ckpt, info) in zip(cols[1:], sel.pair):
        w = ar.walk(ckpt, models.ckpt_key(ckpt), sel.dataset, n_vec, kind, ca, cb, index, (float(alpha),))
        shown.append(w["images"][0])
        text = f"{label}, α = {alpha:g}"
        if w["score"] is not None:
            text += f": {score_text(kind, float(w['score'][0]))}"
        text += f" · {w['dist'][0]:.1f}× typical gap to the nearest code"
        col.image(figures.upscale(w["images"][0], 168), output_format="PNG", caption=text)
    cols[-1].download_button("Images · PNG",
                             partial(figures.png_bytes, figures.tile(np.stack(shown), ncols=len(shown)), scale=4),
                             file_name=f"arithmetic-{kind}-{index}-alpha{alpha:g}.png", mime="image/png",
                             key="arith_png", on_click="ignore")
    st.session_state["arith_shown_alpha"] = alpha


add_vector()

# ------------------------------------------------------------------ 4 · every α at once
st.subheader("3 · Every α")
walks = {label: ar.walk(ckpt, models.ckpt_key(ckpt), sel.dataset, n_vec, kind, ca, cb, index, ALPHAS)
         for label, ckpt, _ in sel.pair}
rows = [walks[label]["images"] for label, _, _ in sel.pair]
strip = figures.tile(np.concatenate(rows), ncols=len(ALPHAS))
h = rows[0].shape[-2]
y_pos = [1 + i * (h + 1) + (h - 1) / 2 for i in range(len(rows))]
figures.show_mosaic(strip, "arith_strip", height=110 * len(rows) + 60, x_ticks=figures.mosaic_ticks(list(ALPHAS), h),
                    y_ticks=(y_pos, [label for label, _, _ in sel.pair]), x_title="α")
figures.export_buttons(strip, f"arithmetic-{kind}-{index}", "arith_export", "The strip",
                       title=f"{describe} + α·v ({names[kind].lower()})",
                       rows=(y_pos, [f"{label}: {info['name']}" for label, _, info in sel.pair]),
                       cols=figures.mosaic_ticks(list(ALPHAS), h), x_title="α", scale=4)
c1, c2 = st.columns(2)
if all(walks[label]["score"] is not None for label, _, _ in sel.pair):
    y_title = UNITS.get(MEASURE.get(kind), f"p({classes[cb]} | image)" if classes else "")
    figures.chart(figures.line_chart({label: walks[label]["score"] for label, _, _ in sel.pair}, x=list(ALPHAS),
                                     title="Measured on the decoded images of this strip", y_title=y_title,
                                     x_title="α"), "arith_score", where=c1)
fig = figures.line_chart({label: walks[label]["dist"] for label, _, _ in sel.pair}, x=list(ALPHAS),
                         title="Distance of z + α·v to the nearest test code", y_title="× typical gap",
                         x_title="α")
fig.add_hline(y=1.0, line=dict(color="grey", dash="dot"))
figures.chart(fig, "arith_dist", where=c2)

# ------------------------------------------------------------------ 5 · on many images
st.subheader("4 · On many test images")
pops = {label: ar.population(ckpt, models.ckpt_key(ckpt), sel.dataset, n_vec, kind, ca, cb, tuple(int(i) for i in held))
        for label, ckpt, _ in sel.pair}
n_pop = pops["VAE"]["n"]
whose = (f"{n_pop} test images that did not help define v" if held_is_new
         else f"{n_pop} test images (in so small a set they also helped define v)")
if kind == "class":
    whose = whose.replace("test images", f"test {classes[ca]}s", 1)
c1, c2 = st.columns(2)
if kind in MEASURE or clf is not None:
    figures.chart(figures.line_chart({label: p["mean"] for label, p in pops.items()}, x=list(ALPHAS),
                                     title=f"Mean over {n_pop} decoded test images",
                                     y_title=UNITS.get(MEASURE.get(kind), f"p({classes[cb]} | image)" if classes else ""),
                                     x_title="α"), "arith_pop_score", where=c1)
if clf is not None and pops["VAE"]["clear"] is not None:
    clear_title = (f"Share read as a clear {classes[cb]}" if kind == "class" else "Share still read as the same digit")
    figures.chart(figures.line_chart({label: 100 * p["clear"] for label, p in pops.items()}, x=list(ALPHAS),
                                     title=clear_title, y_title="% (classifier p > 0.9)", x_title="α"),
                  "arith_pop_clear", where=c2)
st.caption(f"Each model adds its own v to its codes of {whose}; the decoded images are measured as in section 1"
           + (", and the shipped digit classifier reads them (a digit counts when its top class has p > 0.9)"
              if clf is not None else "") + ".")

# ------------------------------------------------------------------ the computed "Notice"
i0, i1 = ALPHAS.index(0.0), ALPHAS.index(1.0)
ends = [ALPHAS.index(-2.0), ALPHAS.index(2.0)]
both = "AE" in pops
if kind == "class" and pops["VAE"]["clear"] is not None and n_pop:
    text = (f"**Notice:** adding v once (α = 1) to the codes of {n_pop} held-out {classes[ca]}s makes "
            f"{100 * pops['VAE']['clear'][i1]:.0f}% of the VAE's decoded images clear {classes[cb]}s")
    text += (f" ({100 * pops['AE']['clear'][i1]:.0f}% of the AE's); " if both else "; ")
    text += f"at α = 0, {100 * pops['VAE']['clear'][i0]:.0f}% of the VAE's are."
elif kind in MEASURE and n_pop:
    unit = "ink" if kind == "thicker" else "slant"
    fmt = (lambda s: f"{s:.0f}") if kind == "thicker" else (lambda s: f"{s:+.2f}")
    text = (f"**Notice:** adding v once (α = 1) moves the mean {unit} of {n_pop} held-out images from "
            f"{fmt(pops['VAE']['mean'][i0])} to {fmt(pops['VAE']['mean'][i1])} in the VAE")
    text += (f", from {fmt(pops['AE']['mean'][i0])} to {fmt(pops['AE']['mean'][i1])} in the AE." if both else ".")
    if pops["VAE"]["clear"] is not None and both:
        kv = 100 * float(np.mean(pops["VAE"]["clear"][ends]))
        ka = 100 * float(np.mean(pops["AE"]["clear"][ends]))
        text += (f" At α = ±2 the classifier still reads {kv:.0f}% of the VAE's and {ka:.0f}% of the AE's "
                 "as the same class: " + ("the VAE's space carries the change further." if kv > ka + 5 else
                                          "here the AE's hold up better." if ka > kv + 5 else
                                          "here the two hold up about equally."))
else:
    text = "**Notice:** watch how far z + α·v strays from the codes (section 3) as α grows."
notice.markdown(text)

links.sidebar_link()
