"""Side by side: the AE and VAEs trained with different β, and the rate–distortion trade-off."""
import math
from pathlib import Path

import numpy as np
import streamlit as st

from explorer import claims, families, figures, links, models
from explorer import training as tr

import pandas as pd  # noqa: E402 - after explorer, which imports the heavy libraries in one order

st.set_page_config(page_title="Compare β · VAE Latent Explorer", page_icon="⚖️", layout="wide")
st.title("Compare β")
st.caption("One column per model: what its code space looks like, how well it reconstructs the same "
           "test images, what it draws from the prior, what one latent dimension does, and which latent "
           "dimensions it uses.")
notice = st.container()

infos = models.list_models()
by_name = {i["name"]: i for i in infos}
fams = families.families(infos)
if not infos:
    st.info("No models yet. Train some on the Train page (its β sweep saves a whole family at once).")
    st.stop()


def _members(key: str) -> list:
    return [i["name"] for i in families.spread(fams[key])]


links.restore("cb_family", links.one_of(list(fams)))
if "cb_models" not in st.session_state and st.query_params.get("cb_models"):
    linked = [n for n in st.query_params["cb_models"].split(",") if n in by_name]
    if linked:
        st.session_state["cb_models"] = linked
if st.session_state.get("cb_family") not in fams:
    st.session_state.pop("cb_family", None)        # its family is gone (a file was removed)
family = st.session_state.get("cb_family") or families.default_family(fams)
if "cb_models" not in st.session_state:
    st.session_state["cb_models"] = _members(family) if family else [infos[0]["name"]]
# Names of files removed since, or more than the page draws, never reach the widget.
st.session_state["cb_models"] = [n for n in st.session_state["cb_models"] if n in by_name][:families.MAX_SHOWN]


def _use_family():
    st.session_state["cb_models"] = _members(st.session_state["cb_family"])


c1, c2 = st.columns([2, 3])
in_family = set(_members(family)) if family else set()
if fams:
    c1.selectbox("Family", list(fams), index=list(fams).index(family), key="cb_family", on_change=_use_family,
                 format_func=lambda k: families.family_label(fams[k]),
                 help="Models trained together (one training run or β sweep), as their files record it.")
c2.multiselect("Models", list(by_name), key="cb_models", max_selections=families.MAX_SHOWN,
               format_func=lambda n: families.short_label(by_name[n]) if n in in_family else n,
               help="The family's members are shown by β; models from elsewhere by their file name.")
if family and len(fams[family]) > families.MAX_SHOWN:
    st.caption(f"This family has {len(fams[family])} models; the page shows at most {families.MAX_SHOWN} "
               "side by side, spread over its β range. Swap models in the box above.")
if fams:
    links.publish("cb_family", st.session_state.get("cb_family", family))
links.publish("cb_models", ",".join(st.session_state["cb_models"]))
chosen = sorted([by_name[n] for n in st.session_state["cb_models"] if n in by_name], key=families.sort_key)
if not chosen:
    st.info("Choose at least one model.")
    st.stop()
datasets = sorted({i["dataset"] for i in chosen})
if len(datasets) > 1:
    st.warning(f"These models were trained on different datasets ({', '.join(datasets)}): showing only the "
               f"{chosen[0]['dataset']} ones, so every column sees the same test images.")
    chosen = [i for i in chosen if i["dataset"] == chosen[0]["dataset"]]
dataset = chosen[0]["dataset"]

# ---------------------------------------------------------------- small multiples
with st.spinner("Encoding and decoding the test images…"):
    stamps = [Path(info["path"]).stat().st_mtime_ns for info in chosen]
    views = [tr.model_views(info["path"], t, dataset) for info, t in zip(chosen, stamps)]

vae_reach = tr.shared_reach([v["codes"] for info, v in zip(chosen, views) if info["model_config"]["kind"] == "vae"])
st.caption(f"Every VAE column is drawn on the same axes, ±{vae_reach:g} in both directions, so their spreads "
           "compare at a glance; the AE's codes have no prior to keep them near 0 and get their own scale. "
           + claims.spread_comparison({families.short_label(i): v["reach"] for i, v in zip(chosen, views)
                                       if i["model_config"]["kind"] == "vae"},
                                      next((v["reach"] for i, v in zip(chosen, views)
                                            if i["model_config"]["kind"] == "ae"), None)))
