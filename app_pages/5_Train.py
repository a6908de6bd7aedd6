"""Train an AE, a VAE, both with one seed, or a sweep over β, and watch them learn.

Trainings run on Ray workers through the class's fair queue (vae_core.jobs): never refused, a job
past the free workers waits its turn and this page shows its place and estimated times."""
import uuid
from pathlib import Path

import streamlit as st

from explorer import figures, models, paths, timing
from explorer import training as tr
from vae_core import jobs, runmeta
from vae_core.errors import VaeCoreError
from vae_core.sweep import run_name

st.set_page_config(page_title="Train · VAE Latent Explorer", page_icon="🏋️", layout="wide")
st.title("Train a model")
st.caption("Training runs on the server's workers, one model per worker; when they are all busy your job "
           "waits its turn in a fair queue (one student's sweep never holds the class back). You can switch "
           "pages or refresh and come back: the address keeps a token that finds your job again. "
           "Stop keeps what was learned so far.")

owner = tr.owner_token()
engine_error = ""
try:
    job = jobs.view(owner)
except VaeCoreError as e:
    job, engine_error = None, str(e)
running = job is not None and not job.done
tr.show_token_while_training(job, known=not engine_error)
if engine_error:
    st.warning(f"{engine_error} The other pages work as usual.")

if "tr_dataset" not in st.session_state:
    tr.apply_preset(next(iter(tr.PRESETS)))

# ---------------------------------------------------------------- settings
with st.expander("Settings", expanded=not running):
    st.selectbox("Preset", list(tr.PRESETS), key="tr_preset",
                 on_change=lambda: tr.apply_preset(st.session_state["tr_preset"]),
                 help="Fills in every setting below; change any of them afterwards.")
    c1, c2, c3 = st.columns(3)
    with c1:
        st.selectbox("Dataset", ["mnist", "fashion-mnist", "digits"], key="tr_dataset",
                     help="digits: scikit-learn's 1,797 8x8 images, trains in seconds.")
        st.radio("Model", list(tr.MODEL_CHOICES), key="tr_models",
                 help="Both: the AE and the VAE start from the same weights and see the batches in the same order.")
        st.number_input("β (KL weight)", 0.0, 1000.0, step=0.5, key="tr_beta",
                        help="1 gives the ELBO. Larger β pulls codes towards N(0, I) harder.")
        st.number_input("KL warm-up (epochs)", 0.0, 100.0, step=1.0, key="tr_warmup",
                        help="β rises linearly from 0 over this many epochs.")
        st.number_input("Free bits (nats per dimension)", 0.0, 10.0, step=0.1, key="tr_free_bits",
                        help="No pressure on a dimension's KL below this floor: fights posterior collapse.")
    with c2:
        st.number_input("Latent size d", 1, 256, key="tr_latent", help="d = 2 lets you watch the map form.")
        st.selectbox("Architecture", ["mlp", "conv"], key="tr_arch")
        st.text_input("Hidden sizes (MLP)", key="tr_hidden", help="Encoder order, e.g. 512 or 512,256.")
        st.text_input("Channels (conv)", key="tr_channels", help="e.g. 32,64")
        st.selectbox("Likelihood p(x|z)", ["bernoulli", "gaussian", "gaussian_learned"], key="tr_likelihood")
    with c3:
        st.number_input("Epochs", 1, 200, key="tr_epochs")
        st.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0],
                         key="tr_lr", format_func=lambda v: f"{v:g}",
                         help="Adam's step size. Too large and the run diverges (the loss turns NaN, or the "
                              "reconstruction ends an epoch worse than the untrained network's): it then "
                              "stops with a message and keeps the last good epoch.")
        st.selectbox("Batch size", [1, 8, 16, 32, 64, 128, 256, 512], key="tr_batch",
                     help="Images per step. Small batches give noisy steps and take far longer per epoch.")
        st.number_input("Seed", 0, 2**31 - 1, key="tr_seed")
        st.number_input("Training images (0 = all)", 0, 60000, step=1000, key="tr_max_train",
                        help="Fewer images train faster; the test set is always used in full.")

values = {k: st.session_state[f"tr_{k}"] for k in tr.DEFAULTS}

if job is not None and job.done and any(r.usable and not r.saved_path for r in job.runs):
    st.caption("Training again replaces the models of your last run that are not saved: save or download "
               "them below first.")
