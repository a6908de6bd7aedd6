"""Training jobs for the app, run on Ray through the class's fair queue (no Streamlit here).

A job trains one or more models (the AE, a VAE, both with one seed, or a sweep over β): one
`runs.RunSpec` each, one Ray task each, queued by the `trainqueue` actor. This module is the
web server's side: submit a job for an owner, read its view, stop or cancel it, fetch a finished
model's bytes and save them. Nothing here keeps state of its own: the queue lives in Ray, so a
restarted server, or another server joined to the same cluster, finds every job again.

An owner is a browser session's secret token (32 hex digits, from the ?trainer= address); the
queue keys jobs by it, and files and the gallery show only its public id (runmeta.owner_id).
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import cluster, runmeta
from .checkpoints import CheckpointError, check_name, path_in, save_bytes
from .config import ModelConfig, TrainConfig
from .errors import VaeCoreError
from .runs import RunSpec, check_size, estimated_cost, group_specs
from .sweep import run_name
from .trainqueue import DONE, MAX_RUNS_PER_JOB, TrainQueueActor

log = logging.getLogger(__name__)

class JobError(VaeCoreError):
    """A job cannot be started or found (e.g. the owner already has one running)."""


@dataclass
class JobSpec:
    """What to train. `model.kind` is ignored: `runs()` lists the (kind, beta) pairs.

    kinds ("ae", "vae" or both) with train.beta give one or two models trained with the same
    seed; betas, when given, make a sweep: the AE (if "ae" in kinds) and one VAE per beta.
    save_prefix with save_dir saves each model as it finishes (sweeps), as
    <prefix>-ae / <prefix>-vae-b<beta>."""
    model: ModelConfig
    train: TrainConfig
    kinds: tuple = ("vae",)
    betas: tuple = ()
    iw_samples: int = 0         # importance samples for log p(x) in each model's metrics (0: skip)
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

    def run_specs(self, owner_id: str, group: str) -> list[RunSpec]:
        """One RunSpec per model, all of one run group and seed (runs.execute's policy), one torch
        thread each (a worker is one CPU)."""
        return group_specs(self.model, self.train, self.runs(), group, owner_id, self.iw_samples, threads=1)


# ---------------------------------------------------------------- the queue

def queue(start: bool = True):
    """The queue actor's handle, connecting to Ray first (starting a local head when `start`).
    Returns None when not connected and start is False. Raises cluster.EngineError."""
    eng = cluster.engine()
    if cluster.is_connected() and eng.local and not cluster.local_head_running():
        # The local head died (killed, or the machine's memory ran out): say so once, start afresh later.
        eng.lost(cluster.EngineError("the local Ray head is no longer running"))
        eng.remotes.clear()
        raise cluster.EngineError("the training engine stopped (its Ray head is no longer running); it starts "
                                  "again when you press Train. Jobs it held are lost.")
    if not start and not cluster.is_connected():
        # Never start a local head for a page load; joining one that runs, or a cluster, is cheap.
        if not os.environ.get("RAY_ADDRESS") and not cluster.local_head_running():
            return None
    ray = cluster.connect()
    handle = eng.remotes.get("queue")
    if handle is None:
        actor = ray.remote(num_cpus=0, max_restarts=0)(TrainQueueActor)
        handle = actor.options(name=cluster.QUEUE_NAME, lifetime="detached", get_if_exists=True,
                               max_concurrency=1000).remote(
            per_owner=int(os.environ.get("VAE_RUNS_PER_OWNER", "2")),
            keep_s=float(os.environ.get("VAE_KEEP_S", "3600")),
            abandon_s=float(os.environ.get("VAE_ABANDON_S", "1800")))
        eng.remotes["queue"] = handle
    _start_saver()        # finished sweep models are saved by whichever server is connected
    return handle


def _call(method, *args, timeout: float = 15.0, **kwargs):
    """Call a queue method and wait; a dead runtime is reported and forgotten, so the next
    training starts it again."""
    import ray
    try:
        return ray.get(method.remote(*args, **kwargs), timeout=timeout)
    except ray.exceptions.ActorUnavailableError as e:      # a moment's trouble: the actor lives on
        raise cluster.EngineError("the training queue did not answer just now: try again in a moment") from e
    except ray.exceptions.RayActorError as e:              # the queue actor died; the runtime may live
        cluster.engine().remotes.pop("queue", None)
        raise cluster.EngineError(f"the training queue stopped ({type(e).__name__}); it starts again when you "
                                  "press Train. Jobs it held are lost.") from e
    except (ray.exceptions.RaySystemError, ConnectionError) as e:
        cluster.engine().lost(e)
        raise cluster.EngineError(f"the training engine stopped ({type(e).__name__}); it starts again when you "
                                  "press Train. Jobs it held are lost.") from e
    except ray.exceptions.GetTimeoutError as e:
        raise cluster.EngineError(f"the training engine did not answer within {timeout:.0f} s: "
                                  "it is overloaded, try again in a moment") from e


def submit(owner: str, spec: JobSpec) -> str:
    """Queue a job for `owner`; returns its id. Never refused for load: it waits its turn.
    Raises JobError (owner already has a job), ConfigError, CheckpointError (sweep names
    refused or taken) or cluster.EngineError (Ray could not start)."""
    if not owner:
        raise JobError("no owner token: the page must pass its session's token")
    kinds = spec.runs()
    if len(kinds) > MAX_RUNS_PER_JOB:
        raise JobError(f"a job trains at most {MAX_RUNS_PER_JOB} models (the AE and 8 β values)")
    names = None
    if spec.save_prefix is not None:
        if not spec.save_dir:
            raise JobError("save_prefix needs save_dir: the folder to save the models into")
        names = [run_name(check_name(spec.save_prefix), k, b) for k, b in kinds]
        for n in names:
            p = path_in(spec.save_dir, n)
            if p.exists():
                raise CheckpointError(f"{p.name} already exists: choose another name prefix")
    group = ("sweep-" if spec.betas else "job-") + uuid.uuid4().hex[:12]
    specs = spec.run_specs(runmeta.owner_id(owner), group)
    for s in specs:
        check_size(s)          # a model the loader would refuse, or too big to train, never starts
    costs = [estimated_cost(s) for s in specs]
    q = queue()
    out = _call(q.submit, owner, runmeta.owner_id(owner), specs, costs,
                save_dir=None if spec.save_dir is None else str(spec.save_dir), names=names, group=group)
    if "error" in out:
        raise JobError(out["error"])
    _start_saver()
    return out["job"]


def view(owner: str, touch: bool = True) -> Optional["JobView"]:
    """The owner's latest job, or None (also None when no engine runs: nothing to show)."""
    q = queue(start=False)
    if q is None:
        return None
    raw = _call(q.view, owner, touch)
    return None if raw is None else JobView(raw)


def status(owner: str) -> Optional[str]:
    """The status of the owner's latest job (None: none, or no engine runs); keeps it from counting
    as abandoned. Cheap: what a page polls on every run, where view() would carry curves and images."""
    q = queue(start=False)
    return None if q is None else _call(q.status, owner)


def stop(owner: str, cancel: bool = False) -> None:
    """Stop the owner's job after the current batch (models so far kept), or cancel it (nothing kept)."""
    q = queue(start=False)
    if q is not None:
        _call(q.stop, owner, cancel)


def fetch(job_id: str, index: int) -> Optional[bytes]:
    """A finished run's checkpoint bytes (None once the queue has forgotten them)."""
    q = queue(start=False)
    return None if q is None else _call(q.result, job_id, index, timeout=60.0)


def save_run(job: "JobView", index: int, folder, name: str, overwrite: bool = False) -> Path:
    """Save a finished run's model as folder/<name>.safetensors. Raises CheckpointError for a
    refused or taken name, a refusing disk, or a model the queue no longer holds."""
    run = job.runs[index]
    if not run.usable:
        raise CheckpointError(f"{run.label} has no trained weights to save (status {run.status})")
    path = path_in(folder, name)
    data = fetch(job.id, index)
    if data is None:
        raise CheckpointError(f"{run.label} is no longer held by the server (unsaved models are kept an hour): "
                              "train it again")
    saved = save_bytes(path, data, overwrite=overwrite)
    q = queue(start=False)
    if q is not None:
        _call(q.mark_saved, job.id, index, str(saved))
    return saved


def summary() -> Optional[dict]:
    q = queue(start=False)
    return None if q is None else _call(q.summary)


# ---------------------------------------------------------------- saving sweeps as they finish

def save_finished_sweeps() -> int:
    """Save every finished sweep model that is not saved yet (leased, so two servers never both
    save one). Returns how many were saved. Called by the saver thread every few seconds."""
    q = queue(start=False)
    if q is None:
        return 0
    n = 0
    for item in _call(q.claim_unsaved):
        path, error = "", ""
        try:
            data = _call(q.result, item["job"], item["index"], timeout=60.0)
            if data is None:
                continue
            path = str(save_bytes(path_in(item["save_dir"], item["name"]), data, overwrite=False))
            n += 1
        except CheckpointError as e:
            error = str(e)
        _call(q.mark_saved, item["job"], item["index"], path, error)
    return n


def _saver_loop() -> None:
    import ray
    while cluster.is_connected() and ray.is_initialized():   # ends with the connection it served
        try:
            save_finished_sweeps()
        except cluster.EngineError:
            return                 # the engine is gone: the page says so; a new connection starts a new saver
        except Exception as e:     # noqa: BLE001 - keep trying; the queue keeps the models meanwhile
            log.warning("saving finished sweep models failed: %s", e)
        time.sleep(2.0)


def _start_saver() -> None:
    eng = cluster.engine()
    with eng.lock:
        t = eng.remotes.get("saver")
        if t is not None and t.is_alive():
            return
        t = threading.Thread(target=_saver_loop, name="vae-sweep-saver", daemon=True)
        eng.remotes["saver"] = t
    t.start()


# ---------------------------------------------------------------- what a page reads

class RunView:
    """One model of a job as the queue reported it (attribute access on the queue's dict)."""

    def __init__(self, raw: dict):
        self.__dict__.update(raw)

    pass


class JobView:
    """A job as the queue reported it, with the figures the Train page shows."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.__dict__.update({k: v for k, v in raw.items() if k != "runs"})
        self.runs = [RunView(r) for r in raw["runs"]]

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def queued(self) -> bool:
        return self.status == "queued"

    @property
    def current(self) -> int:
        for i, r in enumerate(self.runs):
            if r.status in ("running", "evaluating"):
                return i
        return max((i for i, r in enumerate(self.runs) if r.status in DONE), default=0)

    @property
    def fraction(self) -> float:
        total = 0.0
        for r in self.runs:
            if r.status in DONE:
                total += 1.0
            elif r.steps_per_epoch:
                total += min(1.0, (r.epoch * r.steps_per_epoch + r.step) / (r.epochs * r.steps_per_epoch))
        return total / max(1, len(self.runs))

    def seconds_left(self) -> Optional[float]:
        if self.done:
            return 0.0
        return None if self.eta_finish is None else max(0.0, self.eta_finish - self.now)

    def seconds_to_start(self) -> Optional[float]:
        return None if self.eta_start is None else max(0.0, self.eta_start - self.now)

    @property
    def stop_requested(self) -> bool:
        return bool(self.stop)
