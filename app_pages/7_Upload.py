"""Upload: add a checkpoint to the model lists, or look at an image set of your own.

Every check lives in explorer/uploads.py; this page reads the widgets and reports the outcome.
"""
import traceback

import numpy as np
import streamlit as st

from explorer import models, paths, uploads
from vae_core.errors import CheckpointError, DataError

st.set_page_config(page_title="Upload · VAE Latent Explorer", page_icon="📤", layout="wide")
st.title("Upload")
LIMIT_MB = uploads.APP_UPLOAD_LIMIT_BYTES // 2**20

# ------------------------------------------------------------------ checkpoints
st.header("A checkpoint")
st.markdown(f"A `.safetensors` file written by this app or by `python -m vae_core train` (at most {LIMIT_MB} MB), "
            "of a model trained on MNIST, Fashion-MNIST or the 8×8 digits, so the pages have its test images. "
            "It is checked in full before anything is kept: its config, the shape of every weight, and "
            "that no weight is NaN or infinite. A safetensors file holds only numbers, so reading one runs no code.")

up = st.file_uploader("Checkpoint file", type=["safetensors"], key="upload_ckpt")
if up is not None:
    data = up.getvalue()
    try:
        ckpt = uploads.check_checkpoint(data, up.name)
    except CheckpointError as e:
        st.error(f"This file was refused, and nothing was saved: {e}", icon=":material/block:")
    except Exception as e:  # a flaw no check foresaw: refuse the file, keep the traceback for the server log
        traceback.print_exc()
        st.error(f"This file was refused, and nothing was saved: it could not be read ({type(e).__name__}): "
                 "choose a .safetensors file written by this app or `python -m vae_core train`",
                 icon=":material/block:")
    else:
        cfg = ckpt.model_config
        n_params = sum(p.numel() for p in ckpt.model.parameters())
        st.success(f"{up.name} is a valid checkpoint: a {cfg.kind.upper()} with a {cfg.latent_dim}-dimensional "
                   f"latent space, {n_params:,} weights, trained on {ckpt.dataset}.",
                   icon=":material/check_circle:")
        with st.form("upload_save_form"):
            name = st.text_input("Save it as", value=uploads.suggest_name(up.name), key="upload_name",
                                 help="Letters, digits, '.', '_' and '-'; an existing name is never overwritten.")
            save = st.form_submit_button("Save to my models", icon=":material/save:")
        if save:
            try:
                models.check_free_name(name)
                path = uploads.save_upload(data, name, paths.user_dir(), up.name)
                models.remember_mine(path.stem)
            except CheckpointError as e:
                st.error(f"Not saved: {e}", icon=":material/block:")
            except Exception as e:  # unforeseen: say so plainly, never show a traceback
                traceback.print_exc()
                st.error(f"Not saved: the file could not be written ({type(e).__name__}); nothing was "
                         "overwritten: try again, or ask whoever runs the app", icon=":material/block:")
            else:
                st.success(f"Saved as **{path.stem}**. It now appears in the model lists of every page "
                           "(under your models).", icon=":material/save:")

mine = [m["name"] for m in models.list_models() if m["source"] == "yours"]
st.caption("Your models: " + (", ".join(mine) if mine else "none yet."))
skipped = models.skipped_models()
if skipped:
    with st.expander(f"{len(skipped)} file(s) in the model folders could not be read and are left out of every list"):
        st.dataframe([{"file": name, "why": why} for name, why in skipped], hide_index=True)

# ------------------------------------------------------------------ image sets
st.header("An image set")
st.markdown(f"A `.npz` with grey images as `x` (N × H × W, uint8 or floats in [0, 1], 8 to 64 pixels a side) "
            f"and, optionally, integer labels as `y` (at most {LIMIT_MB} MB). Arrays of Python objects are refused "
            "unread. The images are kept **only in this browser session**: they are not saved on the server, "
            "and the other pages keep showing their own data.")

up_npz = st.file_uploader("Image set", type=["npz"], key="upload_npz")
if up_npz is not None:
    try:
        x, y = uploads.check_dataset(up_npz.getvalue(), up_npz.name)
    except Exception as e:  # DataError/CheckpointError say why; anything unforeseen is refused too
        if not isinstance(e, (DataError, CheckpointError)):
            traceback.print_exc()
            e = (f"it could not be read ({type(e).__name__}): save it with "
                 "numpy.savez(path, x=images, y=labels)")
        kept = st.session_state.get("uploaded_images")
        st.error(f"This file was refused: {e}"
                 + (f" Your earlier image set, {kept['name']} ({len(kept['x']):,} images), is kept." if kept else ""),
                 icon=":material/block:")
    else:
        st.session_state["uploaded_images"] = {"name": up_npz.name, "x": x, "y": y}
        labels = f", {len(np.unique(y))} distinct labels" if y is not None else ", no labels"
        st.success(f"{up_npz.name}: {len(x):,} images of {x.shape[1]} × {x.shape[2]} pixels{labels}.",
                   icon=":material/check_circle:")
        show = min(len(x), 12)
        st.image([np.clip(x[i], 0, 1) for i in range(show)], width=64,
                 caption=[f"y = {y[i]}" if y is not None else f"#{i}" for i in range(show)])