b1, b2, _ = st.columns([1, 1, 4])
if b1.button("Train", key="tr_train", type="primary", disabled=running):
    try:
        with st.spinner("Sending the job to the training queue (the first training starts the workers: "
                        "a few seconds)…"):
            jobs.submit(owner, tr.spec_from_values(values))
        st.rerun()
    except VaeCoreError as e:
        st.error(str(e))

with st.expander("Sweep over β: one VAE per value (and the AE), saved for the Compare β page"):
    st.text_input("β values", "0.5, 1, 2, 4, 8", key="tr_sweep_betas")
    st.checkbox("Include the AE (same seed)", True, key="tr_sweep_ae")
    if "tr_sweep_tag" not in st.session_state:
        st.session_state["tr_sweep_tag"] = uuid.uuid4().hex[:4]
    st.text_input("Name prefix", f"{values['dataset']}-d{values['latent']}-sweep-{st.session_state['tr_sweep_tag']}",
                  key="tr_sweep_prefix",
                  help="Models are saved as <prefix>-ae and <prefix>-vae-b<β> among your models.")
    if st.button("Run sweep", key="tr_sweep_start", disabled=running):
        try:
            v = {**values, "models": "AE and VAE (same seed)" if st.session_state["tr_sweep_ae"] else "VAE"}
            spec = tr.spec_from_values(v, betas=tr.parse_betas(st.session_state["tr_sweep_betas"]),
                                       save_dir=paths.user_dir(), save_prefix=st.session_state["tr_sweep_prefix"].strip())
            for kind, beta in spec.runs():          # a sweep never takes a pretrained model's name either
                models.check_free_name(run_name(spec.save_prefix, kind, beta))
            with st.spinner("Sending the sweep to the training queue…"):
                jobs.submit(owner, spec)
            st.rerun()
        except VaeCoreError as e:
            st.error(str(e))


# ---------------------------------------------------------------- live view
def live(started_running: bool):
    try:
        view = jobs.view(owner)
    except VaeCoreError as e:
        st.warning(str(e))
        return
    if view is None:
        return
    if started_running and view.done:
        st.rerun()                  # redraw the whole page: settings, save forms
    run = view.runs[view.current]
    if view.queued:
        ahead = view.place or 0
        st.info(f"Waiting in the training queue: {ahead} model{'s' if ahead != 1 else ''} will start before "
                f"yours · {view.queue['running']} training now · starts in about "
                f"{tr.fmt_seconds(view.seconds_to_start())}, finishes in about {tr.fmt_seconds(view.seconds_left())} "
                "(estimates from the models ahead of you; the queue serves students in turn).")
    elif not view.done:
        e = min(run.epoch + 1, run.epochs)
        text = (f"{run.label}: epoch {e} of {run.epochs}, batch {run.step} of {run.steps_per_epoch or '…'}"
                f" · model {view.current + 1} of {len(view.runs)} · time left {tr.fmt_seconds(view.seconds_left())}")
        if run.status == "evaluating":
            text = f"{run.label}: computing its metrics…"
        elif run.status == "running" and not run.steps_per_epoch:
            text = f"{run.label}: starting on a worker (loading the data)…"
        st.progress(view.fraction, text=text)
    if not view.done:
        c1, c2, _ = st.columns([1, 1, 4])
        try:
            if c1.button("Stop", key="tr_stop", disabled=view.stop_requested or view.queued,
                         help="Stop after the current batch and keep the weights learned so far."):
                jobs.stop(owner)
                st.toast("Stopping after this batch…")
            if c2.button("Cancel", key="tr_cancel", disabled=view.stop_requested,
                         help="Leave the queue, or end the training now: nothing is kept."):
                jobs.stop(owner, cancel=True)
                st.toast("Cancelled.")
        except VaeCoreError as e:
            st.warning(f"{e} Press it again in a moment.")
    if len(view.runs) > 1:
        st.dataframe([{"model": r.label, "status": r.status, "epochs done": r.epoch,
                       "test loss": round(r.history[-1].get("test_loss", float("nan")), 2) if r.history else None,
                       "saved as": Path(r.saved_path).stem if r.saved_path else r.save_error}
                      for r in view.runs], hide_index=True)
    if any(r.history or r.steps for r in view.runs):
        figures.chart(tr.curves_figure(view), "tr_curves")
    if view.fixed_images is not None:
        shown = [r for r in view.runs if r.recon is not None][-4:]
        if shown:
            st.image(tr.recon_strip(view.fixed_images, [r.recon for r in shown]),
                     caption="Top row: fixed test images. Below: reconstructions by "
                             + ", ".join(r.label for r in shown) + " (refreshed as they learn).")
    with_codes = [r for r in view.runs if r.codes is not None and view.code_labels is not None][-3:]
    if with_codes:
        cols = st.columns(len(with_codes))
        for col, r in zip(cols, with_codes):
            fig = tr.codes_figure(r, view.code_labels[:len(r.codes)])
            figures.chart(fig, f"tr_codes_{r.label}", where=col)


