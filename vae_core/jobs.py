"""Training jobs that run in background threads, for the app (no Streamlit here).

A job trains one or more models (the AE, a VAE, both with one seed, or a sweep over beta) with
`train.fit` in a daemon thread, and keeps what a live page needs to draw: the per-epoch history,
a smoothed per-step loss, the current epoch and step, a time-left estimate, reconstructions of
fixed test images refreshed as it learns and, for d = 2, the test codes after every epoch.

Rules a server needs:
- One job per owner (an owner is a browser session's token); starting a second one while the
  first runs raises JobError. A finished job is replaced by the owner's next one.
- At most `max_running` jobs train at once per process (default 2, env VAE_MAX_JOBS); past it
  `start` raises ServerBusy, whose message says so.
- Finished jobs keep their models in memory until the owner saves them; a job nobody has looked
  at for `keep_s` seconds is dropped, and a running job nobody has polled for `abandon_s`
  seconds (default 1800, env VAE_ABANDON_S) is stopped first, so closed tabs do not leak models
  or CPU. The check runs whenever any session polls or starts a job.

Threads: `torch.set_num_threads` is per OS thread in PyTorch's OpenMP backend, but the last value
set also becomes the default of threads created afterwards. A training thread sets it to
`train_threads` (default 1, env VAE_TRAIN_THREADS): on a 2-core server this leaves one core to
the other sessions' slider reruns, whose small decodes gain little from a second thread anyway.
The training thread also lowers its own scheduling priority (nice + 10, Linux) so that, when the
cores are contended, the scheduler serves interactive reruns first.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .checkpoints import path_in, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import ImageData, load_dataset
from .errors import CheckpointError, TrainingDiverged, VaeCoreError
from .models import build_model
from .sweep import run_name
from .train import Progress, fit

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "finished", "stopped", "diverged", "failed")
DONE = ("finished", "stopped", "diverged", "failed")


class JobError(VaeCoreError):
    """A job cannot be started or found (e.g. the owner already has one running)."""


class ServerBusy(JobError):
    """Too many jobs train at once on this server."""


@dataclass
class JobSpec:
    """What to train. `model.kind` is ignored: `runs()` lists the (kind, beta) pairs.

    kinds ("ae", "vae" or both) with train.beta give one or two models trained with the same
    seed; betas, when given, make a sweep: the AE (if "ae" in kinds) and one VAE per beta.
    save_prefix with save_dir saves each model as it finishes (sweeps), as
    <prefix>-ae / <prefix>-vae-b<beta> (the names vae_core.sweep uses).
    """
    model: ModelConfig
    train: TrainConfig
    kinds: tuple = ("vae",)
    betas: tuple = ()
    n_fixed: int = 10           # test images whose reconstructions are shown while training
    n_codes: int = 2000         # test images encoded after each epoch when d = 2
    snapshot_every_s: float = 0.5   # how often reconstructions are refreshed within an epoch
    evaluate: bool = True       # compute vae_core.metrics.evaluate on the test set after each run
    eval_images: int = 2000     # ...on this many test images
    iw_samples: int = 100       # ...with this many importance samples for log p(x)
    save_dir: Optional[str] = None
    save_prefix: Optional[str] = None

    def runs(self) -> list[tuple[str, float]]:
        kinds = tuple(self.kinds)
        if not kinds or any(k not in ("ae", "vae") for k in kinds):
            raise JobError(f"model kinds {kinds!r} are invalid: choose ae, vae or both")
        if self.betas:
            betas = [float(b) for b in self.betas]
            if any(not math.isfinite(b) or b < 0 for b in betas):
                raise JobError(f"beta values {self.betas!r} are invalid: use numbers of at least 0")
            return ([("ae", 0.0)] if "ae" in kinds else []) + [("vae", b) for b in betas]
        return [(k, 0.0 if k == "ae" else float(self.train.beta)) for k in ("ae", "vae") if k in kinds]


def run_label(kind: str, beta: float) -> str:
    return "AE" if kind == "ae" else f"VAE β={beta:g}"


@dataclass
class Run:
    """One model of a job and what it has learned so far."""
    kind: str
    beta: float
    label: str
    status: str = "queued"               # queued, running, evaluating, then one of DONE
    message: str = ""
    epoch: int = 0                       # epochs finished
    step: int = 0                        # batches done in the current epoch
    steps_per_epoch: int = 0
    history: list = field(default_factory=list)     # one record per epoch (train.fit's)
    steps: list = field(default_factory=list)       # (global step, smoothed loss, beta, smoothed recon, smoothed KL)
    recon: Optional[np.ndarray] = None   # [n_fixed, H, W] latest reconstructions (channel 0)
    codes: list = field(default_factory=list)       # per epoch: [n_codes, 2] test codes (d = 2)
    metrics: dict = field(default_factory=dict)
    model: Optional[torch.nn.Module] = None         # the trained model, once the run ended
    train_config: Optional[TrainConfig] = None
    saved_path: Optional[str] = None
    save_error: str = ""
    seconds: float = 0.0

    @property
    def usable(self) -> bool:
        """A model worth saving: at least one finished epoch (a stop mid-epoch keeps its weights)."""
        return self.model is not None and (bool(self.history) or self.status == "stopped")


@dataclass
class Job:
    id: str
    owner: str
    spec: JobSpec
    runs: list
    status: str = "queued"
    message: str = ""
    created: float = field(default_factory=time.time)
    started: Optional[float] = None
    ended: Optional[float] = None
    last_seen: float = field(default_factory=time.time)
    total_steps: int = 0
    done_steps: int = 0
    current: int = 0                      # index of the run in progress
    fixed_images: Optional[np.ndarray] = None   # [n_fixed, H, W] originals
    fixed_labels: Optional[np.ndarray] = None
    code_labels: Optional[np.ndarray] = None    # labels of the encoded test images (d = 2)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: Optional[threading.Thread] = field(default=None, repr=False)

    # ------------------------------------------------------------ reading
    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_steps / self.total_steps) if self.total_steps else 0.0

    def seconds_left(self) -> Optional[float]:
        """Time left, from the pace so far (elapsed / steps done x steps left); None before a step."""
        if self.done or not self.started or not self.done_steps:
            return None if not self.done else 0.0
        elapsed = time.time() - self.started
        return elapsed / self.done_steps * max(0, self.total_steps - self.done_steps)

    def view(self) -> "Job":
        """A consistent copy for drawing while the thread keeps training (models not copied)."""
        with self._lock:
            runs = [dataclasses.replace(r, history=list(r.history), steps=list(r.steps),
                                        codes=list(r.codes), metrics=dict(r.metrics)) for r in self.runs]
            return dataclasses.replace(self, runs=runs, _stop=self._stop, _lock=threading.Lock(),
                                       _thread=None)

    def stop(self) -> None:
        """Ask training to end after the current batch; the models trained so far are kept."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the thread ends (tests, scripts); True when it has."""
        if self._thread is None:
            return self.done
        self._thread.join(timeout)
        return not self._thread.is_alive()


