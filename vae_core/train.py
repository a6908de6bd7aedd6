"""One training loop for the AE and the VAE. It reports through a callback and knows no UI."""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .config import TrainConfig
from .data import ImageData
from .errors import TrainingDiverged
from .losses import loss_terms


@dataclass
class Progress:
    """What the callback receives: after every batch ("batch") and every epoch ("epoch")."""
    kind: str                 # "batch" or "epoch"
    epoch: int                # 1-based epoch number
    step: int                 # batches done in this epoch
    steps_per_epoch: int
    loss: float               # this batch's loss ("batch") or the epoch's mean train loss ("epoch")
    beta: float               # the KL weight in force (after warm-up)
    record: Optional[dict] = None   # the epoch's history record ("epoch" only)
    elapsed: float = 0.0      # seconds since fit started
    recon: float = math.nan   # this batch's mean reconstruction NLL ("batch"; the epoch's mean for "epoch")
    kl: float = math.nan      # this batch's mean KL, before free bits (0 for the AE)


@dataclass
class FitResult:
    history: list = field(default_factory=list)   # one dict per finished epoch
    stopped: bool = False                          # True when stopped early on request
    seconds: float = 0.0
    precision: str = "float32"                     # what the matrix multiplies ran in


def binarized(data: ImageData, seed: int = 0) -> ImageData:
    """A fixed (seeded) binarisation x ~ Bernoulli(pixels), for evaluating binarised models."""
    gen = torch.Generator(device=data.x.device).manual_seed(seed)
    return ImageData(torch.bernoulli(data.x, generator=gen), data.y, data.name, data.classes)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def beta_at(cfg: TrainConfig, epoch_progress: float) -> float:
    """Linear KL warm-up: beta * min(1, t / warmup_epochs), t counted in epochs from 0."""
    if cfg.warmup_epochs <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, epoch_progress / cfg.warmup_epochs)


@torch.no_grad()
def evaluate_terms(model, data: ImageData, beta: float = 1.0, batch_size: int = 1000,
                   seed: int = 0) -> dict:
    """Mean loss, reconstruction NLL and KL per image over a dataset (one posterior sample each)."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    tot = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    n = len(data)
    for i in range(0, n, batch_size):
        x = data.x[i:i + batch_size].to(device)
        out = _forward(model, x, gen)
        t = loss_terms(model, out, x, beta)
        b = x.shape[0]
        tot["recon"] += t.recon.item() * b
        tot["kl"] += t.kl.item() * b
    tot = {k: v / n for k, v in tot.items()}
    tot["loss"] = tot["recon"] + (beta * tot["kl"])
    return tot


def _forward(model, x, gen=None, cast=None):
    """A forward pass whose sampling noise comes from `gen` (so evaluation is repeatable).

    cast: a dtype for the encoder's and decoder's matrix multiplies (mixed precision); the
    codes, the sampling step and the logits the loss sees stay float32.
    """
    from .models import ForwardOutput
    region = (torch.autocast(x.device.type, dtype=cast) if cast is not None else contextlib.nullcontext())
    with region:
        mu, logvar = model.encode(x)
    if cast is not None:
        mu = mu.float()
        logvar = logvar.float() if logvar is not None else None
    if logvar is None:
        z = mu
    else:
        eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
    with region:
        logits = model.decode(z)
    return ForwardOutput(logits.float() if cast is not None else logits, mu, logvar, z)


def matmul_dtype(precision: str, device: torch.device, probe: Optional[tuple] = None) -> Optional[torch.dtype]:
    """The autocast dtype for training, or None for plain float32.

    "auto" picks bfloat16 where it is faster: a CUDA GPU that supports it; on a CPU that
    multiplies bf16 natively (oneDNN reports AVX-512 BF16 or AMX), only when a probe of the
    model's own largest matrix multiply (probe = (batch, in, out)) runs clearly faster in bf16.
    CPUs differ: with AMX, bf16 ran about 2x faster here; on a Xeon with AVX-512 BF16 but no AMX
    it ran slower than float32, so a flag alone does not decide.
    """
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        if not native:
            return None
        if probe is None:
            return torch.bfloat16
        return torch.bfloat16 if _bf16_speedup(*probe) >= 1.15 else None
    return None


def _bf16_speedup(batch: int, n_in: int, n_out: int, reps: int = 15) -> float:
    """float32 time / bfloat16 time of x @ W for one layer's shape (best of `reps`, about 20 ms)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n_in, generator=gen)
    w = torch.randn(n_in, n_out, generator=gen)

    def best(a, b):
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        return min(times)
    f32 = best(x, w)
    bf = best(x.bfloat16(), w.bfloat16())
    return f32 / max(bf, 1e-9)


