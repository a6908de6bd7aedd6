"""Training speed: our `fit` against PyTorch's VAE example, in one run, on MNIST.

Both train the same 784-400-20 VAE (ours: ModelConfig(hidden=(400,), latent_dim=20)) with Adam
1e-3, batch 128, for N epochs, and score the test set after each epoch. Printed: seconds per epoch
(train pass and train + test), images per second, the speed ratio, both test losses, and what the
machine's matrix multiplies allow: each matmul shape of one training step is timed on its own, so
the step's matmul time times the number of steps is a lower bound on an epoch (the elementwise
work, the optimiser and Python come on top).

Ours trains with TrainConfig's default precision, "auto": on a CPU that multiplies bfloat16
natively (AVX-512 BF16 or AMX) and where a probe of the model's largest layer runs clearly faster
in bf16, the matrix multiplies run in bf16 while weights, Adam, sampling and the loss stay
float32 (mixed precision); elsewhere everything is float32. The bound is then
printed for both dtypes. `--precision float32` times the all-float32 path against the same
reference.

Goal: ours at least 2.5x faster per epoch, with a test loss within 1 nat of the reference's after
10 epochs.

    VAE_DATA_DIR=../shared/data python bench/bench_train.py --epochs 10

The CPU must be otherwise idle for the numbers to mean much; the load average is printed.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import reference_vae  # noqa: E402
from vae_core.config import ModelConfig, TrainConfig  # noqa: E402
from vae_core.data import data_dir, load_dataset  # noqa: E402
from vae_core.models import build_model  # noqa: E402
from vae_core.train import fit, matmul_dtype  # noqa: E402

LAYERS = [(784, 400), (400, 40), (20, 400), (400, 784)]   # (in, out) of each Linear, ours
# The reference has fc21 and fc22 (400 -> 20 each) where we have one 400 -> 40 head: the same FLOPs.


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# ---------------------------------------------------------------- the matmul bound

CLOCK = time.perf_counter


def best_time(fn, reps: int = 7, inner: int = 20) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = CLOCK()
        for _ in range(inner):
            fn()
        best = min(best, (CLOCK() - t) / inner)
    return best


def matmul_bound(batch: int, n_train: int, n_test: int, dtype=torch.float32) -> dict:
    """Time each matrix multiply of a training step (forward x W^T, backward dY W and dY^T X)
    for every layer, and of a test forward pass; FLOPs = 2 * rows * inner * cols per multiply."""
    step_s, step_flop, fwd_s, fwd_flop = 0.0, 0, 0.0, 0
    eval_batch = 1000   # vae_core.train.evaluate_terms scores the test set in batches of 1000
    for i, (n_in, n_out) in enumerate(LAYERS):
        x, w, dy = (torch.randn(batch, n_in, dtype=dtype), torch.randn(n_out, n_in, dtype=dtype),
                    torch.randn(batch, n_out, dtype=dtype))
        b = torch.randn(n_out, dtype=dtype)
        f = 2 * batch * n_in * n_out
        step_s += best_time(lambda: torch.addmm(b, x, w.t()))
        step_s += best_time(lambda: dy.t().mm(x))
        step_flop += 2 * f
        if i > 0:   # the first layer's input (the images) needs no gradient
            step_s += best_time(lambda: dy.mm(w))
            step_flop += f
        # the test pass runs in float32 (evaluate_terms does not use mixed precision)
        xe, we, be = torch.randn(eval_batch, n_in), w.float(), b.float()
        fwd_s += best_time(lambda: torch.addmm(be, xe, we.t()), inner=5)
        fwd_flop += 2 * eval_batch * n_in * n_out
    steps = n_train / batch
    return {"step_s": step_s, "gflops": step_flop / step_s / 1e9,
            "train_s": steps * step_s, "train_flop": steps * step_flop,
            "test_s": n_test / eval_batch * fwd_s, "test_flop": n_test / eval_batch * fwd_flop}


# ---------------------------------------------------------------- the two runs

def run_ours(epochs: int, batch: int, seed: int, max_train: int = 0, clock=time.perf_counter,
             precision: str = "auto") -> list[dict]:
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    torch.manual_seed(seed)
    model = build_model(ModelConfig(hidden=(400,), latent_dim=20))
    cfg = TrainConfig(dataset="mnist", epochs=epochs, batch_size=batch, lr=1e-3, seed=seed, device="cpu",
                      max_train=max_train, precision=precision)
    print(f"  (matrix multiplies in {matmul_name(cfg)}; float32 weights, optimiser and loss)")
    marks = {0: clock()}

    def on_progress(p):
        # The last batch's time splits each epoch into its train pass and its test pass.
        if p.kind == "batch" and p.step == p.steps_per_epoch:
            marks[p.epoch, "train"] = clock()
        elif p.kind == "epoch":
            now, rec = clock(), p.record
            rec["train_seconds"] = marks[p.epoch, "train"] - marks[p.epoch - 1]
            rec["seconds"] = now - marks[p.epoch - 1]
            marks[p.epoch] = now
            print(f"  ours      epoch {p.epoch:2d}: {rec['train_seconds']:6.2f} s train, {rec['seconds']:6.2f} s "
                  f"with test; test loss {rec['test_loss']:.2f}", flush=True)

    result = fit(model, train, test, cfg, callback=on_progress)
    return result.history


def matmul_name(cfg: TrainConfig) -> str:
    probe = (cfg.batch_size, 784, 400)     # fit probes the model's largest layer the same way
    return "bfloat16" if matmul_dtype(cfg.precision, torch.device("cpu"), probe=probe) is torch.bfloat16 else "float32"


def run_reference(epochs: int, batch: int, seed: int, max_train: int = 0, clock=time.perf_counter) -> list[dict]:
    def show(rec):
        print(f"  reference epoch {rec['epoch']:2d}: {rec['train_seconds']:6.2f} s train, {rec['seconds']:6.2f} s "
              f"with test; test loss {rec['test_loss']:.2f}", flush=True)
    return reference_vae.run(epochs, batch, seed, folder=data_dir("mnist"), on_epoch=show, max_train=max_train,
                             clock=clock)


def summary(history: list[dict], key: str) -> float:
    """The median over epochs after the first (the first pays one-off start-up costs) when there are any."""
    values = [h[key] for h in history]
    return statistics.median(values[1:] if len(values) > 1 else values)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="our training's matrix multiplies (TrainConfig.precision; auto: bf16 where native)")
    p.add_argument("--order", choices=("ref-first", "ours-first"), default="ref-first")
    p.add_argument("--max-train", type=int, default=0, help="train on the first N images only (quick checks)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU seconds, steadier on a busy machine with --threads 1")
    args = p.parse_args(argv)
    global CLOCK
    clock = CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("VAE_DATA_DIR", str((HERE.parent.parent / "shared" / "data").resolve()))
    n_train, n_test = (min(args.max_train, 60_000) if args.max_train else 60_000), 10_000

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu_name()}, "
          f"{os.cpu_count()} CPUs; load average {load()}")
    print(f"model 784-400-20 VAE, batch {args.batch_size}, Adam 1e-3, {args.epochs} epoch(s) each, "
          f"{n_train} training images, {args.clock} clock\n")
    ours_dtype = matmul_dtype(args.precision, torch.device("cpu"), probe=(args.batch_size, 784, 400)) or torch.float32
    bounds = {"float32": matmul_bound(args.batch_size, n_train, n_test)}
    if ours_dtype is torch.bfloat16:
        bounds["bfloat16"] = matmul_bound(args.batch_size, n_train, n_test, torch.bfloat16)

    runs = {}
    order = ["reference", "ours"] if args.order == "ref-first" else ["ours", "reference"]
    for name in order:
        print(f"{name}:", flush=True)
        fn = run_reference if name == "reference" else run_ours
        extra = {"precision": args.precision} if name == "ours" else {}
        runs[name] = fn(args.epochs, args.batch_size, args.seed, args.max_train, clock, **extra)
    print(f"\nload average after the runs: {load()}\n")

    ref, ours = runs["reference"], runs["ours"]
    rows = [("train pass", "train_seconds"), ("train + test", "seconds")]
    print(f"{'seconds per epoch (median)':28s} {'reference':>10s} {'ours':>10s} {'ratio':>8s}")
    for label, key in rows:
        r, o = summary(ref, key), summary(ours, key)
        print(f"{label:28s} {r:10.2f} {o:10.2f} {r / o:7.2f}x")
    r_ips, o_ips = n_train / summary(ref, "train_seconds"), n_train / summary(ours, "train_seconds")
    print(f"{'images per second (train)':28s} {r_ips:10.0f} {o_ips:10.0f}")
    print(f"{'total seconds, all epochs':28s} {sum(h['seconds'] for h in ref):10.1f} "
          f"{sum(h['seconds'] for h in ours):10.1f}")
    r_loss, o_loss = ref[-1]["test_loss"], ours[-1]["test_loss"]
    print(f"{'test loss after the epochs':28s} {r_loss:10.2f} {o_loss:10.2f} {o_loss - r_loss:+7.2f} nats")

    o_train, o_all = summary(ours, "train_seconds"), summary(ours, "seconds")
    for name, bound in bounds.items():
        print(f"\nmatmul bound in {name}: the step's {len(LAYERS) * 3 - 1} matrix multiplies take "
              f"{bound['step_s'] * 1e3:.2f} ms ({bound['gflops']:.0f} GFLOP/s);")
        print(f"  an epoch is {bound['train_flop'] / 1e9:.0f} GFLOP of training + {bound['test_flop'] / 1e9:.1f} GFLOP "
              f"of float32 test pass, so at least {bound['train_s']:.2f} s + {bound['test_s']:.2f} s")
        print(f"  ours: train pass {o_train:.2f} s = {o_train / bound['train_s']:.2f}x the bound "
              f"({bound['train_s'] / o_train:.0%} of it); with test {o_all:.2f} s = "
              f"{o_all / (bound['train_s'] + bound['test_s']):.2f}x")
    speedup = summary(ref, "seconds") / o_all
    print(f"\ngoal: >= 2.5x faster per epoch: {'met' if speedup >= 2.5 else 'NOT met'} ({speedup:.2f}x); "
          f"test loss within 1 nat: {'met' if abs(o_loss - r_loss) <= 1 else 'NOT met'} ({o_loss - r_loss:+.2f})"
          + ("" if args.epochs >= 10 else f"  [only {args.epochs} epoch(s): the goal is stated for 10]")
          + f"\n  (ours trained with {str(ours_dtype).replace('torch.', '')} matrix multiplies, the reference "
          "with float32; run with --precision float32 for the like-for-like figure)")


if __name__ == "__main__":
    main()
