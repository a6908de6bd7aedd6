"""The command line: `python -m vae_core train | evaluate | sweep | project`.

Every user mistake (a bad value, a missing or damaged file) ends with one line on stderr,
`error: ...`, naming the value and the fix, and a non-zero exit status; never a traceback.
Set VAE_DEBUG=1 to see the traceback of an unexpected failure.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

EXIT_USAGE = 2      # a wrong argument or a file that cannot be used
EXIT_STOPPED = 130  # stopped with Ctrl-C (the model so far is saved)


class CliError(Exception):
    """A problem with the command line itself; the message says what to change."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage text goes to --help, not to every mistake)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------- argument types

def _number_list(text: str, cast, kind: str, example: str) -> tuple:
    try:
        values = tuple(cast(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of {kind}: write e.g. {example}")
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is empty: write e.g. {example}")
    return values


def _int_list(text: str) -> tuple:
    return _number_list(text, int, "whole numbers", "400 or 512,256")


def _float_list(text: str) -> tuple:
    return _number_list(text, float, "numbers", "0.5,1,2,4,8")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small: use 1 or more")
    return value


# ---------------------------------------------------------------- the parser

def _add_model_and_training(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    from .config import ARCHS, LIKELIHOODS, MODEL_KINDS, PRECISIONS
    from .data import DATASETS
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="mnist", metavar="NAME",
                   help=f"{', '.join(DATASETS)}, or the path of an .npz with x (N x H x W) and optional y "
                        "(default: mnist)")
    g.add_argument("--max-train", type=int, default=0, metavar="N",
                   help="use only the first N training images (default: all)")
    g.add_argument("--binarize", action="store_true",
                   help="dynamic binarisation: resample each pixel as 0/1 every batch")
    g = p.add_argument_group("model")
    if not sweep:
        g.add_argument("--model", choices=MODEL_KINDS, default="vae", help="vae or ae (default: vae)")
        g.add_argument("--beta", type=float, default=1.0, help="weight of the KL term; 1 gives the ELBO (default: 1)")
    g.add_argument("--latent-dim", type=int, default=20, metavar="D", help="latent size, 1 to 256 (default: 20)")
    g.add_argument("--arch", choices=ARCHS, default="mlp", help="mlp or conv (default: mlp)")
    g.add_argument("--hidden", type=_int_list, default=(400,), metavar="SIZES",
                   help="MLP hidden sizes, encoder order, e.g. 400 or 512,256 (default: 400)")
    g.add_argument("--channels", type=_int_list, default=(32, 64), metavar="SIZES",
                   help="conv channels, encoder order (default: 32,64)")
    g.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli",
                   help="p(x|z) (default: bernoulli)")
    g.add_argument("--sigma", type=float, default=0.1,
                   help="pixel standard deviation for --likelihood gaussian (default: 0.1)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=10, help="(default: 10)")
    g.add_argument("--batch-size", type=int, default=128, help="(default: 128)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    g.add_argument("--lr-decay", type=float, default=1.0,
                   help="multiply the learning rate by this after each epoch (default: 1)")
    g.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="raise beta linearly from 0 over this many epochs (default: 0)")
    g.add_argument("--free-bits", type=float, default=0.0,
                   help="floor in nats on each latent dimension's KL (default: 0)")
    g.add_argument("--seed", type=int, default=0, help="(default: 0)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    g.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads for PyTorch (default: PyTorch's choice)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="matrix multiplies in training: float32, bfloat16 (mixed precision: float32 weights "
                        "and loss) or auto = bfloat16 where the hardware has it natively (default: auto)")
    g = p.add_argument_group("output")
    g.add_argument("--half", action="store_true", help="store weights as float16 (half the file size)")
    g.add_argument("--evaluate", action="store_true",
                   help="also compute the importance-weighted log p(x) (K from --iw-samples) for the "
                        "checkpoint's metrics; the quick test metrics (loss, recon, KL, active units, "
                        "KL per dimension, k-NN accuracy) are always stored")
    g.add_argument("--iw-samples", type=int, default=1000, metavar="K",
                   help="importance samples for log p(x) with --evaluate; 0 skips it (default: 1000)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m vae_core",
                     description="Train, evaluate and map VAEs and plain auto-encoders.",
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog="""examples:
  python -m vae_core train --dataset mnist --beta 4 --latent-dim 2 --epochs 20 --out user_models/b4.safetensors
  python -m vae_core evaluate user_models/b4.safetensors --json --write
  python -m vae_core sweep --dataset mnist --betas 0.5,1,2,4,8 --out-dir user_models --prefix mnist-d2 --latent-dim 2
  python -m vae_core project user_models/b4.safetensors --method umap --points 5000 --out b4-umap.npz

MNIST and Fashion-MNIST are read from $VAE_DATA_DIR/<name>/, else ~/.cache/vae_core/<name>/
(downloaded there when missing).""")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train one model and save a checkpoint",
                       description="Train one AE or VAE and save it as a .safetensors checkpoint. "
                                   "Ctrl-C stops after the current batch and saves the model so far.")
    _add_model_and_training(p)
    p.add_argument("--out", required=True, metavar="PATH", help="the checkpoint to write (.safetensors)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (default: refuse before training)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test-set metrics of a checkpoint",
                       description="Evaluate a checkpoint on the test split of its dataset.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--iw-samples", type=int, default=1000, metavar="K",
                   help="importance samples for log p(x); 0 skips it (default: 1000)")
    p.add_argument("--max-test", type=int, default=0, metavar="N",
                   help="use only the first N test images (default: all)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--write", action="store_true", help="store the metrics in the checkpoint")
    p.add_argument("--classifier", default=None, metavar="PATH",
                   help="digit classifier that scores decoded prior samples (default: the checkpoint's "
                        "folder/classifiers/<dataset>-classifier.safetensors when it exists)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("classifier", help="train the digit classifier that scores prior samples",
                       description="Train a small classifier on a labelled dataset's real images and save it; "
                                   "evaluate uses it to measure how recognisable decoded prior samples are.")
    p.add_argument("--dataset", default="mnist", metavar="NAME", help="(default: mnist)")
    p.add_argument("--epochs", type=int, default=5, help="(default: 5)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--out", required=True, metavar="PATH", help="the classifier to write (.safetensors)")
    p.set_defaults(func=cmd_classifier)

    p = sub.add_parser("maps", help="precompute the 2-D maps the app shows for a folder's models",
                       description="Write PCA, t-SNE and UMAP maps of the exploration set for every "
                                   "checkpoint with d > 2 into FOLDER/maps, where the app finds them.")
    p.add_argument("folder", metavar="FOLDER")
    p.set_defaults(func=cmd_maps)

    p = sub.add_parser("exact", help="precompute the exact log p(x) ranking values of a folder's 2-D VAEs",
                       description="Write the exact log p(x), IWAE (K = 1,000) and ELBO on the first "
                                   "exploration images (vae_core.exact.RANK_IMAGES) of every 2-D VAE into "
                                   "FOLDER/exact, where the True posterior page finds them.")
    p.add_argument("folder", metavar="FOLDER")
    p.set_defaults(func=cmd_exact)

    p = sub.add_parser("table", help="a Markdown table of a folder's checkpoints and metrics",
                       description="Print the table, or with --readme fill it in between the "
                                   "<!-- table --> and <!-- /table --> lines of that file.")
    p.add_argument("folder", metavar="FOLDER")
    p.add_argument("--readme", default=None, metavar="FILE")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("sweep", help="train the AE and VAEs at several betas",
                       description="Train the AE and one VAE per beta with one shared config and seed, in "
                                   "parallel on Ray (every core here, or a cluster with --address), one "
                                   "progress bar per model.")
    _add_model_and_training(p, sweep=True)
    p.add_argument("--betas", type=_float_list, default=(0.5, 1.0, 2.0, 4.0, 8.0), metavar="LIST",
                   help="comma-separated beta values (default: 0.5,1,2,4,8)")
    p.add_argument("--no-ae", action="store_true", help="skip the plain auto-encoder")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="folder for the checkpoints")
    p.add_argument("--prefix", default="mnist", help="checkpoint name prefix (default: mnist)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace checkpoints of the same names (default: refuse before training)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="train on this Ray cluster (default: $RAY_ADDRESS, else a local Ray on every core)")
    p.add_argument("--in-process", action="store_true",
                   help="train the models one after another in this process, without Ray")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("project", help="a 2-D map of a checkpoint's codes",
                       description="Encode the exploration (or test) set and write a 2-D map of the codes.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca", help="(default: pca)")
    p.add_argument("--points", type=int, default=0, metavar="N",
                   help="map a seeded random subset of N images (default: all)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding <dataset>-test.npz (default: the checkpoint's folder/data, "
                        "else the dataset's test split)")
    p.add_argument("--out", required=True, metavar="FILE", help="the map to write: .npz (xy, labels, indices) or .csv")
    p.set_defaults(func=cmd_project)
    return parser


# ---------------------------------------------------------------- shared helpers

def _configs(args, kind: str, beta: float):
    """ModelConfig and TrainConfig from the arguments; both validate and raise ConfigError."""
    from .config import ModelConfig, TrainConfig
    if args.max_train < 0:
        raise CliError(f"--max-train {args.max_train} is negative: use 0 (all) or a positive count")
    dataset = args.dataset
    if dataset.endswith(".npz") and Path(dataset).is_file():
        dataset = str(Path(dataset).resolve())   # the checkpoint then finds its data from any folder
    tcfg = TrainConfig(dataset=dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       beta=beta, warmup_epochs=args.warmup_epochs, free_bits=args.free_bits,
                       binarize=args.binarize, seed=args.seed, device=args.device,
                       lr_decay=args.lr_decay, max_train=args.max_train, precision=args.precision)
    if str(args.device).startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise CliError(f"--device {args.device}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    mcfg = ModelConfig(kind=kind, arch=args.arch, latent_dim=args.latent_dim, hidden=args.hidden,
                       channels=args.channels, likelihood=args.likelihood, gaussian_sigma=args.sigma)
    return mcfg, tcfg


def _check_iw(k: int) -> None:
    if k < 0:
        raise CliError(f"--iw-samples {k} is negative: use 0 (skip log p(x)) or more (1000 gives a tight bound)")


def _checkpoint_path(out: str) -> Path:
    from .checkpoints import SUFFIX, check_name
    path = Path(out)
    check_name(path.name)   # a clear error for spaces, empty names or names that are too long
    if not path.name.endswith(SUFFIX):
        path = path.with_name(path.name + SUFFIX)
    if path.is_dir():
        raise CliError(f"--out {out} is a folder: give a file name such as {out.rstrip('/')}/my-vae.safetensors")
    return path


@contextmanager
def _ctrl_c_stops():
    """The first Ctrl-C asks training to stop after the current batch; a second one aborts.

    Yields a function that says whether a stop was asked for.
    """
    asked = []

    def handler(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(True)
        print("\nstopping after this batch (Ctrl-C again to abort without saving)", file=sys.stderr)

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:      # not the main thread: keep the default behaviour
        yield lambda: False
        return
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGINT, old)


class _Bar:
    """A tqdm bar per epoch, fed by fit's callback (batch and epoch Progress)."""

    def __init__(self, epochs: int, label: str = "", quiet: bool = False):
        self.epochs, self.label, self.quiet = epochs, label, quiet
        self.bar = None

    def __call__(self, p) -> None:
        if self.quiet:
            return None
        from tqdm import tqdm
        if p.kind == "batch":
            if self.bar is None:
                desc = f"{self.label} epoch {p.epoch}/{self.epochs}".strip()
                self.bar = tqdm(total=p.steps_per_epoch, desc=desc, unit="batch", leave=True,
                                file=sys.stderr, dynamic_ncols=True, mininterval=0.2)
            self.bar.set_postfix(loss=f"{p.loss:.2f}", beta=f"{p.beta:g}", refresh=False)
            self.bar.update(1)
        else:
            # The epoch's mean train loss replaces the last batch's; the test loss joins it.
            rec = p.record or {}
            post = {"loss": f"{rec.get('train_loss', float('nan')):.2f}"}
            if "test_loss" in rec:
                post["test_loss"] = f"{rec['test_loss']:.2f}"
            if self.bar is not None:
                self.bar.set_postfix(post)
                self.bar.close()
            self.bar = None
        return None

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _test_split(name: str, data_dir: Optional[Path] = None):
    """The test split of a checkpoint's dataset; a shipped `<name>-test.npz` is used when the raw
    files are not on this machine (so shipped MNIST models evaluate offline)."""
    from .data import IDX_FILES, SOURCES, data_dir as raw_dir, load_dataset, load_exploration
    if not name:
        raise CliError("the checkpoint does not say which dataset it was trained on: retrain it with this version")
    shipped = data_dir is not None and (Path(data_dir) / f"{name}-test.npz").is_file()
    if name in SOURCES and shipped and not (raw_dir(name) / IDX_FILES["test"][0]).exists():
        return load_exploration(name, data_dir)
    return load_dataset(name, "test")


def _train_split(name: str):
    """The training split when it is on this machine (for the k-NN probe), else None."""
    from .data import load_dataset
    from .errors import DataError
    try:
        return load_dataset(name, "train", allow_download=False)
    except DataError:
        return None


def _json_safe(value):
    from .runs import json_safe
    return json_safe(value)


def _evaluate(model, tcfg, dataset: str, iw_samples: int, seed: int = 0, max_test: int = 0,
              data_dir: Optional[Path] = None, classifier=None) -> dict:
    from .metrics import evaluate
    test = _test_split(dataset, data_dir)
    if max_test:
        test = test.subset(max_test)
    train = _train_split(dataset)
    binarize = bool(tcfg is not None and tcfg.binarize)
    beta = tcfg.beta if (tcfg is not None and model.cfg.kind == "vae") else 1.0
    metrics = _json_safe(evaluate(model, test, train=train, iw_samples=iw_samples, beta=beta, seed=seed,
                                  binarize=binarize, classifier=classifier))
    # Same keys whether or not labelled training data was at hand (null: not measured).
    metrics.setdefault("knn_acc", None)
    return metrics


def _print_metrics(metrics: dict, stream=sys.stdout) -> None:
    for k, v in metrics.items():
        if isinstance(v, float):
            print(f"{k:>14}  {v:.4f}", file=stream)
        elif isinstance(v, list):
            shown = ", ".join(f"{x:.3g}" if isinstance(x, float) else str(x) for x in v[:12])
            print(f"{k:>14}  [{shown}{', ...' if len(v) > 12 else ''}]", file=stream)
        else:
            print(f"{k:>14}  {v}", file=stream)


def _set_threads(n: Optional[int]) -> None:
    if n:
        import torch
        torch.set_num_threads(n)


# ---------------------------------------------------------------- commands

def cmd_train(args) -> int:
    """One run of the run pipeline (vae_core.runs), in this process: no Ray on this path."""
    import uuid

    from .checkpoints import SUFFIX, save_bytes
    from .errors import CheckpointError, TrainingDiverged
    from .runs import RunSpec, execute
    _set_threads(args.threads)
    if args.evaluate:
        _check_iw(args.iw_samples)
    if not (math.isfinite(args.beta) and args.beta >= 0):
        # An AE ignores beta, but a negative one is still a mistake worth naming.
        raise CliError(f"--beta {args.beta} is invalid: use a number >= 0, e.g. 1 or 4")
    mcfg, tcfg = _configs(args, args.model, args.beta if args.model == "vae" else 0.0)
    out = _checkpoint_path(args.out)
    if out.exists() and not args.overwrite:
        raise CliError(f"--out {out} already exists: choose another name, or pass --overwrite to replace it")
    _check_writable(out.parent)
    spec = RunSpec(mcfg, tcfg, group="cli-" + uuid.uuid4().hex[:12], owner="cli",
                   iw_samples=args.iw_samples if args.evaluate else 0)
    bar = _Bar(tcfg.epochs, quiet=args.quiet)
    with _ctrl_c_stops() as stop_asked:
        try:
            result = execute(spec, callback=bar, should_stop=stop_asked)
        finally:
            bar.close()
    if result.status == "diverged":
        # The run kept its last finished epoch's weights: save them, then report the divergence.
        # A failed run never replaces a file that is already there: it goes beside it.
        if not result.history:
            raise TrainingDiverged(result.message)
        epochs = len(result.history)
        target = out if not out.exists() else out.with_name(
            f"{out.name[:-len(SUFFIX)]}-diverged-epoch{epochs}{SUFFIX}")
        try:
            path = save_bytes(target, result.to_bytes(half=args.half), overwrite=False)
        except CheckpointError as save_error:
            raise TrainingDiverged(f"{result.message} The model of epoch {epochs} was not saved: {save_error}") from None
        raise TrainingDiverged(f"{result.message} The model of epoch {epochs} was saved to {path}.")
    if not result.history:
        print("error: stopped before the first batch finished: nothing was saved", file=sys.stderr)
        return EXIT_STOPPED
    path = _publish(out, result.to_bytes(half=args.half), args.overwrite)
    last = result.history[-1]
    summary = f"saved {path} after {len(result.history)} epoch(s), train loss {last['train_loss']:.2f}"
    if "test_loss" in last:
        summary += f", test loss {last['test_loss']:.2f}"
    print(summary + (" (stopped early)" if result.status == "stopped" else ""), file=sys.stderr)
    if result.metrics:
        _print_metrics(result.metrics, sys.stderr)
    return EXIT_STOPPED if result.status == "stopped" else 0


def _check_writable(folder: Path) -> None:
    """Before minutes of training: the folder exists (or can be made) and takes a file."""
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vae-write-check-"):
            pass
    except OSError as e:
        raise CliError(f"cannot write into {folder} ({e.strerror or e}): choose a folder you can write to "
                       "with --out, before training") from None


def _publish(out: Path, data: bytes, overwrite: bool) -> Path:
    """Save a finished model as `out`. Without --overwrite a file that appeared meanwhile (another
    run to the same --out) is never replaced: this model goes beside it, and the message says where."""
    from .checkpoints import SUFFIX, save_bytes
    from .errors import CheckpointError
    try:
        return save_bytes(out, data, overwrite=overwrite)
    except CheckpointError:
        if overwrite or not out.exists():
            raise
    stem = out.name[:-len(SUFFIX)]
    for i in range(2, 1000):
        beside = out.with_name(f"{stem}-{i}{SUFFIX}")
        try:
            path = save_bytes(beside, data, overwrite=False)
        except CheckpointError:
            if beside.exists():
                continue
            raise
        print(f"note: {out.name} appeared while this run trained (another run?): kept it, saved this model "
              f"as {path.name}", file=sys.stderr)
        return path
    raise CliError(f"{out} and its numbered neighbours all exist: choose another --out")


def cmd_evaluate(args) -> int:
    from .checkpoints import load_checkpoint, update_metrics
    _check_iw(args.iw_samples)
    if args.max_test < 0:
        raise CliError(f"--max-test {args.max_test} is negative: use 0 (all) or a positive count")
    from .metrics import load_classifier
    ckpt = load_checkpoint(args.checkpoint)
    folder = Path(args.checkpoint).resolve().parent
    clf_path = Path(args.classifier) if args.classifier else folder / "classifiers" / f"{Path(ckpt.dataset).name}-classifier.safetensors"
    classifier = load_classifier(clf_path) if (args.classifier or clf_path.is_file()) else None
    metrics = _evaluate(ckpt.model, ckpt.train_config, ckpt.dataset, args.iw_samples, seed=args.seed,
                        max_test=args.max_test, data_dir=folder / "data", classifier=classifier)
    if args.write:
        update_metrics(ckpt.path, metrics)
    if args.json:
        print(json.dumps(metrics, allow_nan=False))
    else:
        print(f"{ckpt.name} ({ckpt.model_config.kind}, d={ckpt.model_config.latent_dim}, {ckpt.dataset})")
        _print_metrics(metrics)
    if args.write:
        print(f"metrics stored in {ckpt.path}", file=sys.stderr)
    return 0


def cmd_sweep(args) -> int:
    """The runs of a sweep in parallel on Ray: a local Ray on every core, or the cluster at
    --address / RAY_ADDRESS; --in-process trains them one after another without Ray."""
    from .sweep import sweep, sweep_on_ray
    _set_threads(args.threads)
    if args.evaluate:
        _check_iw(args.iw_samples)
    # Check every beta and the shared config before the first model trains for minutes.
    for b in args.betas:
        _configs(args, "vae", b)
    mcfg, tcfg = _configs(args, "vae", 1.0)
    from .checkpoints import check_name
    check_name(args.prefix)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out-dir {out_dir} is a file: give a folder")
    iw = args.iw_samples if args.evaluate else 0
    diverged = []

    def on_diverged(name, error):
        diverged.append(name)
        print(f"error: {name} was not saved: {error}", file=sys.stderr)

    with _ctrl_c_stops() as stop_asked:
        if args.in_process:
            bar = _Bar(tcfg.epochs, quiet=args.quiet)

            def on_model(name, i, n):
                bar.close()
                bar.label = f"[{i + 1}/{n}] {name}"
                if not args.quiet:
                    print(f"training {name} ({i + 1} of {n})", file=sys.stderr)
            try:
                paths = sweep(mcfg, tcfg, args.betas, out_dir, args.prefix, include_ae=not args.no_ae,
                              half=args.half, on_model=on_model, callback=bar, should_stop=stop_asked,
                              overwrite=args.overwrite, iw_samples=iw, on_diverged=on_diverged)
            finally:
                bar.close()
        else:
            paths, _ = sweep_on_ray(mcfg, tcfg, args.betas, out_dir, args.prefix, include_ae=not args.no_ae,
                                    half=args.half, overwrite=args.overwrite, iw_samples=iw, address=args.address,
                                    quiet=args.quiet, stop_asked=stop_asked, on_diverged=on_diverged)
    for p in paths:
        print(p)
    stopped = stop_asked()
    if stopped:
        print(f"stopped early: {len(paths)} checkpoint(s) saved", file=sys.stderr)
    if diverged:
        print(f"error: {len(diverged)} model(s) diverged or failed ({', '.join(diverged)}); {len(paths)} saved",
              file=sys.stderr)
        return EXIT_USAGE
    return EXIT_STOPPED if stopped else 0


def cmd_classifier(args) -> int:
    from .data import load_dataset
    from .metrics import classifier_accuracy, save_classifier, train_classifier
    if args.epochs < 1:
        raise CliError(f"--epochs {args.epochs} is invalid: use 1 or more")
    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    clf = train_classifier(train, epochs=args.epochs, seed=args.seed)
    acc = classifier_accuracy(clf, test)
    path = save_classifier(clf, args.out, {"dataset": args.dataset, "test_accuracy": acc})
    print(f"{path}: test accuracy {acc:.4f}")
    return 0


def _precompute(folder: str, what, noun: str, sub: str) -> int:
    """A shipped folder's precomputation (`maps`, `exact`): what(folder, log) -> count written."""
    if not Path(folder).is_dir():
        raise CliError(f"{folder} is not a folder: give the folder that holds the checkpoints")
    n = what(folder, log=lambda line: print(line, file=sys.stderr))
    print(f"{n} {noun} in {Path(folder) / sub}")
    return 0


def cmd_exact(args) -> int:
    from .shipped import precompute_rankings
    return _precompute(args.folder, precompute_rankings, "models' rankings", "exact")


def cmd_maps(args) -> int:
    from .shipped import precompute_maps
    return _precompute(args.folder, precompute_maps, "maps", "maps")


def cmd_table(args) -> int:
    from .report import markdown_table
    from .shipped import write_table
    if not Path(args.folder).is_dir():
        raise CliError(f"{args.folder} is not a folder: give the folder that holds the checkpoints")
    table = markdown_table(args.folder)
    if args.readme:
        try:
            write_table(args.readme, table)
        except ValueError as e:
            raise CliError(str(e)) from e
    else:
        print(table)
    return 0


def cmd_project(args) -> int:
    import numpy as np
    import torch
    from .checkpoints import load_checkpoint
    from .data import load_exploration
    from .projections import project
    out = Path(args.out)
    if out.suffix not in (".npz", ".csv"):
        raise CliError(f"--out {args.out} has an unknown type: end the name with .npz or .csv")
    if args.points < 0:
        raise CliError(f"--points {args.points} is negative: use 0 (all) or a positive count")
    ckpt = load_checkpoint(args.checkpoint)
    folder = Path(args.data_dir) if args.data_dir else Path(args.checkpoint).resolve().parent / "data"
    if args.data_dir and not folder.is_dir():
        raise CliError(f"--data-dir {args.data_dir} is not a folder: give the folder holding {ckpt.dataset}-test.npz")
    if folder.is_dir() and (folder / f"{ckpt.dataset}-test.npz").is_file():
        data = load_exploration(ckpt.dataset, folder)
    else:
        data = _test_split(ckpt.dataset)
    n = len(data)
    if args.points and args.points < n:
        indices = np.sort(np.random.default_rng(args.seed).choice(n, args.points, replace=False))
    else:
        indices = np.arange(n)
    idx = torch.from_numpy(indices)
    x = data.x[idx]
    model = ckpt.model.eval()
    with torch.no_grad():
        codes = torch.cat([model.embed(x[i:i + 1000]) for i in range(0, len(x), 1000)]).numpy()
    xy = np.asarray(project(codes, args.method, seed=args.seed), dtype=np.float32)
    labels = data.y[idx].numpy() if data.y is not None else np.full(len(indices), -1, dtype=np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, xy=xy, labels=labels, indices=indices)
    else:
        with open(out, "w") as f:
            f.write("x,y,label,index\n")
            for (a, b), lab, i in zip(xy, labels, indices):
                f.write(f"{a:.6g},{b:.6g},{int(lab)},{int(i)}\n")
    print(f"wrote {out}: {len(indices)} points, {args.method} of {ckpt.name}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- entry point

def main(argv: Optional[list] = None) -> int:
    from .errors import VaeCoreError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (VaeCoreError, CliError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: aborted with Ctrl-C; nothing was saved", file=sys.stderr)
        return EXIT_STOPPED
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where}: {e.strerror or e}; check the path and its permissions", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        if os.environ.get("VAE_DEBUG"):
            raise
        print(f"error: unexpected {type(e).__name__}: {_one_line(e)} (set VAE_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
