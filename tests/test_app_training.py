"""The Train and Compare-β pages under AppTest, on tiny digits models (seconds each)."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from vae_core import runmeta
from vae_core.checkpoints import load_checkpoint, read_info, save_checkpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core import jobs
from vae_core.jobs import JobSpec
from vae_core.sweep import sweep
from chart_support import chart_keys
from job_support import Job

REPO = Path(__file__).resolve().parent.parent
TRAIN = str(REPO / "app_pages" / "5_Train.py")
COMPARE = str(REPO / "app_pages" / "6_Compare_beta.py")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A tiny shipped family digits-d2-{ae, vae-b0.5, vae-b4} with metrics, plus one VAE without."""
    folder = tmp_path_factory.mktemp("shipped")
    paths = sweep(ModelConfig(latent_dim=2, hidden=(32,)), TrainConfig(dataset="digits", epochs=3, batch_size=64),
                  [0.5, 4], folder, "digits-d2", half=False)
    run = type("R", (), {})()
    last = load_checkpoint(paths[-1])
    run.model, run.history = last.model, last.history
    same_run = {**last.run, "beta": 2.0, "label": "VAE β=2"}   # the sweep's run group: one family
    save_checkpoint(folder / "digits-d2-vae-b2.safetensors", run.model, TrainConfig(dataset="digits", beta=2.0),
                    dataset="digits", history=run.history, run=same_run)
    return folder


@pytest.fixture
def dirs(shipped, tmp_path, monkeypatch):
    user = tmp_path / "user"
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(shipped))
    monkeypatch.setenv("VAE_USER_DIR", str(user))
    yield shipped, user


def no_errors(at):
    assert not at.exception, [e.value for e in at.exception]


def start_training(at, **settings):
    at.selectbox(key="tr_preset").set_value("Fast demo (8x8 digits, seconds)").run()
    for key, value in settings.items():
        widget = at.select_slider(key=key) if key == "tr_lr" else at.number_input(key=key)
        widget.set_value(value)
    at.run()
    at.button(key="tr_train").click().run()
    no_errors(at)
    job = Job(at.session_state["train_owner"])
    assert job.view() is not None
    return job


def by_prefix(widgets, prefix):
    return [w for w in widgets if w.key and w.key.startswith(prefix)]


def test_train_save_and_the_model_is_listed(dirs):
    shipped, user = dirs
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    no_errors(at)
    job = start_training(at, tr_epochs=2)
    assert job.wait(60)
    at.run()
    no_errors(at)
    assert any("finished" in s.value for s in at.success)
    assert "tr_curves" in chart_keys(at), "the loss curves are drawn"
    names = by_prefix(at.text_input, "tr_name_")
    assert len(names) == 2                                   # the AE and the VAE
    names[1].set_value("../evil").run()
    by_prefix(at.button, "tr_save_")[1].click().run()
    assert any("Not saved" in e.value and "only hold" in e.value for e in at.error)
    assert not user.exists() or not list(user.iterdir())
    by_prefix(at.text_input, "tr_name_")[1].set_value("my-digits-vae").run()
    by_prefix(at.button, "tr_save_")[1].click().run()
    no_errors(at)
    assert any("my-digits-vae" in s.value for s in at.success)
    ckpt = load_checkpoint(user / "my-digits-vae.safetensors")
    assert ckpt.model_config.kind == "vae" and len(ckpt.history) == 2
    assert "my-digits-vae" in at.dataframe[-1].value["name"].tolist()       # "Your saved models"
    # Saving the AE under the same name is refused rather than overwriting the VAE.
    by_prefix(at.text_input, "tr_name_")[0].set_value("my-digits-vae").run()
    by_prefix(at.button, "tr_save_")[0].click().run()
    assert any("already exists" in e.value for e in at.error)
    assert load_checkpoint(user / "my-digits-vae.safetensors").model_config.kind == "vae"
    # The comparison page lists it at once.
    cmp_ = AppTest.from_file(COMPARE, default_timeout=60).run()
    assert any("my-digits-vae" in o for o in cmp_.multiselect(key="cb_models").options)


def test_stop_keeps_the_model(dirs):
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    job = start_training(at, tr_epochs=200)
    assert job.wait(60, until=lambda v: v.runs[0].epoch >= 1)
    at.run()
    at.button(key="tr_stop").click().run()
    assert job.wait(30) and job.status == "stopped"
    at.run()
    no_errors(at)
    assert any("stopped" in i.value for i in at.info)
    assert by_prefix(at.button, "tr_save_"), "a stopped model can still be saved"
    assert len(job.runs[0].history) < 200