per_row = math.ceil(len(chosen) / math.ceil(len(chosen) / 4))   # at most 4 a row: legible thumbnails
cols = [c for start in range(0, len(chosen), per_row) for c in st.columns(per_row)][:len(chosen)]
for col, info, v, stamp in zip(cols, chosen, views, stamps):
    is_vae = info["model_config"]["kind"] == "vae"
    reach = vae_reach if is_vae else tr.shared_reach([v["codes"]])
    prior = is_vae and v["latent_dim"] == 2
    kl = v["kl_dims"]
    # Pictures, not charts (a row of small charts cost the browser about a second to draw), and
    # one HTML block per column, not eight elements: see figures.card_html.
    col.html(figures.card_html(
        f"{families.short_label(info)} · d={v['latent_dim']} · {claims.likelihood_short(info)}", info["name"], [
            tr.codes_picture(info["path"], stamp, dataset, reach, prior),
            v["how"] + ("" if is_vae else f" · own scale ±{reach:g}")
            + (" · circles: the prior's 1σ and 2σ" if prior else ""),
            (tr.recon_strip(v["originals"], [v["recons"]]), "test images / reconstructions"),
            (figures.upscale(figures.tile(v["prior"][:, None], ncols=4), 200), "decoded from z ~ N(0, I)"),
            (figures.upscale(figures.tile(v["trav"][:, None], ncols=len(v["trav"])), 116),
             f"z{v['trav_dim']}, its dimension with the most KL, from −3 to 3" if is_vae
             else f"z{v['trav_dim']}, its most spread dimension, over ±3 of its spread"),
            f"KL per dimension (below): {int((kl > 0.01).sum())} of {len(kl)} above 0.01 nats" if kl is not None
            else "No KL: the AE's code is a point, not a distribution."]))

# Titled by β and d: the picker may mix families, and two "β=1" panels must not overwrite each other.
kls = {f"{families.short_label(info)} · d={v['latent_dim']}" + (f" · {info['name']}" if sum(
           families.short_label(o) == families.short_label(info) and w["latent_dim"] == v["latent_dim"]
           for o, w in zip(chosen, views)) > 1 else ""): v["kl_dims"]
       for info, v in zip(chosen, views) if v["kl_dims"] is not None}
if kls:
    figures.chart(figures.bar_kl_row(kls), "cb_kl")
    st.caption("KL per latent dimension, largest first, on one scale for every VAE: a dimension near 0 "
               "carries nothing about the image. Raising β switches dimensions off.")

# ---------------------------------------------------------------- metrics
rows = []
computing = [i for i in chosen if not ("recon" in (i.get("metrics") or {}) and "kl" in i["metrics"])]
with st.spinner(f"Computing metrics for {len(computing)} model(s) that carry none…") if computing else st.empty():
    for info in chosen:
        m = tr.metrics_for(info)
        row = {"name": info["name"], "model": families.short_label(info), "beta": families.beta_of(info)}
        row.update({k: m.get(k) for k in tr.METRIC_KEYS})
        row["source"] = m.get("source", "")
        rows.append(row)

notice.markdown(claims.beta_trend([r for r in rows if r["beta"] is not None],
                                  {int(i["model_config"]["latent_dim"]) for i in chosen}))

st.subheader("Rate and distortion")
left, right = st.columns([3, 2])
figures.chart(tr.rate_distortion_figure(rows), "cb_rd", where=left)
right.markdown(
    "Each VAE pays a **rate**, the KL between its posterior and the prior averaged over images (an upper "
    "bound, in nats, on the information its code carries about the image), to lower its **distortion**, "
    "the reconstruction cost. β sets the exchange "
    "rate: a small β buys sharp reconstructions with an expensive code, a large β squeezes the code and "
    "blurs the images. The points trace the trade-off curve.\n\n"
    "**Where the AE sits.** The AE's objective has no KL term, so in its own bookkeeping its code costs "
    "nothing: we draw it on the distortion axis, at rate 0. That placement is conceptual only. A "
    "deterministic code is a single point, and the KL from a point mass to any continuous distribution is "
    "infinite, so its true rate is not a finite number at all.")

