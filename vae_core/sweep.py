"""Train the AE and VAEs at several β values with one shared config and seed: one run group.

Each model goes through the one run pipeline (vae_core.runs.execute). `sweep` trains them one
after another in this process; `sweep_on_ray` trains them in parallel as Ray tasks, on every
worker of a local Ray or of a cluster, with one progress bar per model.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Callable, Optional

from .checkpoints import path_in, save_bytes
from .config import ModelConfig, TrainConfig
from .errors import CheckpointError, TrainingDiverged
from .runs import RunResult, RunSpec, execute, group_specs, load_data


def run_name(prefix: str, kind: str, beta: float) -> str:
    return f"{prefix}-ae" if kind == "ae" else f"{prefix}-vae-b{beta:g}"


def sweep_runs(model_cfg: ModelConfig, train_cfg: TrainConfig, betas, prefix: str, include_ae: bool = True,
               group: Optional[str] = None, owner: str = "cli", iw_samples: int = 0) -> list[tuple[str, RunSpec]]:
    """(file name, RunSpec) for the AE (optional) and one VAE per β, all of one run group."""
    pairs = ([("ae", 0.0)] if include_ae else []) + [("vae", float(b)) for b in betas]
    specs = group_specs(model_cfg, train_cfg, pairs, group or "sweep-" + uuid.uuid4().hex[:12], owner, iw_samples)
    return [(run_name(prefix, kind, beta), spec) for (kind, beta), spec in zip(pairs, specs)]


def check_free(out_dir, names: list, overwrite: bool) -> None:
    if overwrite:
        return
    taken = [n for n in names if path_in(out_dir, n).exists()]
    if taken:
        raise CheckpointError(f"{', '.join(taken)} already exist in {out_dir}: choose another prefix, "
                              "or pass --overwrite to replace them")


def _save(out_dir, name: str, result: RunResult, half: bool, overwrite: bool) -> Path:
    return save_bytes(path_in(out_dir, name), result.to_bytes(half=half), overwrite=overwrite)


def sweep(model_cfg: ModelConfig, train_cfg: TrainConfig, betas, out_dir, prefix: str,
          include_ae: bool = True, half: bool = True,
          on_model: Optional[Callable[[str, int, int], None]] = None,
          callback=None, should_stop=None, overwrite: bool = False, iw_samples: int = 0,
          on_diverged: Optional[Callable[[str, TrainingDiverged], None]] = None) -> list[Path]:
    """Train the runs one after another in this process; save each as out_dir/<name>.safetensors.

    on_model(name, i, n) is called before each model; `callback` and `should_stop` go to fit.
    Existing files are refused before anything trains unless `overwrite`. A model that diverges
    is not saved; with on_diverged(name, error) the sweep goes on to the next β, without it the
    error is raised. A stop request saves the model in training and ends the sweep."""
    runs = sweep_runs(model_cfg, train_cfg, betas, prefix, include_ae, iw_samples=iw_samples)
    check_free(out_dir, [n for n, _ in runs], overwrite)
    data = load_data(train_cfg.dataset)
    paths = []
    for i, (name, spec) in enumerate(runs):
        if on_model:
            on_model(name, i, len(runs))
        result = execute(spec, data=data, callback=callback, should_stop=should_stop)
        if result.status == "diverged":
            error = TrainingDiverged(result.message)
            if on_diverged is None:
                raise error
            on_diverged(name, error)
            continue
        if result.usable:
            paths.append(_save(out_dir, name, result, half, overwrite))
        if result.status == "stopped":
            break
    return paths


def sweep_on_ray(model_cfg: ModelConfig, train_cfg: TrainConfig, betas, out_dir, prefix: str,
                 include_ae: bool = True, half: bool = True, overwrite: bool = False, iw_samples: int = 0,
                 address: Optional[str] = None, quiet: bool = False, stop_asked=lambda: False,
                 on_diverged: Optional[Callable[[str, str], None]] = None) -> tuple[list[Path], list[str]]:
    """Train every run at once as Ray tasks (one CPU each; Ray queues those beyond the workers)
    and save each as it finishes. Returns (saved paths, names that diverged or failed).

    stop_asked() True (Ctrl-C) asks every run to stop after its batch; the models are saved."""
    from tqdm import tqdm

    from . import cluster
    runs = sweep_runs(model_cfg, train_cfg, betas, prefix, include_ae, iw_samples=iw_samples)
    check_free(out_dir, [n for n, _ in runs], overwrite)
    ray = cluster.connect_cli(address)
    mailbox = ray.remote(num_cpus=0)(cluster.Mailbox).remote()
    task = cluster.remote_train()
    refs = {task.remote(spec, mailbox, (i,)): i for i, (_, spec) in enumerate(runs)}
    bars = [tqdm(total=spec.train.epochs, desc=f"{name}", unit="epoch", position=i, leave=True, file=sys.stderr,
                 disable=quiet, dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
            for i, (name, spec) in enumerate(runs)]
    paths, failed, stopping, unstarted = [], [], False, set()
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            latest = ray.get(mailbox.snapshot.remote())
            if stop_asked() and not stopping:
                # Running models stop after their batch and are saved; those not started never start.
                stopping = True
                ray.get(mailbox.stop_all.remote())
                for ref, i in refs.items():
                    if (i,) not in latest:
                        unstarted.add(ref)
                        ray.cancel(ref)
            for i, bar in enumerate(bars):
                msg = latest.get((i,))
                if msg and msg.get("steps_per_epoch"):
                    done = msg["epoch"] + msg["step"] / msg["steps_per_epoch"]
                    bar.n = round(min(done, bar.total), 2)
                    bar.set_postfix_str(f"loss {msg['loss']:.2f}" if msg.get("loss") is not None else "", refresh=False)
                    bar.refresh()
            for ref in ready:
                i = refs.pop(ref)
                name = runs[i][0]
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as e:
                    if ref in unstarted:
                        bars[i].set_postfix_str("not started")
                        bars[i].refresh()
                        continue
                    failed.append(name)
                    if on_diverged:
                        on_diverged(name, f"failed on its worker ({type(e).__name__}): {str(e).splitlines()[0][:200]}")
                    continue
                if out["status"] == "diverged":
                    failed.append(name)
                    if on_diverged:
                        on_diverged(name, out["message"])
                    continue
                if out["usable"]:
                    try:
                        paths.append(save_bytes(path_in(out_dir, name), out["checkpoint"] if not half else
                                                _half(out["checkpoint"]), overwrite=overwrite))
                    except CheckpointError as e:      # one refused save never costs the other models
                        failed.append(name)
                        if on_diverged:
                            on_diverged(name, f"not saved: {e}")
                bars[i].n = bars[i].total if out["status"] == "finished" else bars[i].n
                bars[i].set_postfix_str(out["status"])
                bars[i].refresh()
    finally:
        for bar in bars:
            bar.close()
    return paths, failed


def _half(data: bytes) -> bytes:
    """A checkpoint's bytes with its weights in float16 (half the file)."""
    from .checkpoints import from_bytes, to_bytes
    ck = from_bytes(data, local_file=True)
    return to_bytes(ck.model, ck.train_config, dataset=ck.dataset, history=ck.history, metrics=ck.metrics,
                    half=True, run=ck.run)
