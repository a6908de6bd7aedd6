"""Training in the app vs on the command line, and how smooth exploring stays while a job trains.

(a) The same config trained by vae_core.runs.execute in this process (the command line's path) and
    by vae_core.jobs (the app's path: a Ray task on a local head with one worker, reports about once
    a second, test codes every epoch), alternated so load drifts hit both. Goal: the job within
    10 % per epoch.
(b) Slider-like work of an explorer page, timed alone and while a job trains on the Ray worker (as
    on the server): decoding a batch of codes with a d = 20 model and turning it into a PNG mosaic,
    and full AppTest reruns of app_pages/3_Interpolation.py after moving its slider. Goal: p95
    under 100 ms for the decode path.

The bench starts its own local Ray head in a temporary VAE_RAY_DIR and stops it at the end.

Usage: VAE_DATA_DIR=../shared/data python bench/bench_training_app.py [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vae_core import cluster, jobs  # noqa: E402
from vae_core.config import ModelConfig, TrainConfig  # noqa: E402
from vae_core.jobs import JobSpec  # noqa: E402
from vae_core.models import build_model  # noqa: E402
from vae_core.runs import RunSpec, execute, load_data  # noqa: E402


def run_job(spec: JobSpec, until=None):
    """Submit a job for a fresh owner and wait until it is done (or until(view)); returns (owner, view)."""
    import uuid
    owner = uuid.uuid4().hex
    jobs.submit(owner, spec)
    until = until or (lambda v: v.done)
    while True:
        v = jobs.view(owner)
        if until(v):
            return owner, v
        time.sleep(0.1)


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q))


def bench_epochs(quick: bool, threads: int) -> None:
    mcfg = ModelConfig(latent_dim=2, hidden=(512,))
    tcfg = TrainConfig(dataset="mnist", epochs=2 if quick else 3, batch_size=128,
                       max_train=10000 if quick else 20000, device="cpu")
    data = load_data("mnist")
    cli, app = [], []
    rounds = 2 if quick else 3
    run_job(JobSpec(mcfg, dataclasses.replace(tcfg, epochs=1, max_train=1000)))   # the worker imports torch once
    for r in range(rounds):
        res = execute(RunSpec(dataclasses.replace(mcfg, kind="vae"), tcfg, threads=threads), data=data)
        cli.append(res.seconds / len(res.history))
        _, v = run_job(JobSpec(mcfg, tcfg, kinds=("vae",)))
        run = v.runs[0]
        app.append(run.seconds / len(run.history))
        assert run.history[-1]["train_loss"] == res.history[-1]["train_loss"], "same seed, same run"
    c, a = statistics.median(cli), statistics.median(app)
    print(f"(a) per-epoch seconds, {tcfg.max_train} MNIST images, 784-512-2 MLP, batch 128, {threads} thread(s), "
          f"median of {rounds} rounds")
    print(f"    command line     : {c:.3f} s   (rounds: {', '.join(f'{v:.3f}' for v in cli)})")
    print(f"    app job on Ray   : {a:.3f} s   (rounds: {', '.join(f'{v:.3f}' for v in app)})")
    print(f"    job / fit        : {a / c:.3f}  (goal <= 1.10; identical final losses checked)")


def decode_work(model, rng) -> None:
    from explorer import figures
    z = torch.from_numpy(rng.standard_normal((64, model.cfg.latent_dim)).astype(np.float32))
    imgs = model.decode_image(z).numpy()
    figures.png_bytes(figures.tile(imgs, ncols=8), scale=2)


def time_decode(model, n: int) -> list:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        decode_work(model, rng)
        out.append(time.perf_counter() - t)
    return out


def make_shipped(folder: Path) -> None:
    """An untrained mnist-d20 pair with the shipped names: enough for timing the page."""
    from vae_core.checkpoints import save_checkpoint
    for kind, name in (("vae", "mnist-d20-vae-b1"), ("ae", "mnist-d20-ae")):
        torch.manual_seed(0)
        m = build_model(ModelConfig(kind=kind, latent_dim=20, hidden=(512,)))
        save_checkpoint(folder / f"{name}.safetensors", m, TrainConfig(), dataset="mnist")
    data = REPO / "checkpoints" / "data"
    (folder / "data").mkdir(exist_ok=True)
    for f in data.glob("*.npz"):
        (folder / "data" / f.name).symlink_to(f)


def time_apptest(n: int) -> list:
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(REPO / "app_pages" / "3_Interpolation.py"), default_timeout=120).run()
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    out = []
    for i in range(n):
        slider = at.slider(key="interp_t")
        slider.set_value((slider.value + 1) % 11)
        t = time.perf_counter()
        at.run()
        out.append(time.perf_counter() - t)
        if at.exception:
            raise RuntimeError(f"the page failed, its timing is void: {at.exception[0].value}")
    return out


def run_job_wait(owner: str) -> None:
    while not jobs.view(owner).done:
        time.sleep(0.1)


def bench_exploring(quick: bool, threads: int) -> None:
    """Alone and while-training blocks alternate, so changes in the machine's load hit both."""
    import pandas  # noqa: F401  (imported up front: a page's first run must not race another thread's import)
    n, blocks = (30, 2) if quick else (60, 3)
    alone, busy, app_alone, app_busy = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        shipped = Path(tmp)
        make_shipped(shipped)
        os.environ["VAE_CHECKPOINT_DIR"] = str(shipped)
        os.environ["VAE_USER_DIR"] = str(shipped / "user")
        from vae_core.checkpoints import load_checkpoint
        model = load_checkpoint(shipped / "mnist-d20-vae-b1.safetensors").model
        torch.set_num_threads(2)
        time_decode(model, 5)
        time_apptest(2)
        spec = JobSpec(ModelConfig(latent_dim=2, hidden=(512,)),
                       TrainConfig(dataset="mnist", epochs=50, batch_size=128, device="cpu"))
        for b in range(blocks):
            alone += time_decode(model, n)
            app_alone += time_apptest(n // 5)
            owner, _ = run_job(spec, until=lambda v: v.runs[0].step >= 5 or v.runs[0].epoch >= 1)
            try:
                busy += time_decode(model, n)
                app_busy += time_apptest(n // 5)
            finally:
                jobs.stop(owner, cancel=True)
                run_job_wait(owner)
    print(f"(b) slider-like reruns while a job trains (training thread count {threads}; ms; {blocks} alternating blocks)")
    print(f"    decode 64 codes (d=20, 784-512 MLP) + PNG mosaic: alone p50 {pct(alone, 50):.1f} p95 {pct(alone, 95):.1f};"
          f" while training p50 {pct(busy, 50):.1f} p95 {pct(busy, 95):.1f}  (goal p95 < 100)")
    print(f"    AppTest full rerun of app_pages/3_Interpolation.py after a slider move: alone p50 {pct(app_alone, 50):.0f} "
          f"p95 {pct(app_alone, 95):.0f}; while training p50 {pct(app_busy, 50):.0f} p95 {pct(app_busy, 95):.0f}")


def bench_default_config() -> None:
    """(c) The Train page's default settings, end to end through a job (data load and metrics included)."""
    from explorer.training import DEFAULTS, spec_from_values
    t = time.perf_counter()
    _, v = run_job(spec_from_values(DEFAULTS))
    run = v.runs[0]
    print(f"(c) Train page defaults ({DEFAULTS['max_train'] or 'all 60,000'} MNIST images, {DEFAULTS['epochs']} epochs, "
          f"784-{DEFAULTS['hidden']}-{DEFAULTS['latent']}): {time.perf_counter() - t:.1f} s in all, "
          f"{run.seconds:.1f} s training ({run.seconds / max(1, len(run.history)):.2f} s per epoch); "
          f"test loss {run.history[-1]['test_loss']:.1f} nats, k-NN accuracy {run.metrics.get('knn_acc', float('nan')):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and repetitions")
    ap.add_argument("--threads", type=int, default=1, help="training threads (the app's default is 1)")
    ap.add_argument("--default-config", action="store_true", help="also time the Train page's default run")
    ap.add_argument("--only", choices=["a", "b"], help="run only part (a) or (b)")
    args = ap.parse_args()
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    folder = Path(tempfile.mkdtemp(prefix="vrb"))
    os.environ["VAE_RAY_DIR"], os.environ["VAE_RAY_CPUS"] = str(folder), "1"
    os.environ.pop("RAY_ADDRESS", None)
    try:
        if args.only != "b":
            bench_epochs(args.quick, args.threads)
        if args.only != "a":
            bench_exploring(args.quick, args.threads)
        if args.default_config:
            bench_default_config()
    finally:
        cluster.stop_local_head(folder)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes share these cores)")


if __name__ == "__main__":
    main()