def test_a_failed_save_keeps_the_model_for_download(dirs, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the user folder should be")
    monkeypatch.setenv("VAE_USER_DIR", str(blocker / "user"))
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    job = start_training(at, tr_epochs=1)
    assert job.wait(60)
    at.run()
    by_prefix(at.text_input, "tr_name_")[0].set_value("kept").run()
    by_prefix(at.button, "tr_save_")[0].click().run()
    no_errors(at)
    assert any("Not saved" in e.value and "could not write" in e.value for e in at.error)
    assert by_prefix(at.button, "tr_save_"), "the save form is still there to try again"
    assert jobs.fetch(job.id, 0) is not None
    assert len(by_prefix(at.get("download_button"), "tr_dl_")) == 2


def test_diverging_run_shows_a_message(dirs):
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    job = start_training(at, tr_epochs=3, tr_lr=10.0)
    assert job.wait(60)
    at.run()
    no_errors(at)
    assert job.status == "diverged"
    assert any("diverged" in e.value and "learning rate" in e.value for e in at.error)


def test_bad_settings_are_explained(dirs):
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.text_input(key="tr_hidden").set_value("512, lots").run()
    at.button(key="tr_train").click().run()
    no_errors(at)
    assert any("hidden sizes" in e.value and "512,256" in e.value for e in at.error)
    assert jobs.view(at.session_state["train_owner"]) is None


def test_compare_page_default_family_and_chosen_set(dirs):
    at = AppTest.from_file(COMPARE, default_timeout=120).run()
    no_errors(at)
    assert at.multiselect(key="cb_models").value == [
        "digits-d2-ae", "digits-d2-vae-b0.5", "digits-d2-vae-b2", "digits-d2-vae-b4"]
    table = at.table[0].value
    assert table["model"].tolist() == ["AE", "β=0.5", "β=2", "β=4"]
    # Rate grows as β falls; the AE has no rate of its own.
    kl = dict(zip(table["model"], table["rate: KL (nats)"]))
    assert kl["AE"] == 0 and kl["β=0.5"] > kl["β=4"]
    captions = " ".join(c.value for c in at.caption)
    assert "computed here" in captions and "stored in the checkpoint" in captions
    assert "Best per column" in captions
    assert any("conceptual" in m.value for m in at.markdown)
    at.multiselect(key="cb_models").set_value(["digits-d2-ae", "digits-d2-vae-b4"]).run()
    no_errors(at)
    assert at.table[0].value["model"].tolist() == ["AE", "β=4"]


def test_sweep_from_the_page_lands_in_the_comparison(dirs):
    shipped, user = dirs
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.selectbox(key="tr_preset").set_value("Fast demo (8x8 digits, seconds)").run()
    at.number_input(key="tr_epochs").set_value(2).run()
    at.text_input(key="tr_sweep_betas").set_value("0.5, 2")
    at.text_input(key="tr_sweep_prefix").set_value("mysweep")
    at.button(key="tr_sweep_start").click().run()
    no_errors(at)
    job = Job(at.session_state["train_owner"])
    assert job.wait(120, until=lambda v: v.done and all(r.saved_path for r in v.runs)), job.message
    assert job.status == "finished"
    at.run()
    no_errors(at)
    assert at.dataframe[0].value["model"].tolist() == ["AE", "VAE β=0.5", "VAE β=2"]   # progress per model
    assert sorted(p.name for p in user.iterdir()) == [
        "mysweep-ae.safetensors", "mysweep-vae-b0.5.safetensors", "mysweep-vae-b2.safetensors"]
    cmp_ = AppTest.from_file(COMPARE, default_timeout=120).run()
    family = runmeta.family_key(read_info(user / "mysweep-ae.safetensors"))   # the sweep's run group
    assert any("3 models" in o for o in cmp_.selectbox(key="cb_family").options)
    cmp_.selectbox(key="cb_family").set_value(family).run()
    no_errors(cmp_)
    assert cmp_.table[0].value["name"].tolist() == ["mysweep-ae", "mysweep-vae-b0.5", "mysweep-vae-b2"]
    # A second sweep with the same prefix is refused before it starts: nothing is overwritten.
    at.button(key="tr_sweep_start").click().run()
    assert any("already exists" in e.value for e in at.error)


def test_live_curves_show_smoothed_per_batch_lines_for_every_term():
    """Loss, reconstruction and KL each get a smoothed per-batch line beside the per-epoch points
    (the AE has no KL panel line); the per-batch KL line ends near the last batches' KL."""
    from explorer.training import curves_figure
    spec = JobSpec(ModelConfig(latent_dim=2, hidden=(32,)), TrainConfig(dataset="digits", epochs=2, batch_size=64),
                   kinds=("ae", "vae"))
    owner = "c" * 32
    jobs.submit(owner, spec)
    job = Job(owner)
    assert job.wait(120) and job.status == "finished", job.message
    fig = curves_figure(job.view())
    per_batch = [t for t in fig.data if t.name.endswith("per batch (smoothed)")]
    panels = {(t.name.split()[0], t.xaxis) for t in per_batch}
    assert panels == {("AE", "x"), ("AE", "x2"), ("VAE", "x"), ("VAE", "x2"), ("VAE", "x3")}, panels
    vae = job.view().runs[1]
    kl_line = next(t for t in per_batch if t.name.startswith("VAE") and t.xaxis == "x3")
    assert kl_line.y[-1] == pytest.approx(vae.steps[-1][4]) and kl_line.y[-1] > 0


def test_a_shared_link_never_hands_over_a_finished_job(dirs):
    """A student's address with ?trainer= opened by someone else: while the job trains, it finds
    the job (a refresh); once it is done, the token is not taken over, so the receiver's Train
    starts their own job and the sender's unsaved models stay theirs."""
    sender = AppTest.from_file(TRAIN, default_timeout=60).run()
    job = start_training(sender, tr_epochs=1)
    token = sender.session_state["train_owner"]
    assert sender.query_params.get("trainer") == token            # in the address while it trains
    assert job.wait(60) and job.status == "finished"
    sender.run()
    assert "trainer" not in sender.query_params                    # done: gone from the address
    receiver = AppTest.from_file(TRAIN, default_timeout=60)
    receiver.query_params["trainer"] = token                       # a link copied earlier
    receiver.run()
    no_errors(receiver)
    assert receiver.session_state["train_owner"] != token
    assert not by_prefix(receiver.button, "tr_save_"), "the sender's save boxes are not offered"
    receiver.selectbox(key="tr_preset").set_value("Fast demo (8x8 digits, seconds)").run()
    receiver.number_input(key="tr_epochs").set_value(1).run()
    receiver.button(key="tr_train").click().run()
    no_errors(receiver)
    assert Job(receiver.session_state["train_owner"]).wait(60)
    assert jobs.fetch(job.id, 0) is not None and jobs.view(token).id == job.id   # the sender's job is intact