def _largest_linear(model, batch: int) -> Optional[tuple]:
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not layers or any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in model.modules()):
        return None
    big = max(layers, key=lambda m: m.in_features * m.out_features)
    return (batch, big.in_features, big.out_features)


def _adam(model, lr: float) -> torch.optim.Adam:
    """Adam with one fused kernel per weight where PyTorch has it (CPU and CUDA, float weights).

    The fused update is the same Adam rule as the foreach one, within float rounding; for a small
    MLP on a CPU the foreach version's dozen passes over the weights cost a third of each step.
    """
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):   # a device or dtype without the fused kernel
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


def _check_exploding(end_recon: float, start_recon: float, epoch: int, lr: float, model, good_state,
                     result: FitResult) -> None:
    """Raise TrainingDiverged when an epoch ends with a reconstruction NLL more than twice the
    untrained network's (by |start| + at least 1 nat, as a Gaussian NLL can be negative).

    A step size far too large rarely gives NaN at once: an AE at learning rate 1.0 on MNIST ends
    its epochs at 10^5 nats and more, every value finite. Training from random weights that ends
    an epoch so much worse than where it began has failed, whatever beta or the warm-up do
    (they move the KL, not the reconstruction, which is why the KL is not judged here).
    """
    limit = start_recon + max(abs(start_recon), 1.0)
    if end_recon > limit:
        model.load_state_dict(good_state)
        raise TrainingDiverged(
            f"the reconstruction error grew to {end_recon:.4g} nats per image by the end of epoch {epoch}, "
            f"more than twice the untrained network's {start_recon:.4g}: the steps are too large to learn. "
            f"Training stopped and the weights of epoch {epoch - 1} were kept. Lower the learning rate "
            f"(now {lr:g}, try {lr / 10:g}) and train again.", result)


