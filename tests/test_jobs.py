"""The background job manager, on scikit-learn's 8x8 digits (seconds each)."""
import time

import pytest
import torch

from vae_core.checkpoints import load_checkpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.errors import CheckpointError
from vae_core.jobs import JobError, JobManager, JobSpec, ServerBusy, save_run


def spec(epochs=2, lr=1e-3, kinds=("vae",), latent=2, **kw):
    return JobSpec(ModelConfig(latent_dim=latent, hidden=(32,)),
                   TrainConfig(dataset="digits", epochs=epochs, batch_size=64, lr=lr, seed=3),
                   kinds=kinds, evaluate=kw.pop("evaluate", False), **kw)


def wait_for_steps(job, n=3, timeout=30):
    t0 = time.time()
    while job.done_steps < n and not job.done and time.time() - t0 < timeout:
        time.sleep(0.01)


@pytest.fixture
def manager():
    m = JobManager(max_running=2)
    yield m
    for job in m.running():
        job.stop()
        job.wait(30)


def test_short_run_finishes_with_history_and_live_views(manager):
    job = manager.start("alice", spec(epochs=2, evaluate=True, iw_samples=10))
    assert job.wait(60)
    v = job.view()
    assert v.status == "finished", v.message
    run = v.runs[0]
    assert [r["epoch"] for r in run.history] == [1, 2]
    assert {"train_loss", "test_loss", "test_recon", "test_kl"} <= set(run.history[-1])
    assert len(run.steps) == 2 * run.steps_per_epoch   # one smoothed loss per batch
    # Smoothed loss, reconstruction and KL per batch; averaging is linear, so with a constant beta
    # the smoothed loss is the smoothed reconstruction plus beta times the smoothed KL.
    for _, loss, beta, recon, kl in run.steps:
        assert beta == 1.0 and kl > 0 and recon > 0
        assert loss == pytest.approx(recon + beta * kl, rel=1e-6)
    assert v.fraction == 1.0 and v.seconds_left() == 0.0
    assert run.recon.shape == (10, 8, 8) and v.fixed_images.shape == (10, 8, 8)
    assert sorted(v.fixed_labels.tolist()) == list(range(10))   # one image of each digit
    assert len(run.codes) == 3 and run.codes[-1].shape == (len(v.code_labels), 2)  # init + 2 epochs
    assert run.metrics["log_px"] < 0 and run.metrics["active_units"] >= 0
    assert run.model is not None and run.usable


def test_stop_ends_early_and_keeps_the_model(manager, tmp_path):
    job = manager.start("bob", spec(epochs=500, evaluate=True, iw_samples=10))
    wait_for_steps(job, 5)
    job.stop()
    assert job.wait(30)
    assert job.status == "stopped"
    run = job.runs[0]
    assert run.status == "stopped" and run.usable
    assert run.metrics == {}   # stop means stop: no evaluation pass after it
    assert job.done_steps < 500 * run.steps_per_epoch
    path = save_run(run, tmp_path, "stopped-model", dataset="digits")
    ckpt = load_checkpoint(path)
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(ckpt.model.embed(x), run.model.embed(x))
    with pytest.raises(CheckpointError, match="already exists"):
        save_run(run, tmp_path, "stopped-model", dataset="digits")
    with pytest.raises(CheckpointError, match="only hold"):
        save_run(run, tmp_path, "../escape", dataset="digits")


def test_diverging_run_ends_as_diverged_with_a_message(manager):
    job = manager.start("carol", spec(epochs=3, lr=10.0))
    assert job.wait(60)
    assert job.status == "diverged"
    assert "learning rate" in job.message and "nan" in job.message.lower()
    assert job.runs[0].status == "diverged" and not job.runs[0].usable


def test_unknown_dataset_fails_with_a_message(manager):
    s = spec()
    s.train.dataset = "no-such-data"
    job = manager.start("dave", s)
    assert job.wait(30)
    assert job.status == "failed" and "unknown" in job.message


