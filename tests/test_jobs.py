"""Training jobs on a real local Ray through the class's queue, on scikit-learn's 8x8 digits."""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from vae_core import cluster, jobs
from vae_core.checkpoints import load_checkpoint, read_info
from vae_core.config import ModelConfig, TrainConfig
from vae_core.errors import CheckpointError

REPO = Path(__file__).resolve().parent.parent


def spec(epochs=2, lr=1e-3, kinds=("vae",), latent=2, **kw):
    return jobs.JobSpec(ModelConfig(latent_dim=latent, hidden=(32,)),
                        TrainConfig(dataset="digits", epochs=epochs, batch_size=64, lr=lr, seed=3),
                        kinds=kinds, **kw)


def owner() -> str:
    return uuid.uuid4().hex


def wait(who, until=lambda v: v.done, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = jobs.view(who)
        if v is not None and until(v):
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out; last view: {v and (v.status, [(r.status, r.epoch) for r in v.runs])}")


def worker_pids() -> set:
    """Ray worker processes currently training a run (their process title names the task)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines() if "ray::_train_task" in line}


def test_short_run_finishes_with_history_live_views_and_its_run_record():
    a = owner()
    jobs.submit(a, spec(epochs=2))
    v = wait(a)
    assert v.status == "finished", v.message
    run = v.runs[0]
    assert [r["epoch"] for r in run.history] == [1, 2]
    assert run.steps and run.steps_per_epoch > 0 and run.recon is not None
    assert v.fixed_images is not None and v.fixed_images.shape[0] == run.recon.shape[0]
    assert run.codes is not None and run.codes.shape[1] == 2 and v.code_labels is not None
    # One evaluation policy: the cheap metrics always, no importance sampling unless asked.
    assert {"loss", "recon", "kl", "active_units", "knn_acc"} <= set(run.metrics)
    assert run.metrics["log_px"] is None
    ck = load_checkpoint(_save(v, 0))
    assert ck.run["group"] == v.id and ck.run["owner"].startswith("student-") and a not in str(ck.run)


def _save(v, i, folder=None, name="saved"):
    import tempfile
    folder = folder or tempfile.mkdtemp()
    return jobs.save_run(v, i, folder, name)


def test_stop_ends_early_and_keeps_the_model(tmp_path):
    a = owner()
    jobs.submit(a, spec(epochs=400))
    wait(a, until=lambda v: v.runs[0].steps_per_epoch and v.runs[0].epoch >= 1)
    jobs.stop(a)
    v = wait(a)
    assert v.status == "stopped" and v.runs[0].status == "stopped" and v.runs[0].usable
    assert 1 <= len(v.runs[0].history) < 400
    path = jobs.save_run(v, 0, tmp_path, "stopped-vae")
    assert load_checkpoint(path).history == v.runs[0].history


def test_diverging_run_ends_as_diverged_with_a_message():
    a = owner()
    jobs.submit(a, spec(epochs=3, lr=1e6, kinds=("ae",)))
    v = wait(a)
    assert v.status == "diverged" and "learning rate" in v.message


def test_unknown_dataset_fails_with_its_own_message():
    a = owner()
    s = spec()
    s.train = TrainConfig(dataset="no-such-set", epochs=1)
    jobs.submit(a, s)
    v = wait(a)
    assert v.status == "failed" and "no-such-set" in v.message and "unexpected" not in v.message


def test_one_job_per_owner_but_never_a_refusal_for_load():
    a = owner()
    jobs.submit(a, spec(epochs=200))
    with pytest.raises(jobs.JobError, match="already have"):
        jobs.submit(a, spec())
    # Four more students while the one worker is busy: all queued, none refused, places in order.
    others = [owner() for _ in range(4)]
    for o in others:
        jobs.submit(o, spec(epochs=1))
    views = [jobs.view(o) for o in others]
    assert all(v.status == "queued" for v in views)
    assert sorted(v.place for v in views) == [v.place for v in views] and views[0].place == 0
    assert all(v.eta_start is not None and v.eta_finish >= v.eta_start for v in views)
    assert views[-1].eta_start >= views[0].eta_start
    jobs.stop(a)
    for o in others:
        assert wait(o).status == "finished"


def test_cancel_while_queued_and_while_running_keeps_nothing():
    a, b = owner(), owner()
    jobs.submit(a, spec(epochs=400))
    wait(a, until=lambda v: v.status == "running")
    jobs.submit(b, spec(epochs=1))
    assert jobs.view(b).status == "queued"
    jobs.stop(b, cancel=True)
    vb = jobs.view(b)
    assert vb.status == "cancelled" and not vb.runs[0].usable
    jobs.stop(a, cancel=True)
    va = wait(a)
    assert va.status == "cancelled" and not va.runs[0].usable
    assert jobs.fetch(va.id, 0) is None


def test_a_killed_worker_fails_its_job_frees_the_slot_and_the_queue_goes_on():
    a, b = owner(), owner()
    jobs.submit(a, spec(epochs=400))
    wait(a, until=lambda v: v.runs[0].steps_per_epoch > 0)
    jobs.submit(b, spec(epochs=1))
    pids = worker_pids()
    assert len(pids) == 1, pids
    os.kill(pids.pop(), signal.SIGKILL)
    va = wait(a)
    assert va.status == "failed" and "worker" in va.message and "nothing was saved" in va.message
    assert not va.runs[0].usable and jobs.fetch(va.id, 0) is None
    assert wait(b).status == "finished"


def test_jobs_survive_the_web_server_process_being_killed():
    """A server process submits a job and dies (kill -9); a new process finds the job by its
    owner token and sees it finish: the queue lives in Ray, not in the server."""
    a = owner()
    code = (f"import sys, time; sys.path.insert(0, {str(REPO)!r})\n"
            "from vae_core import jobs\nfrom tests.test_jobs import spec\n"
            f"jobs.submit({a!r}, spec(epochs=30))\nprint('submitted', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(REPO), stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "submitted"
        proc.kill()
        proc.wait(10)
        v = wait(a)
        assert v.status == "finished" and len(v.runs[0].history) == 30
    finally:
        proc.kill()


def test_a_sweep_saves_each_model_and_refuses_taken_names(tmp_path):
    a = owner()
    jobs.submit(a, spec(epochs=1, kinds=("ae", "vae"), betas=(1.0, 4.0), save_dir=str(tmp_path), save_prefix="dg"))
    v = wait(a, until=lambda v: v.done and all(r.saved_path or r.save_error for r in v.runs))
    assert v.status == "finished"
    names = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert names == ["dg-ae.safetensors", "dg-vae-b1.safetensors", "dg-vae-b4.safetensors"]
    groups = {read_info(tmp_path / n)["run"]["group"] for n in names}
    assert groups == {v.id}
    with pytest.raises(CheckpointError, match="already exists"):
        jobs.submit(owner(), spec(epochs=1, betas=(1.0,), save_dir=str(tmp_path), save_prefix="dg"))


def test_a_sweep_from_the_page_equals_the_command_line_sweep(tmp_path):
    """The Train page's sweep (a job with betas, on Ray) and vae_core.sweep in-process train the
    same models from the same seed: same weights, same losses."""
    from vae_core.sweep import sweep
    a = owner()
    s = spec(epochs=2, kinds=("ae", "vae"), betas=(1.0, 4.0), save_dir=str(tmp_path / "page"), save_prefix="dg")
    jobs.submit(a, s)
    wait(a, until=lambda v: v.done and all(r.saved_path for r in v.runs))
    cli_paths = sweep(s.model, s.train, [1.0, 4.0], tmp_path / "cli", "dg", half=False)
    for p in cli_paths:
        page, cli = load_checkpoint(tmp_path / "page" / p.name), load_checkpoint(p)
        for k, w in cli.model.state_dict().items():
            assert (page.model.state_dict()[k] == w).all(), (p.name, k)
        assert [r["train_loss"] for r in page.history] == [r["train_loss"] for r in cli.history]


def test_a_dead_runtime_is_reported_and_started_again_on_the_next_training():
    jobs.queue()                               # connected (starting the head if this test runs alone)
    cluster.stop_local_head()
    deadline = time.time() + 60
    while cluster.is_connected() and time.time() < deadline:   # the next call to the queue finds out
        try:
            jobs.view(owner())
        except cluster.EngineError as e:
            assert "starts again when you press Train" in str(e)
        time.sleep(0.5)
    assert not cluster.is_connected() and cluster.engine().state == "failed" and cluster.engine().error
    assert jobs.view(owner()) is None          # pages go on: nothing to show, nothing started
    a = owner()
    jobs.submit(a, spec(epochs=1))
    assert wait(a).status == "finished"



@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroup scheduling on this OS")
def test_trainings_give_way_to_the_web_server():
    """The local head runs in a session of its own, and Linux weighs nice values only inside a
    session (autogroup): its trainings run in a session at nice VAE_RAY_NICE (default 10), not
    equal with the server's."""
    ray = cluster.connect()
    jobs.queue()                                           # the local head is up

    def where():
        return os.getsid(0), open("/proc/self/autogroup").read().strip()

    sid, group = ray.get(ray.remote(num_cpus=1)(where).remote(), timeout=60)
    assert sid != os.getsid(0) and group != where()[1]     # the workers' own session and group
    assert cluster.head_nice() == 10 and group.endswith(" nice 10"), group
