"""A whole `python -m vae_core train` process against PyTorch's VAE example as a whole process.

Both train the 784-400-20 VAE on MNIST with Adam 1e-3, batch 128, for N epochs (default 3), from
process start to exit: Python and torch start-up, reading MNIST, training, the end of the run (ours:
the cheap test metrics and the checkpoint; the example: its last test pass). Rounds alternate so
drifts in the machine's load hit both. Printed: wall seconds per round, medians, the ratio, both
final test losses, then where our process spends its time (measured in this process, phase by phase).

Goal (issue 13): ours at least 2.5x faster, start-up and final evaluation included, at equal loss.

    VAE_DATA_DIR=../shared/data python bench/bench_cli_train.py --epochs 3 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def timed(cmd: list) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=os.environ.copy())
    wall = time.perf_counter() - t
    if out.returncode not in (0,):
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return wall, out.stdout + out.stderr


def ours(epochs: int, folder: Path) -> tuple[float, float]:
    wall, text = timed([sys.executable, "-m", "vae_core", "train", "--dataset", "mnist", "--latent-dim", "20",
                        "--hidden", "400", "--epochs", str(epochs), "--batch-size", "128", "--seed", "1",
                        "--quiet", "--overwrite", "--out", str(folder / "bench-cli.safetensors")])
    loss = float(re.search(r"test loss ([0-9.]+)", text).group(1))
    return wall, loss


def reference(epochs: int) -> tuple[float, float]:
    wall, text = timed([sys.executable, str(HERE / "reference_vae.py"), "--epochs", str(epochs), "--seed", "1"])
    losses = re.findall(r"test[_ ]loss[=: ]+([0-9.]+)", text)
    return wall, float(losses[-1]) if losses else float("nan")


def phases(epochs: int) -> None:
    """Where a CLI train's time goes, phase by phase, in this process (a fresh interpreter)."""
    code = f"""
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {str(REPO)!r})
import torch
from vae_core.config import ModelConfig, TrainConfig
from vae_core.runs import RunSpec, execute, load_data, run_metrics
from vae_core.models import build_model
from vae_core.train import fit
t1 = time.perf_counter()
data = load_data("mnist")
t2 = time.perf_counter()
spec = RunSpec(ModelConfig(kind="vae", latent_dim=20, hidden=(400,)), TrainConfig(dataset="mnist", epochs={epochs}, seed=1))
model = build_model(spec.model, generator=torch.Generator().manual_seed(1))
res = fit(model, *data, spec.train)
t3 = time.perf_counter()
m = run_metrics(spec, model, *data)
t4 = time.perf_counter()
from vae_core.checkpoints import to_bytes
to_bytes(model, spec.train, dataset="mnist", history=res.history, metrics=m)
t5 = time.perf_counter()
print(f"imports {{t1-t0:.2f}} s, reading MNIST {{t2-t1:.2f}} s, training {{t3-t2:.2f}} s, "
      f"test metrics {{t4-t3:.2f}} s, checkpoint bytes {{t5-t4:.2f}} s")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    print("ours, phase by phase:", out.stdout.strip() or out.stderr[-500:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    a, b, la, lb = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            wr, lr = reference(args.epochs)
            wo, lo = ours(args.epochs, Path(tmp))
            a.append(wo), b.append(wr), la.append(lo), lb.append(lr)
            print(f"round {r + 1}: ours {wo:.1f} s (test loss {lo:.2f}), PyTorch example {wr:.1f} s (test loss {lr:.2f})",
                  flush=True)
    mo, mr = statistics.median(a), statistics.median(b)
    print(f"whole process, {args.epochs} epochs, median of {args.rounds}: ours {mo:.1f} s, example {mr:.1f} s: "
          f"{mr / mo:.2f}x (goal >= 2.5x); test loss {statistics.median(la):.2f} vs {statistics.median(lb):.2f}")
    phases(args.epochs)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