def test_cap_on_running_jobs_gives_busy():
    m = JobManager(max_running=1)
    a = m.start("a", spec(epochs=500))
    try:
        with pytest.raises(ServerBusy, match="busy"):
            m.start("b", spec())
    finally:
        a.stop()
        a.wait(30)
    b = m.start("b", spec(epochs=1))   # a free slot again
    assert b.wait(30) and b.status == "finished"


def test_one_job_per_owner(manager):
    a = manager.start("erin", spec(epochs=500))
    with pytest.raises(JobError, match="already have"):
        manager.start("erin", spec())
    a.stop()
    a.wait(30)
    b = manager.start("erin", spec(epochs=1))   # a finished job is replaced
    assert b is not a and manager.get("erin") is b
    b.wait(30)


def test_ae_and_vae_with_the_same_seed(manager):
    both = manager.start("frank", spec(epochs=2, kinds=("ae", "vae")))
    assert both.wait(60) and both.status == "finished"
    assert [r.kind for r in both.runs] == ["ae", "vae"]
    assert all(len(r.history) == 2 for r in both.runs)
    assert "test_kl" in both.runs[1].history[-1] and both.runs[0].history[-1]["train_kl"] == 0
    # The VAE trained second learns exactly what a VAE trained alone with that seed learns.
    alone = manager.start("frank-2", spec(epochs=2, kinds=("vae",)))
    assert alone.wait(60)
    assert alone.runs[0].history[-1]["train_loss"] == pytest.approx(both.runs[1].history[-1]["train_loss"], rel=1e-5)


def test_sweep_saves_each_model_and_refuses_taken_names(manager, tmp_path):
    s = spec(epochs=1, kinds=("ae", "vae"), betas=(0.5, 4), save_dir=str(tmp_path), save_prefix="sw")
    job = manager.start("gina", s)
    assert job.wait(60) and job.status == "finished"
    assert [r.label for r in job.runs] == ["AE", "VAE β=0.5", "VAE β=4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sw-ae.safetensors", "sw-vae-b0.5.safetensors", "sw-vae-b4.safetensors"]
    assert load_checkpoint(tmp_path / "sw-vae-b4.safetensors").train_config.beta == 4
    with pytest.raises(CheckpointError, match="already exists"):
        manager.start("gina", s)


def test_abandoned_jobs_are_stopped_and_finished_ones_released():
    m = JobManager(max_running=2, keep_s=60, abandon_s=10)
    job = m.start("henry", spec(epochs=500))
    wait_for_steps(job, 2)
    m.cleanup(now=time.time() + 11)      # nobody polled it for 11 s
    assert job.wait(30) and job.status == "stopped"
    assert m.get("henry") is job          # still there to be saved...
    m.cleanup(now=time.time() + 61)
    assert m.get("henry") is None         # ...until nobody looked at it for keep_s


def test_a_sweep_from_the_page_equals_the_command_line_sweep(manager, tmp_path):
    """The Train page's sweep (a job with betas) and `python -m vae_core sweep` (vae_core.sweep)
    train the same models from the same seed: same names, same weights, same losses."""
    from vae_core.sweep import sweep
    s = spec(epochs=2, kinds=("ae", "vae"), betas=(1.0, 4.0), save_dir=str(tmp_path / "page"), save_prefix="dg")
    job = manager.start("sweeper", s)
    assert job.wait(120) and job.status == "finished", job.message
    cli_paths = sweep(s.model, s.train, [1.0, 4.0], tmp_path / "cli", "dg", half=False)
    page_paths = sorted((tmp_path / "page").glob("*.safetensors"))
    assert [p.name for p in page_paths] == sorted(p.name for p in cli_paths) == \
        ["dg-ae.safetensors", "dg-vae-b1.safetensors", "dg-vae-b4.safetensors"]
    for p in cli_paths:
        a, b = load_checkpoint(p), load_checkpoint(tmp_path / "page" / p.name)
        assert a.train_config.beta == b.train_config.beta
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa), p.name
        assert [r["train_loss"] for r in a.history] == pytest.approx([r["train_loss"] for r in b.history], rel=1e-6)
