"""The one run pipeline: a run spec goes in, a trained model with its history and metrics comes out.

`python -m vae_core train` calls `execute` in-process; a sweep and the app's training jobs call
it inside Ray tasks (vae_core.cluster). They differ only in how they run it and show progress;
the model, the seed policy and the evaluation policy are the same everywhere:

- the initial weights and every random draw of training come from generators seeded with
  `train.seed` (never the global seed), so the AE and the VAEs of one group start alike;
- a finished run always gets the cheap test metrics (loss, reconstruction, KL, active units,
  KL per dimension, k-NN accuracy of the codes); the importance-weighted log p(x) only when
  `iw_samples` > 0; a stopped or diverged run gets none (stop means stop);
- progress goes to `report(dict)` about once every `report_every_s` seconds and at the end of
  every epoch: epoch, step, smoothed losses, reconstructions of fixed test images and, for a 2-D
  model, the test codes after each epoch (see `Reporter`).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from . import runmeta
from .config import ModelConfig, TrainConfig
from .data import ImageData, load_dataset
from .errors import TrainingDiverged
from .models import build_model
from .train import Progress, fit


@dataclass
class RunSpec:
    """One model to train. model.kind says AE or VAE; train.beta is its β (0 for the AE)."""
    model: ModelConfig
    train: TrainConfig
    group: str = ""              # the job or sweep this run belongs to (runmeta)
    owner: str = "cli"           # public owner id (runmeta.owner_id), "cli" or "shipped"
    label: str = ""              # for people: "AE", "VAE β=4"
    iw_samples: int = 0          # importance samples for log p(x) in the metrics; 0 skips it
    knn_max_train: int = 10_000  # training codes the k-NN probe is fitted on
    n_fixed: int = 10            # test images whose reconstructions are reported while training
    n_codes: int = 2000          # test images encoded after each epoch when d = 2
    report_every_s: float = 1.0  # at most one report a second within an epoch
    threads: int = 0             # torch threads for this run (0: leave as it is)

    def __post_init__(self):
        if not self.label:
            self.label = run_label(self.model.kind, self.train.beta)

    def record(self) -> dict:
        """The run record every checkpoint of this run carries (runmeta)."""
        return runmeta.make(self.model.kind, self.train.beta, self.train.seed, self.group, self.owner, self.label)

    def n_train(self, available: int) -> int:
        return min(self.train.max_train, available) if self.train.max_train else available


def run_label(kind: str, beta: float) -> str:
    return "AE" if kind == "ae" else f"VAE β={beta:g}"


def group_specs(model: ModelConfig, train: TrainConfig, pairs, group: str, owner: str,
                iw_samples: int = 0, threads: int = 0) -> list["RunSpec"]:
    """One RunSpec per (kind, beta) of a run group: the same networks, data and seed, so the AE and
    the VAEs start from the same weights and differ only in what the maths makes them differ in."""
    return [RunSpec(dataclasses.replace(model, kind=kind),
                    dataclasses.replace(train, beta=beta if kind == "vae" else 0.0),
                    group=group, owner=owner, label=run_label(kind, beta),
                    iw_samples=iw_samples if kind == "vae" else 0, threads=threads)
            for kind, beta in pairs]


@dataclass
class RunResult:
    spec: RunSpec
    status: str                       # finished, stopped or diverged
    message: str = ""
    history: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    precision: str = "float32"
    model: Optional[torch.nn.Module] = None
    record: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Worth keeping: at least one finished epoch, or a stop mid-epoch (its weights are kept)."""
        return self.model is not None and (bool(self.history) or self.status == "stopped")

    def to_bytes(self, half: bool = False) -> bytes:
        from .checkpoints import to_bytes
        return to_bytes(self.model, self.spec.train, dataset=self.spec.train.dataset, history=self.history,
                        metrics=self.metrics, half=half, run=self.record)


def fixed_indices(data: ImageData, n: int) -> np.ndarray:
    """The first test image of each class (then the next ones) so every digit is shown."""
    n = min(n, len(data))
    if data.y is None:
        return np.arange(n)
    y = data.y.numpy()
    first = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)][:n]
    taken = set(first)
    rest = [i for i in range(len(y)) if i not in taken][:n - len(first)]
    return np.array(sorted(first) + rest)


