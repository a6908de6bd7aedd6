"""Checkpoints: one safetensors file per model, holding weights and (as JSON metadata) the model
and training configs, the history, the dataset's name and the metrics. Loading runs no code.

Files are written atomically: a temporary file in the same folder, fsync, then rename, so a
crash mid-save leaves the previous file whole.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import ModelConfig, TrainConfig
from .data import DATASETS, IMAGE_SHAPES
from .errors import CheckpointError, ConfigError
from .models import build_model
from .runmeta import parse as parse_run

FORMAT = "vae-latent-explorer/1"
SUFFIX = ".safetensors"
MAX_CHECKPOINT_BYTES = 200 * 1024 * 1024
# A backstop beside the config's own bounds: no more weights than a file within the size limit
# can hold (in half precision). The weights must also all be in the file, checked before any
# real tensor of the model is allocated.
MAX_PARAMETERS = MAX_CHECKPOINT_BYTES // 2
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


@dataclass
class Checkpoint:
    model: torch.nn.Module
    model_config: ModelConfig
    train_config: Optional[TrainConfig]
    dataset: str
    history: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    path: Optional[Path] = None
    digest: str = ""          # a hash of the weights alone: the model's identity for caches
    run: Optional[dict] = None   # what the model is: run group, owner, kind, beta, seed (runmeta)

    @property
    def name(self) -> str:
        return self.path.name[:-len(SUFFIX)] if self.path else "unsaved"


def check_name(name: str) -> str:
    """A checkpoint name: letters, digits, '.', '_', '-', at most 80 characters, no path parts."""
    if not isinstance(name, str) or not name.strip():
        raise CheckpointError("the name is empty: give a name such as my-vae-beta4")
    name = name.strip()
    if name.endswith(SUFFIX):
        name = name[:-len(SUFFIX)]
    if len(name) > 80:
        raise CheckpointError(f"the name is {len(name)} characters long: use at most 80")
    if not _NAME_RE.match(name) or ".." in name:
        raise CheckpointError(f"the name {name!r} may only hold the letters A-Z and a-z, digits, '.', '_' "
                              "and '-' and must start with a letter or digit (no folders, no spaces, "
                              "no accents or other scripts): e.g. my-vae-beta4")
    return name


def path_in(folder, name: str) -> Path:
    """The file for `name` inside `folder`; refuses names that would leave the folder."""
    folder = Path(folder).resolve()
    path = (folder / (check_name(name) + SUFFIX)).resolve()
    if path.parent != folder:
        raise CheckpointError(f"the name {name!r} would leave the folder {folder}: use a plain name")
    return path


def to_bytes(model, train_config: Optional[TrainConfig] = None, *, dataset: str = "",
             history: Optional[list] = None, metrics: Optional[dict] = None, half: bool = False,
             run: Optional[dict] = None) -> bytes:
    """The checkpoint as bytes. run: the record of what the model is (vae_core.runmeta.make)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        for k, v in state.items():
            # Beyond 65504 a weight turns infinite in float16, and loading would refuse the file.
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise CheckpointError(f"the model's weight {k} is too large for half precision: "
                                      "save it with half=False")
    meta = {
        "format": FORMAT,
        "model_config": json.dumps(model.cfg.to_dict()),
        "train_config": json.dumps(train_config.to_dict() if train_config else None),
        "dataset": dataset,
        "history": json.dumps(history or []),
        "metrics": json.dumps(metrics or {}),
    }
    if run is not None:
        meta["run"] = json.dumps(run)
    return st_save(state, metadata=meta)


def publish_new(tmp, path: Path) -> None:
    """Give the finished file `tmp` the name `path` only if no file has it: raises FileExistsError
    otherwise, even when another process creates `path` a moment before (unlike exists() followed
    by os.replace). `tmp` keeps its own name too; the caller removes it."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A file system without hard links: claim the name with an exclusive create, then swap
        # our own placeholder for the finished file.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(tmp, path)


def _umask() -> int:
    """The process's umask, read without changing it (Linux /proc; else the usual 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


STALE_TMP_S = 3600.0