if job is not None:
    st.divider()
    if running:
        timing.fragment(live, run_every=1.0)(True)
    else:
        live(False)


def _checkpoint_bytes(job_id: str, index: int):
    """The finished model's bytes for the download button, fetched once per session and model (the
    queue holds them; nothing is kept in the server's shared caches)."""
    kept = st.session_state.setdefault("tr_bytes", {})
    if (job_id, index) not in kept:
        try:
            data = jobs.fetch(job_id, index)
        except VaeCoreError:
            return None                 # not now: the next rerun asks again
        if data is None:
            return None
        for key in [k for k in kept if k[0] != job_id]:   # one job's models at a time per session
            del kept[key]
        kept[(job_id, index)] = data
    return kept[(job_id, index)]


# ---------------------------------------------------------------- results
if job is not None and job.done:
    if job.status == "finished":
        st.success(f"Training finished in {tr.fmt_seconds(sum(r.seconds for r in job.runs))}.")
    elif job.status == "stopped":
        st.info("Training was stopped: the weights learned so far are kept and can be saved.")
    elif job.status == "cancelled":
        st.info("The job was cancelled: nothing was kept.")
    elif job.status == "diverged":
        st.error(f"Training diverged. {job.message}")
    else:
        st.error(f"Training failed: {job.message}")
    for i, run in enumerate(job.runs):
        if not run.usable or run.status == "diverged" and not run.history:
            continue
        st.subheader(f"Keep {run.label}")
        if run.saved_path:
            st.success(f"Saved as **{Path(run.saved_path).stem}**: it is in every page's model list now.")
        else:
            default = (f"{job.dataset}-d{job.latent_dim}-" + ("ae" if run.kind == "ae" else f"vae-b{run.beta:g}")
                       + f"-{job.id[-6:]}")
            c1, c2 = st.columns([3, 1])
            name = c1.text_input("Name", default, key=f"tr_name_{i}_{job.id}",
                                 help="Letters, digits, '.', '_' and '-'; saved among your models.")
            replace = c2.checkbox("Replace a model of that name", False, key=f"tr_replace_{i}_{job.id}")
            if st.button("Save", key=f"tr_save_{i}_{job.id}"):
                try:
                    models.check_free_name(name)
                    if replace:
                        models.check_replaceable(name, runmeta.owner_id(owner))
                    saved = jobs.save_run(job, i, paths.user_dir(), name, overwrite=replace)
                    models.remember_mine(saved.stem)
                    st.rerun()
                except VaeCoreError as e:
                    st.error(f"Not saved: {e}. The model stays on the server for an hour; the download below still works.")
        data = _checkpoint_bytes(job.id, i)
        if data is not None:
            st.download_button(f"Download {run.label} (.safetensors)", data,
                               file_name=f"{run.kind}-{job.id[-6:]}-{i}.safetensors",
                               mime="application/octet-stream", key=f"tr_dl_{i}_{job.id}")

mine = [m for m in models.list_models() if m.get("source") == "yours"]
if mine:
    with st.expander(f"Your saved models ({len(mine)})", expanded=False):
        st.dataframe([{"name": m["name"], "dataset": m["dataset"], "kind": m["model_config"]["kind"],
                       "d": m["model_config"]["latent_dim"],
                       "β": (m.get("train_config") or {}).get("beta") if m["model_config"]["kind"] == "vae" else None,
                       "epochs": len(m.get("history") or [])} for m in mine], hide_index=True)