_DATASET_LOCK = threading.Lock()


def _dataset(name: str) -> tuple[ImageData, ImageData]:
    # Loading MNIST from its .gz files takes a second or two: keep the last few in memory, and let
    # jobs that start together wait for one load instead of each decompressing the files.
    with _DATASET_LOCK:
        return _load_pair(name)


@functools.lru_cache(maxsize=4)
def _load_pair(name: str) -> tuple[ImageData, ImageData]:
    return load_dataset(name, "train"), load_dataset(name, "test")


def fixed_indices(data: ImageData, n: int) -> np.ndarray:
    """The first test image of each class (then the next ones) so every digit is shown."""
    n = min(n, len(data))
    if data.y is None:
        return np.arange(n)
    y = data.y.numpy()
    first = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)][:n]
    rest = [i for i in range(len(y)) if i not in set(first)][:n - len(first)]
    return np.array(sorted(first) + rest)


_SEED_LOCK = threading.Lock()


def _lower_priority(step: int) -> None:
    """Raise the calling thread's nice value by `step` (Linux: a thread id works as a pid here),
    so the scheduler serves the sessions' reruns before a training thread. Best effort."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except (AttributeError, OSError):
        pass


class JobManager:
    """The registry of jobs of one server process, keyed by owner token."""

    def __init__(self, max_running: int = 2, train_threads: int = 1,
                 keep_s: float = 3600.0, abandon_s: float = 1800.0, max_kept: int = 32, nice: int = 10):
        self.nice = nice
        self.max_running = max_running
        self.train_threads = train_threads
        self.keep_s = keep_s
        self.abandon_s = abandon_s
        self.max_kept = max_kept
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ registry
    def get(self, owner: str, touch: bool = True) -> Optional[Job]:
        """The owner's job (running or finished), or None. Polling it keeps it alive."""
        self.cleanup()
        with self._lock:
            job = self._jobs.get(owner)
        if job is not None and touch:
            job.last_seen = time.time()
        return job

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if not j.done]

    def release(self, owner: str) -> None:
        """Forget the owner's job (stopping it first if it still trains)."""
        with self._lock:
            job = self._jobs.pop(owner, None)
        if job is not None and not job.done:
            job.stop()

    def cleanup(self, now: Optional[float] = None) -> None:
        """Stop jobs nobody polls any more, and drop finished jobs nobody has looked at."""
        now = time.time() if now is None else now
        with self._lock:
            for owner, job in list(self._jobs.items()):
                idle = now - job.last_seen
                if not job.done and idle > self.abandon_s:
                    job.stop()
                elif job.done and idle > self.keep_s:
                    del self._jobs[owner]
            done = sorted((j for j in self._jobs.values() if j.done), key=lambda j: j.last_seen)
            for job in done[:max(0, len(done) - self.max_kept)]:
                del self._jobs[job.owner]

    def start(self, owner: str, spec: JobSpec) -> Job:
        """Check the spec, then train it in a background thread. Raises JobError, ServerBusy,
        ConfigError or CheckpointError (names refused or taken) before any thread starts."""
        if not owner:
            raise JobError("no owner token: the page must pass its session's token")
        runs = spec.runs()
        if spec.save_prefix is not None:
            if not spec.save_dir:
                raise JobError("save_prefix needs save_dir: the folder to save the models into")
            for kind, beta in runs:
                p = path_in(spec.save_dir, run_name(spec.save_prefix, kind, beta))
                if p.exists():
                    raise CheckpointError(f"{p.name} already exists in {spec.save_dir}: choose another name prefix")
        self.cleanup()
        with self._lock:
            old = self._jobs.get(owner)
            if old is not None and not old.done:
                raise JobError("you already have a training job running: stop it or wait for it to finish")
            n_running = sum(not j.done for j in self._jobs.values())
            if n_running >= self.max_running:
                raise ServerBusy(f"the server is busy: {n_running} training jobs are running, the limit is "
                                 f"{self.max_running}. Try again in a minute, or explore the pretrained models meanwhile.")
            job = Job(uuid.uuid4().hex[:12], owner, spec,
                      [Run(k, b, run_label(k, b)) for k, b in runs])
            self._jobs[owner] = job
        job._thread = threading.Thread(target=self._work, args=(job,), name=f"train-{job.id}", daemon=True)
        job._thread.start()
        return job

    # ------------------------------------------------------------ the worker
    def _work(self, job: Job) -> None:
        if self.train_threads:
            torch.set_num_threads(self.train_threads)
        if self.nice:
            _lower_priority(self.nice)
        try:
            train, test = _dataset(job.spec.train.dataset)
            self._prepare(job, train, test)
            job.started = time.time()
            job.status = "running"
            for i, run in enumerate(job.runs):
                if job.stop_requested:
                    run.status, run.message = "stopped", "not started: the job was stopped"
                    continue
                job.current = i
                self._train_run(job, run, train, test)
            statuses = [r.status for r in job.runs]
            if "diverged" in statuses:
                job.status = "diverged"
                job.message = " ".join(f"{r.label}: {r.message}" for r in job.runs if r.status == "diverged")
            elif job.stop_requested:
                job.status, job.message = "stopped", "stopped on request: the models trained so far are kept"
            else:
                job.status, job.message = "finished", ""
        except VaeCoreError as e:
            job.status, job.message = "failed", str(e)
        except Exception as e:   # a bug must not kill the server: report it on the page and in the log
            log.exception("training job %s failed", job.id)
            job.status, job.message = "failed", f"training failed unexpectedly ({type(e).__name__}: {e})"
        finally:
            for run in job.runs:
                if run.status in ("queued", "running", "evaluating"):
                    run.status = job.status if job.status in DONE else "failed"
            job.ended = time.time()

    def _prepare(self, job: Job, train: ImageData, test: ImageData) -> None:
        spec = job.spec
        n = len(train) if not spec.train.max_train else min(spec.train.max_train, len(train))
        steps = math.ceil(n / spec.train.batch_size)
        for run in job.runs:
            run.steps_per_epoch = steps
        job.total_steps = steps * spec.train.epochs * len(job.runs)
        idx = fixed_indices(test, spec.n_fixed)
        job.fixed_images = test.x[idx, 0].numpy().copy()
        job.fixed_labels = None if test.y is None else test.y[idx].numpy().copy()
        if spec.model.latent_dim == 2 and test.y is not None:
            job.code_labels = test.y[:spec.n_codes].numpy().copy()

    @torch.no_grad()
    def _snapshot(self, job: Job, run: Run, model, test: ImageData, codes: bool) -> None:
        # Uses the posterior mean and no random numbers, so it does not change the training run.
        x = torch.from_numpy(job.fixed_images).unsqueeze(1).to(next(model.parameters()).device)
        recon = model.decode_image(model.embed(x))[:, 0].cpu().numpy()
        z = None
        if codes and model.cfg.latent_dim == 2:
            xs = test.x[:job.spec.n_codes].to(x.device)
            z = torch.cat([model.embed(xs[i:i + 1000]) for i in range(0, len(xs), 1000)]).cpu().numpy()
        with job._lock:
            run.recon = recon
            if z is not None:
                run.codes.append(z)

    def _train_run(self, job: Job, run: Run, train: ImageData, test: ImageData) -> None:
        spec = job.spec
        mcfg = dataclasses.replace(spec.model, kind=run.kind, image_shape=train.image_shape)
        tcfg = dataclasses.replace(spec.train, beta=run.beta if run.kind == "vae" else 0.0)
        run.train_config = tcfg
        with _SEED_LOCK:
            # The same seed gives the same initial weights (the AE and the VAE of one job share it).
            torch.manual_seed(tcfg.seed)
            model = build_model(mcfg)
        run.status = "running"
        self._snapshot(job, run, model, test, codes=True)
        base_steps = job.done_steps
        ema = {"v": None, "t": time.perf_counter()}

        def callback(p: Progress):
            if p.kind == "batch":
                # Exponential moving averages of loss, reconstruction and KL, started at the first
                # batch's values (so the first steps are not pulled toward 0).
                now_values = (p.loss, p.recon, p.kl)
                ema["v"] = now_values if ema["v"] is None else tuple(
                    0.95 * old + 0.05 * new for old, new in zip(ema["v"], now_values))
                global_step = (p.epoch - 1) * p.steps_per_epoch + p.step
                loss_s, recon_s, kl_s = ema["v"]
                with job._lock:
                    run.step = p.step
                    run.steps.append((global_step, loss_s, p.beta, recon_s, kl_s))
                    job.done_steps = base_steps + global_step
                now = time.perf_counter()
                if now - ema["t"] >= spec.snapshot_every_s:
                    ema["t"] = now
                    self._snapshot(job, run, model, test, codes=False)
            else:
                with job._lock:
                    run.history.append(dict(p.record))
                    run.epoch = p.epoch
                self._snapshot(job, run, model, test, codes=True)

        t0 = time.perf_counter()
        try:
            result = fit(model, train, test, tcfg, callback=callback, should_stop=lambda: job.stop_requested)
            run.status = "stopped" if result.stopped else "finished"
        except TrainingDiverged as e:
            run.status, run.message = "diverged", str(e)
        run.seconds = time.perf_counter() - t0
        model.eval()
        run.model = model
        if run.status != "stopped":   # a diverged run's skipped steps count as done for the bar
            job.done_steps = base_steps + spec.train.epochs * run.steps_per_epoch
        self._snapshot(job, run, model, test, codes=False)
        # Stop means stop: a stopped run skips its metrics (seconds of importance sampling), and
        # `python -m vae_core evaluate` can still score it once it is saved.
        if spec.evaluate and run.usable and run.status not in ("diverged", "stopped"):
            status, run.status = run.status, "evaluating"
            try:
                from .metrics import evaluate
                run.metrics = evaluate(model, test.subset(spec.eval_images), train=train,
                                       iw_samples=spec.iw_samples, beta=tcfg.beta,
                                       seed=tcfg.seed, binarize=tcfg.binarize, knn_max_train=5000)
                run.metrics["eval_images"] = min(spec.eval_images, len(test))
            except Exception as e:   # metrics are a bonus: a failure must not lose the model
                log.exception("metrics failed for job %s", job.id)
                run.metrics = {}
                run.message = f"metrics could not be computed ({e})"
            run.status = status
        if spec.save_prefix is not None and run.usable:
            try:
                path = path_in(spec.save_dir, run_name(spec.save_prefix, run.kind, run.beta))
                save_checkpoint(path, model, tcfg, dataset=tcfg.dataset, history=run.history,
                                metrics=run.metrics, overwrite=False)
                run.saved_path = str(path)
            except CheckpointError as e:
                run.save_error = str(e)


_DEFAULT: Optional[JobManager] = None
_DEFAULT_LOCK = threading.Lock()


def default_manager() -> JobManager:
    """The process-wide manager the app uses (limits from VAE_MAX_JOBS, VAE_TRAIN_THREADS and
    VAE_ABANDON_S, read once, when the first page asks for it)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = JobManager(max_running=int(os.environ.get("VAE_MAX_JOBS", "2")),
                                  train_threads=int(os.environ.get("VAE_TRAIN_THREADS", "1")),
                                  abandon_s=float(os.environ.get("VAE_ABANDON_S", "1800")))
        return _DEFAULT


def save_run(run: Run, folder, name: str, dataset: str, overwrite: bool = False) -> Path:
    """Save a finished run's model as folder/<name>.safetensors (name checked by path_in).

    Raises CheckpointError for a refused or taken name, or when the disk refuses the file.
    """
    if not run.usable:
        raise CheckpointError(f"{run.label} has no trained weights to save (status {run.status})")
    path = path_in(folder, name)
    saved = save_checkpoint(path, run.model, run.train_config, dataset=dataset, history=run.history,
                            metrics=run.metrics, overwrite=overwrite)
    run.saved_path = str(saved)
    return saved