def remove_stale_temporaries(folder: Path, max_age_s: float = STALE_TMP_S) -> int:
    """Remove temporary files a killed save left in `folder` (".<name>.safetensors*.tmp", older
    than max_age_s, so a save in progress is never touched). Returns how many went."""
    n = 0
    try:
        entries = list(Path(folder).glob(".*" + SUFFIX + "*.tmp"))
    except OSError:
        return 0
    now = time.time()
    for p in entries:
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime > max_age_s:
                p.unlink()
                n += 1
        except OSError:
            continue
    return n


def atomic_write(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write `data` as `path` through a temporary file of a unique name in the same folder (fsync,
    then rename), so a crash leaves the previous file whole and two saves never share a temporary
    file. overwrite=False raises FileExistsError if `path` exists, however late it appeared."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())     # a saved file gets the mode any new file would (mkstemp: 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return
        publish_new(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    Path(tmp).unlink(missing_ok=True)           # the new file has both names now: drop the temporary one


def save_checkpoint(path, model, train_config: Optional[TrainConfig] = None, *, dataset: str = "",
                    history: Optional[list] = None, metrics: Optional[dict] = None,
                    half: bool = False, overwrite: bool = True, run: Optional[dict] = None) -> Path:
    """Write a checkpoint atomically. Refuses a model with non-finite weights."""
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        path = path.with_name(path.name + SUFFIX)
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"the model's weight {k} holds NaN or infinite values: it was not saved")
    taken = CheckpointError(f"{path.name} already exists: choose another name")
    if path.exists() and not overwrite:
        raise taken                 # early, before serialising; atomic_write checks again, race-free
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = to_bytes(model, train_config, dataset=dataset, history=history, metrics=metrics,
                        half=half, run=run)
    except OSError as e:
        raise write_error(path, e) from e
    return save_bytes(path, data, overwrite=overwrite)


def save_bytes(path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write a checkpoint's bytes (to_bytes, or a worker's result) atomically as `path`.
    overwrite=False never replaces a file, even one another process creates at the same moment."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        atomic_write(path, data, overwrite=overwrite)
    except FileExistsError:
        raise CheckpointError(f"{path.name} already exists: choose another name") from None
    except OSError as e:
        raise write_error(path, e) from e
    return path


def write_error(path: Path, e: OSError) -> CheckpointError:
    """The message for a file the system refused to write: what went wrong and what to do."""
    why = e.strerror or str(e)
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        text = (f"could not write {path.name}: the folder {path.parent} is read-only or not yours to "
                f"write to ({why}): choose a folder you can write to")
    elif e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        text = (f"could not write {path.name}: there is no room for it on the disk of {path.parent} "
                f"({why}): free some disk space or choose another folder")
    else:
        text = f"could not write {path} ({why}): free some disk space or choose a folder you can write to"
    return CheckpointError(text + "; nothing was overwritten")


def check_dataset(dataset, cfg: ModelConfig, where: str = "the file", *, local_file: bool = False) -> str:
    """The dataset a checkpoint names, checked before anything builds a file path from it.

    Accepted: one of data.DATASETS, whose images must have the model's image shape. A file of this
    machine (local_file=True: loaded by path, e.g. by the CLI) may also name no dataset ("") or the
    .npz file it was trained on; a file from elsewhere (an upload) may not, since its name would
    choose which server file is read."""
    if not isinstance(dataset, str):
        raise CheckpointError(f"{where} names its dataset as {dataset!r}, which is not text: the file is damaged")
    if dataset in IMAGE_SHAPES:
        want = IMAGE_SHAPES[dataset]
        if tuple(cfg.image_shape) != want:
            fmt = lambda s: " x ".join(map(str, s))
            raise CheckpointError(f"{where} says it was trained on {dataset}, whose images are {fmt(want)}, but its "
                                  f"model takes images of {fmt(cfg.image_shape)}: the file is damaged or mislabelled")
        return dataset
    if local_file and (dataset == "" or (dataset.endswith(".npz") and "\0" not in dataset)):
        return dataset
    known = ", ".join(DATASETS)
    if dataset == "":
        raise CheckpointError(f"{where} does not say which dataset it was trained on: only models of {known} "
                              "can be added here; retrain it with this app or `python -m vae_core train`")
    shown = dataset if len(dataset) <= 80 else dataset[:77] + "..."
    raise CheckpointError(f"{where} says it was trained on {shown!r}, which is not one of this app's datasets "
                          f"({known}): only models of those can be added here (a model of your own .npz "
                          "file works from the command line)")


def _meta(meta: Optional[dict], where: str, local_file: bool = False) -> dict:
    if not meta or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where} is a safetensors file but not a VAE Latent Explorer checkpoint "
                              "(no model config inside): train it with vae_core or choose another file")
    try:
        out = {"model_config": ModelConfig.from_dict(json.loads(meta["model_config"]))}
        tc = json.loads(meta.get("train_config") or "null")
        out["train_config"] = TrainConfig.from_dict(tc) if tc else None
        out["history"] = json.loads(meta.get("history") or "[]")
        out["metrics"] = json.loads(meta.get("metrics") or "{}")
        out["dataset"] = meta.get("dataset", "")
        try:
            out["run"] = parse_run(json.loads(meta["run"])) if "run" in meta else None
        except (ValueError, RecursionError):
            out["run"] = None      # an unreadable run record is dropped: the configs still say what it is
        if not isinstance(out["history"], list) or not all(isinstance(r, dict) for r in out["history"]):
            raise ValueError("the history is not a list of records")
        if not isinstance(out["metrics"], dict):
            raise ValueError("the metrics are not a table of names and values")
        out["metrics"], dropped = clean_metrics(out["metrics"])
        out["history"], dropped_h = clean_history(out["history"])
        out["dropped"] = dropped + dropped_h
    # RecursionError: JSON nested thousands deep; AttributeError: a train config that is not a table;
    # OverflowError: an infinite size where a whole number belongs.
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError, OverflowError, ConfigError) as e:
        raise CheckpointError(f"{where} has a damaged or invalid config ({e}): retrain or re-download it") from e
    out["dataset"] = check_dataset(out["dataset"], out["model_config"], where, local_file=local_file)
    return out