class Reporter:
    """Turns fit's per-batch callback into reports of about one a second.

    Each report is a plain dict (it crosses process boundaries): the first carries the fixed test
    images, their labels and the labels of the encoded codes; every one carries `epoch`, `step`,
    `steps_per_epoch`, the new smoothed points since the last report (`steps`: global step,
    loss, beta, recon, KL; exponential averages started at the first batch), new history records,
    the latest reconstructions and, at an epoch's end for a 2-D model, the test codes."""

    def __init__(self, spec: RunSpec, model, test: Optional[ImageData], send: Callable[[dict], None]):
        self.spec, self.model, self.send = spec, model, send
        self.ema = None
        self.points: list = []
        self.last = 0.0
        self.fixed = None
        self.codes_x = None
        first = {"event": "start", "label": spec.label, "kind": spec.model.kind, "beta": spec.train.beta}
        if test is not None and len(test):
            idx = fixed_indices(test, spec.n_fixed)
            self.fixed = test.x[idx]
            first["fixed_images"] = self.fixed[:, 0].numpy().copy()
            first["fixed_labels"] = None if test.y is None else test.y[idx].numpy().copy()
            if model.cfg.latent_dim == 2:
                self.codes_x = test.x[:spec.n_codes]
                first["code_labels"] = None if test.y is None else test.y[:spec.n_codes].numpy().copy()
        first.update(self._images(codes=True))
        send(first)

    @torch.no_grad()
    def _images(self, codes: bool) -> dict:
        # The posterior mean, no random numbers: reporting never changes the training run.
        out = {}
        if self.fixed is None:
            return out
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        out["recon"] = self.model.decode_image(self.model.embed(self.fixed.to(device)))[:, 0].cpu().numpy()
        if codes and self.codes_x is not None:
            xs = self.codes_x
            out["codes"] = torch.cat([self.model.embed(xs[i:i + 1000].to(device))
                                      for i in range(0, len(xs), 1000)]).cpu().numpy()
        self.model.train(was_training)
        return out

    def __call__(self, p: Progress) -> None:
        if p.kind == "batch":
            now_values = (p.loss, p.recon, p.kl)
            self.ema = now_values if self.ema is None else tuple(
                0.95 * old + 0.05 * new for old, new in zip(self.ema, now_values))
            gstep = (p.epoch - 1) * p.steps_per_epoch + p.step
            self.points.append((gstep, self.ema[0], p.beta, self.ema[1], self.ema[2]))
            now = time.monotonic()
            if now - self.last >= self.spec.report_every_s:
                self.last = now
                self._send(p, images=True, codes=False)
        else:
            self._send(p, images=True, codes=True, record=dict(p.record))

    def _send(self, p: Progress, images: bool, codes: bool, record: Optional[dict] = None) -> None:
        msg = {"event": "epoch" if record is not None else "batch", "epoch": p.epoch - (record is None),
               "step": p.step, "steps_per_epoch": p.steps_per_epoch, "steps": self.points}
        self.points = []
        if record is not None:
            msg["record"] = record
        if images:
            msg.update(self._images(codes))
        self.send(msg)


def load_data(dataset: str) -> tuple[ImageData, ImageData]:
    return load_dataset(dataset, "train"), load_dataset(dataset, "test")


