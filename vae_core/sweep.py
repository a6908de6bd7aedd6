"""Train an AE and VAEs at several beta values with one shared config and seed."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import torch

from .checkpoints import path_in, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import load_dataset
from .errors import CheckpointError, TrainingDiverged
from .models import build_model
from .train import fit


def run_name(prefix: str, kind: str, beta: float) -> str:
    return f"{prefix}-ae" if kind == "ae" else f"{prefix}-vae-b{beta:g}"


def sweep(model_cfg: ModelConfig, train_cfg: TrainConfig, betas, out_dir, prefix: str,
          include_ae: bool = True, half: bool = True,
          on_model: Optional[Callable[[str, int, int], None]] = None,
          callback=None, should_stop=None, evaluate: Optional[Callable] = None,
          overwrite: bool = False,
          on_diverged: Optional[Callable[[str, TrainingDiverged], None]] = None) -> list[Path]:
    """Train the AE (optional) and one VAE per beta; save each as out_dir/<prefix>-....safetensors.

    on_model(name, i, n) is called before each model; `callback` and `should_stop` go to fit;
    evaluate(model, train_cfg) -> dict, when given, fills each checkpoint's metrics.
    Existing files are refused before anything trains unless `overwrite`. A model that diverges
    is not saved; with on_diverged(name, error) the sweep goes on to the next beta, without it
    the error is raised.
    """
    runs = ([("ae", 0.0)] if include_ae else []) + [("vae", float(b)) for b in betas]
    names = [run_name(prefix, kind, beta) for kind, beta in runs]
    if not overwrite:
        taken = [n for n in names if path_in(out_dir, n).exists()]
        if taken:
            raise CheckpointError(f"{', '.join(taken)} already exist in {out_dir}: choose another prefix, "
                                  "or pass --overwrite to replace them")
    train = load_dataset(train_cfg.dataset, "train")
    test = load_dataset(train_cfg.dataset, "test")
    paths = []
    for i, ((kind, beta), name) in enumerate(zip(runs, names)):
        if on_model:
            on_model(name, i, len(runs))
        mcfg = dataclasses.replace(model_cfg, kind=kind,
                                   image_shape=train.image_shape)
        tcfg = dataclasses.replace(train_cfg, beta=beta if kind == "vae" else 0.0)
        torch.manual_seed(tcfg.seed)   # same seed, same initial weights: runs differ only in beta
        model = build_model(mcfg)
        try:
            result = fit(model, train, test, tcfg, callback=callback, should_stop=should_stop)
        except TrainingDiverged as e:
            if on_diverged is None:
                raise
            on_diverged(name, e)
            continue
        metrics = evaluate(model, tcfg) if evaluate else {}
        paths.append(save_checkpoint(path_in(out_dir, name), model, tcfg, dataset=train_cfg.dataset,
                                     history=result.history, metrics=metrics, half=half,
                                     overwrite=overwrite))
        if result.stopped:
            break
    return paths