_TEXT_METRICS = ("source",)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def clean_metrics(raw: dict, prefix: str = "metrics", depth: int = 0) -> tuple[dict, list]:
    """Metrics as read from a file, value by value: numbers must be finite numbers (or null), lists
    lists of finite numbers, text only where text belongs. Anything else is dropped and named, so
    no page ever formats a string as a number. Returns (metrics, names of what was dropped)."""
    out, dropped = {}, []
    for k, v in raw.items():
        k = str(k)[:80]
        if v is None or isinstance(v, bool) or _number(v):
            out[k] = v
        elif k in _TEXT_METRICS and isinstance(v, str) and len(v) <= 300:
            out[k] = v
        elif isinstance(v, list) and len(v) <= 4096 and all(x is None or _number(x) for x in v):
            out[k] = v
        elif isinstance(v, dict) and depth < 2:
            out[k], more = clean_metrics(v, f"{prefix}.{k}", depth + 1)
            dropped += more
        else:
            dropped.append(f"{prefix}.{k}")
    return out, dropped


def clean_history(raw: list) -> tuple[list, list]:
    """History records keep only their finite numeric fields (a NaN loss is kept as None)."""
    out, dropped = [], []
    for i, rec in enumerate(raw[:10_000]):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v is None:
                if v is not None:
                    dropped.append(f"history[{i}].{k}")
                continue
            clean[str(k)[:80]] = v if math.isfinite(v) else None
        out.append(clean)
    return out, dropped