st.subheader("Every metric")
table = pd.DataFrame(rows)
shown = table[["model", "name"] + list(tr.METRIC_KEYS)].rename(columns=tr.COLUMN_NAMES)
best = {tr.COLUMN_NAMES[k]: tr.best_rows(table[k].tolist(), tr.BETTER[k]) for k in tr.METRIC_KEYS}
# On 2-D models the importance-weighted estimate is loose by different amounts per model (up to
# 2.3 nats on average for the shipped family, against exact integration) and ranked them wrongly:
# no "best" mark for it there; the True posterior page ranks them by the exact value.
two_d = any(i["model_config"]["kind"] == "vae" and i["model_config"]["latent_dim"] == 2 for i in chosen)
if two_d:
    best[tr.COLUMN_NAMES["log_px"]] = set()


def _mark(col):
    return ["background-color: #c8e6c9; font-weight: bold" if i in best.get(col.name, set()) else ""
            for i in range(len(col))]


# A static table, not st.dataframe: a handful of rows needs no scrolling grid, and the grid's
# canvas costs the browser a redraw on every change of the page.
st.table(shown.style.apply(_mark).format(precision=3, na_rep="–").hide(axis="index"))
marks = [f"{name}: {', '.join(table['model'][i] for i in sorted(rows_))}" for name, rows_ in best.items() if rows_]
st.caption("Best per column (green): " + "; ".join(marks) + ". Rate, active units and the loss (each model "
           "at its own β) are trade-offs rather than scores, so they are not marked. ELBO and log p(x) exist only "
           "for VAEs. " + ("The importance-weighted log p(x) of a 2-D model is not marked: it can fall short of the "
                           "exact value by a different amount for each model, enough to reorder them; the True "
                           "posterior page ranks 2-D models by their exact log p(x). " if two_d else "") + "Sources: " + "; ".join(sorted({f'{r["model"]}: {r["source"]}' for r in rows})))

figures.chart(tr.versus_beta_figure(rows, [("active_units", "Active units vs β", "dimensions in use"),
                                           ("log_px", "Importance-weighted log p(x) vs β",
                                            "nats per image (higher is better)")]),
              "cb_versus")
vae_dims = {v["latent_dim"] for info, v in zip(chosen, views) if info["model_config"]["kind"] == "vae"}
others = [families.family_label(members) for members in fams.values()
          if any(i["model_config"]["latent_dim"] > 2 for i in members)]
if vae_dims and max(vae_dims) <= 2:
    st.caption("With only two latent dimensions every VAE here needs both, so active units cannot fall as β "
              "grows. " + (f"Choose a family with more dimensions ({'; '.join(others)}) to watch dimensions "
                           "switch off as β rises." if others else "Train a family with more dimensions (the "
                           "Train page's sweep) to watch dimensions switch off as β rises."))

st.subheader("Why β does this: three forces on the codes")
st.markdown(
    "Picture each training image's posterior as a small bubble in latent space: centred at μ, with radius σ. "
    "Three forces act on these bubbles during training:\n\n"
    "1. **Reconstruction pushes bubbles apart.** If two images' bubbles overlap, the decoder receives codes it "
    "cannot attribute to either image, and reconstructions suffer. So this term spreads the bubbles and "
    "shrinks them.\n"
    "2. **The μ² part of the KL pulls every bubble towards the origin**, as if all of them should sit inside one "
    "big bubble, the prior N(0, I). It is what packs the codes together with no empty gaps.\n"
    "3. **The σ² − log σ² − 1 part holds each bubble at unit size:** it is zero at σ = 1 and grows "
    "whether a bubble shrinks or swells. It stops the encoder from turning bubbles into points.\n\n"
    "β scales forces 2 and 3 against force 1. With small β reconstruction wins: bubbles stay small and apart, "
    "reconstructions are sharp, and more of the prior's samples land between the codes. Even so, a VAE's "
    "codes stay at the prior's scale, far from the AE's (see the spreads measured above). With large β the KL "
    "wins: bubbles swell and crowd into the unit circle, dimensions the data cannot pay for collapse to the "
    "prior (fewer active units), reconstructions blur, and what is left is smooth enough that samples from the "
    "prior decode to plausible digits. The AE has only force 1, which is why its map has holes.\n\n"
    "**Disentanglement.** A large β also pushes each active dimension to carry its own factor of variation, "
    "since the prior's dimensions are independent: the traversal row of each column shows what its busiest "
    "dimension changes. The β-VAE literature calls a code whose dimensions each change one factor "
    "(slant, width, which digit) *disentangled*. Nothing guarantees it, and on MNIST a dimension often "
    "changes the digit and its style at once: judge it by eye in the rows above.")