def fit(model, train: ImageData, test: Optional[ImageData], cfg: TrainConfig,
        callback: Optional[Callable[[Progress], Optional[bool]]] = None,
        should_stop: Optional[Callable[[], bool]] = None) -> FitResult:
    """Train `model` in place with Adam on loss = recon + beta * KL.

    The callback gets a Progress after each batch and epoch; returning False from it, or
    should_stop() returning True, stops after the current batch. A NaN or infinite loss, or a
    run whose reconstruction ends an epoch far worse than the untrained network's (see
    _check_exploding), restores the weights of the last finished epoch and raises TrainingDiverged.
    """
    device = pick_device(cfg.device)
    # Every random draw (batch order, posterior samples, binarisation) comes from this generator:
    # fit never reads or changes the global seed, so runs in threads or workers cannot disturb each other.
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    model.to(device).train()
    x_train = train.x[:cfg.max_train] if cfg.max_train else train.x
    x_train = x_train.to(device)
    test = test.to(device) if test is not None else None
    if test is not None and cfg.binarize:
        test = binarized(test, cfg.seed)
    opt = _adam(model, cfg.lr)
    cast = matmul_dtype(cfg.precision, device, probe=_largest_linear(model, cfg.batch_size))
    result_precision = "bfloat16" if cast is torch.bfloat16 else "float32"
    n = x_train.shape[0]
    steps = math.ceil(n / cfg.batch_size)
    result = FitResult(precision=result_precision)
    start = time.perf_counter()
    good_state = copy.deepcopy(model.state_dict())
    is_vae = model.cfg.kind == "vae"
    start_recon = None            # the untrained network's reconstruction NLL (first batch)
    tail_from = steps - max(1, steps // 10)   # the batches whose recon says where an epoch ended

    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen, device=device)
        sums = torch.zeros(3, device=device)   # loss, recon, kl: accumulated without a sync per step
        tail, tail_n = torch.zeros((), device=device), 0   # recon summed over the epoch's last batches
        seen = 0
        for step in range(steps):
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = x_train.index_select(0, idx)   # a plain row gather: faster than x_train[idx]
            if cfg.binarize:
                x = torch.bernoulli(x, generator=gen)
            beta = beta_at(cfg, epoch - 1 + step / steps) if is_vae else 0.0
            out = _forward(model, x, gen, cast)
            terms = loss_terms(model, out, x, beta, cfg.free_bits if is_vae else 0.0)
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            loss_value = terms.loss.item()
            if not math.isfinite(loss_value):
                model.load_state_dict(good_state)
                raise TrainingDiverged(
                    f"the loss became {loss_value} at epoch {epoch}, batch {step + 1}: training stopped and "
                    f"the weights of epoch {epoch - 1} were kept. Lower the learning rate "
                    f"(now {cfg.lr:g}, try {cfg.lr / 10:g}) and train again.", result)
            if start_recon is None:
                start_recon = terms.recon.item()
            opt.step()
            b = x.shape[0]
            sums += torch.stack([terms.loss.detach(), terms.recon.detach(), terms.kl.detach()]) * b
            if step >= tail_from:
                tail += terms.recon.detach() * b
                tail_n += b
            seen += b
            stop = should_stop is not None and should_stop()
            if callback is not None:
                if callback(Progress("batch", epoch, step + 1, steps, loss_value, beta,
                                     elapsed=time.perf_counter() - start, recon=terms.recon.item(),
                                     kl=terms.kl.item())) is False:
                    stop = True
            if stop:
                result.stopped = True
                break
        if seen == 0:
            break
        # A finite loss can still come with an infinite gradient, which Adam turns into NaN
        # weights; they must never become the "good" state that a later divergence restores.
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            model.load_state_dict(good_state)
            raise TrainingDiverged(
                f"the weights became NaN or infinite during epoch {epoch}: training stopped and the weights "
                f"of epoch {epoch - 1} were kept. Lower the learning rate (now {cfg.lr:g}, try {cfg.lr / 10:g}) "
                "and train again.", result)
        if tail_n:
            _check_exploding(tail.item() / tail_n, start_recon, epoch, cfg.lr, model, good_state, result)
        # train_loss is the objective minimised (beta after warm-up, free-bits floors included);
        # test_loss is recon + beta * KL at the full beta, so at beta = 1 it is the negative ELBO.
        tr = (sums / seen).tolist()
        record = {"epoch": epoch, "beta": beta, "train_loss": tr[0], "train_recon": tr[1], "train_kl": tr[2],
                  "images": seen}
        if test is not None:
            te = evaluate_terms(model, test, beta=cfg.beta if is_vae else 0.0, seed=cfg.seed)
            record.update(test_loss=te["loss"], test_recon=te["recon"], test_kl=te["kl"])
        record["seconds"] = time.perf_counter() - t0
        result.history.append(record)
        good_state = copy.deepcopy(model.state_dict())
        for g in opt.param_groups:
            g["lr"] *= cfg.lr_decay
        if callback is not None:
            callback(Progress("epoch", epoch, math.ceil(seen / cfg.batch_size), steps, tr[0], beta, record,
                              elapsed=time.perf_counter() - start, recon=tr[1], kl=tr[2]))
        if result.stopped:
            break
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