def execute(spec: RunSpec, data: Optional[tuple] = None, report: Optional[Callable[[dict], None]] = None,
            should_stop: Optional[Callable[[], bool]] = None,
            callback: Optional[Callable[[Progress], None]] = None) -> RunResult:
    """Train one model as `spec` says and evaluate it (see the module docstring for the policy).

    data: (train, test) ImageData, loaded from spec.train.dataset when None. report gets the
    progress dicts of `Reporter`; callback gets fit's own Progress (the CLI's progress bar).
    should_stop() True stops after the current batch and keeps the weights. A diverging run ends
    with status "diverged", its message, and the weights of its last good epoch. ConfigError,
    DataError and other VaeCoreErrors are raised before any training."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    train, test = data if data is not None else load_data(spec.train.dataset)
    mcfg = dataclasses.replace(spec.model, image_shape=train.image_shape)
    spec = dataclasses.replace(spec, model=mcfg)
    tcfg = spec.train
    gen = torch.Generator().manual_seed(tcfg.seed)
    model = build_model(mcfg, generator=gen)
    reporter = Reporter(spec, model, test, report) if report is not None else None

    def on_progress(p: Progress):
        if reporter is not None:
            reporter(p)
        if callback is not None:
            return callback(p)
        return None

    result = RunResult(spec, "finished", record=spec.record())
    t0 = time.perf_counter()
    try:
        fitted = fit(model, train, test, tcfg, callback=on_progress, should_stop=should_stop)
        result.history, result.precision = fitted.history, fitted.precision
        result.status = "stopped" if fitted.stopped else "finished"
    except TrainingDiverged as e:
        result.status, result.message = "diverged", str(e)
        if e.result is not None:
            result.history, result.precision = e.result.history, e.result.precision
    result.seconds = time.perf_counter() - t0
    model.eval()
    result.model = model
    if result.status == "finished" and test is not None and len(test):
        if reporter is not None:
            reporter.send({"event": "evaluating"})
        result.metrics = run_metrics(spec, model, train, test)
    if reporter is not None:
        reporter.send({"event": "end", "status": result.status, "message": result.message,
                       **reporter._images(codes=False)})
    return result


def run_metrics(spec: RunSpec, model, train: ImageData, test: ImageData) -> dict:
    """The evaluation policy (module docstring) as plain JSON-able numbers."""
    from .metrics import evaluate
    tcfg = spec.train
    metrics = evaluate(model, test, train=train, iw_samples=spec.iw_samples if model.cfg.kind == "vae" else 0,
                       beta=tcfg.beta if model.cfg.kind == "vae" else 1.0, seed=tcfg.seed,
                       binarize=tcfg.binarize, knn_max_train=spec.knn_max_train)
    metrics.setdefault("knn_acc", None)
    return json_safe(metrics)


def json_safe(value):
    """Metrics as plain JSON: arrays become lists, NaN and infinities become None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return json_safe(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


# A model the app trains for a student must be one the loader takes back (checkpoints'
# MAX_CHECKPOINT_BYTES, in float32) and must train within this much memory on a worker.
MAX_TRAIN_BYTES = int(os.environ.get("VAE_MAX_TRAIN_MB", "2048")) << 20


def check_size(spec: RunSpec) -> dict:
    """Estimate a run's weights, file and training memory before anything is built (on PyTorch's
    meta device), and refuse with the limit said when the loader would refuse the model or the
    training would not fit. Returns the estimate {"weights", "file_bytes", "train_bytes"}."""
    from .checkpoints import MAX_CHECKPOINT_BYTES, weight_shapes
    from .data import IMAGE_SHAPES
    from .errors import ConfigError
    mcfg = spec.model
    if spec.train.dataset in IMAGE_SHAPES:
        mcfg = dataclasses.replace(mcfg, image_shape=IMAGE_SHAPES[spec.train.dataset])
    weights = sum(math.prod(s) for s in weight_shapes(mcfg).values())
    file_bytes = 4 * weights
    widths = list(mcfg.hidden) if mcfg.arch == "mlp" else [c * 16 * 16 for c in mcfg.channels]
    activations = 4 * spec.train.batch_size * (2 * sum(widths) + 3 * math.prod(mcfg.image_shape)) * 3
    train_bytes = 16 * weights + activations     # weights, gradients, Adam's two moments, activations
    if file_bytes > MAX_CHECKPOINT_BYTES:
        raise ConfigError(f"this network has {weights:,} weights: its checkpoint would be {file_bytes / 2**20:,.0f} MB, "
                          f"over the {MAX_CHECKPOINT_BYTES >> 20} MB a model may have here: use fewer or smaller "
                          "hidden layers (e.g. 512,256)")
    if train_bytes > MAX_TRAIN_BYTES:
        raise ConfigError(f"training this network would take about {train_bytes / 2**30:.1f} GB of memory on a "
                          f"worker, over the limit of {MAX_TRAIN_BYTES / 2**30:.1f} GB: use fewer or smaller hidden "
                          "layers, or a smaller batch")
    return {"weights": weights, "file_bytes": file_bytes, "train_bytes": train_bytes}


def estimated_cost(spec: RunSpec, n_available: int = 60_000) -> float:
    """A relative cost of a run, for queue time estimates: image-passes times weights."""
    from .checkpoints import weight_shapes
    mcfg = spec.model
    try:
        n_params = sum(math.prod(s) for s in weight_shapes(mcfg).values())
    except Exception:
        n_params = 500_000
    return float(spec.n_train(n_available)) * spec.train.epochs * n_params