def from_bytes(data: bytes, where: str = "the file", *, local_file: bool = False) -> Checkpoint:
    """Rebuild a checkpoint from its bytes, checking everything it reads.

    Bytes from elsewhere (local_file=False, the default: an upload) must name one of data.DATASETS;
    see check_dataset."""
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{where} is {len(data) / 2**20:.0f} MB, over the limit of "
                              f"{MAX_CHECKPOINT_BYTES // 2**20} MB: checkpoints here are a few MB")
    try:
        state = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__")
    except Exception as e:
        raise CheckpointError(f"{where} is not a checkpoint or is truncated ({type(e).__name__}): "
                              "choose a .safetensors file written by this app or `python -m vae_core train`") from e
    info = _meta(meta, where, local_file)
    expected = weight_shapes(info["model_config"])
    n_params = sum(math.prod(s) for s in expected.values())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: its config asks for a model of {n_params:,} weights, over the limit of "
                              f"{MAX_PARAMETERS:,}: the models here have a few million at most")
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or extra or wrong:
        detail = "; ".join(filter(None, [
            missing and f"missing {missing[:3]}", extra and f"unexpected {extra[:3]}",
            wrong and f"wrong shape for {wrong[:3]}"]))
        raise CheckpointError(f"{where}: its weights do not fit its config ({detail}): the file is damaged")
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{where}: weight {k} holds NaN or infinite values: this model is broken, retrain it")
    # Only now, with every stored weight known to fit, is the model built for real.
    model = build_model(info["model_config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval()
    return Checkpoint(model, info["model_config"], info["train_config"], info["dataset"],
                      info["history"], info["metrics"], digest=weights_digest(state), run=info["run"])


def weight_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The names and shapes of the weights a config's model has, built on the meta device:
    no memory is allocated, however large the config."""
    with torch.device("meta"):
        model = build_model(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def weights_digest(state: dict) -> str:
    """sha256 of the weights as stored (names, dtypes, shapes, bytes); metadata does not count,
    so storing new metrics keeps a model's identity."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)};".encode())
        h.update(v.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def load_checkpoint(path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: check the path or list the folder's checkpoints")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path} is over the size limit of {MAX_CHECKPOINT_BYTES // 2**20} MB")
    ckpt = from_bytes(path.read_bytes(), str(path), local_file=True)
    ckpt.path = path
    return ckpt


def read_info(path) -> dict:
    """The metadata of a checkpoint (configs, dataset, metrics, history) without loading weights."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
    except Exception as e:
        raise CheckpointError(f"{path} is not a checkpoint or is truncated ({type(e).__name__})") from e
    info = _meta(meta, str(path), local_file=True)
    info["name"] = path.name[:-len(SUFFIX)]
    info["path"] = path
    return info


def list_checkpoints(*folders, skipped: Optional[list] = None) -> list[dict]:
    """Infos of every readable checkpoint in the folders, sorted by name.

    An entry that cannot be read (damaged, a dangling link, a folder named *.safetensors, an
    unreadable file) never breaks the list: it is left out, logged once per file version, and
    added to `skipped` as (path, reason) when a list is given, so the operator can be shown it."""
    out = []
    for folder in folders:
        folder = Path(folder)
        try:
            entries = sorted(folder.glob("*" + SUFFIX)) if folder.is_dir() else []
        except OSError as e:
            _skip(folder, f"the folder cannot be listed ({e.strerror or e})", skipped)
            continue
        for p in entries:
            try:
                if not p.is_file():
                    raise CheckpointError("not a file (a folder, or a link to nothing)")
                out.append(read_info(p))
            except CheckpointError as e:
                _skip(p, str(e), skipped)
            except Exception as e:      # noqa: BLE001 - one bad entry must not break every page's list
                _skip(p, f"{type(e).__name__}: {e}", skipped)
    return out


_LOGGED: set = set()


def _skip(path: Path, reason: str, skipped: Optional[list]) -> None:
    import logging
    try:
        stamp = path.lstat().st_mtime_ns
    except OSError:
        stamp = 0
    key = (str(path), stamp)
    if key not in _LOGGED:
        _LOGGED.add(key)
        logging.getLogger(__name__).warning("skipped %s: %s", path, reason)
    if skipped is not None:
        skipped.append((str(path), reason))


def update_metrics(path, metrics: dict) -> Path:
    """Rewrite a checkpoint with new metrics merged in, keeping its weights' precision."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: check the path or list the folder's checkpoints")
    data = path.read_bytes()
    ckpt = from_bytes(data, str(path), local_file=True)
    half = any(v.dtype == torch.float16 for v in st_load(data).values())
    merged = {**ckpt.metrics, **metrics}
    return save_checkpoint(path, ckpt.model, ckpt.train_config, dataset=ckpt.dataset,
                           history=ckpt.history, metrics=merged, half=half, run=ckpt.run)


def update_run(path, run: dict) -> Path:
    """Rewrite a checkpoint with a new run record (runmeta.make), weights and all else unchanged."""
    path = Path(path)
    data = path.read_bytes()
    ckpt = from_bytes(data, str(path), local_file=True)
    half = any(v.dtype == torch.float16 for v in st_load(data).values())
    return save_checkpoint(path, ckpt.model, ckpt.train_config, dataset=ckpt.dataset,
                           history=ckpt.history, metrics=ckpt.metrics, half=half, run=run)
