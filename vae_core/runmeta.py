"""What a checkpoint is, read from its metadata: the one place that says which models belong together.

Every checkpoint written by `vae_core.runs` carries a small "run" record beside its configs:

    {"group": "sweep-3f2a9c1b0d4e", "owner": "student-8c1d", "kind": "vae", "beta": 4.0,
     "seed": 0, "created": 1764860000.0, "label": "VAE β=4"}

- group: the run group, the id of the job or sweep that trained it. Models trained together
  (the AE beside its VAE, the VAEs of one β sweep) share it, whatever their files are called.
- owner: who trained it: a short public id derived from a browser session's secret token, "cli"
  for the command line, "shipped" for the pretrained models. Never the secret token itself.
- kind, beta, seed: as trained (an AE's beta is 0).

A file name is for people and is never parsed for meaning. Files written before the record
existed get one derived from their configs, with no group: such a model pairs only with a model
of the same data, network and seed.
"""
from __future__ import annotations

import hashlib
import math
import time
from typing import Iterable, Optional

_KEYS = ("group", "owner", "kind", "beta", "seed", "created", "label")


def owner_id(token: str) -> str:
    """The public id of a session's secret owner token: 'student-' and 8 hex digits of its hash.
    It can be shown and stored in files; the token cannot be recovered from it."""
    return "student-" + hashlib.sha256(str(token).encode()).hexdigest()[:8]


def make(kind: str, beta: float, seed: int, group: str, owner: str, label: str = "",
         created: Optional[float] = None) -> dict:
    return {"group": str(group), "owner": str(owner), "kind": kind,
            "beta": 0.0 if kind == "ae" else float(beta), "seed": int(seed),
            "created": float(time.time() if created is None else created), "label": str(label)}


def parse(raw) -> Optional[dict]:
    """A run record read from a file, checked field by field; None when it is absent or invalid
    (the caller then derives one from the configs: a bad record never breaks a list)."""
    if not isinstance(raw, dict):
        return None
    out = {}
    for key in ("group", "owner", "label"):
        value = raw.get(key, "")
        if not isinstance(value, str) or len(value) > 200:
            return None
        out[key] = value
    if raw.get("kind") not in ("ae", "vae"):
        return None
    out["kind"] = raw["kind"]
    for key, cast in (("beta", float), ("seed", int), ("created", float)):
        value = raw.get(key, 0)
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            out[key] = cast(value)
        except OverflowError:          # an integer too large for a float
            return None
    if out["beta"] < 0:
        return None
    return out


def of(info: dict) -> dict:
    """The run record of a checkpoint info (as checkpoints.read_info or explorer.models give it):
    the stored one, else one derived from the configs with an empty group."""
    stored = parse(info.get("run"))
    if stored is not None:
        return stored
    mc = _as_dict(info.get("model_config"))
    tc = _as_dict(info.get("train_config")) or {}
    kind = mc.get("kind", "vae")
    return make(kind, float(tc.get("beta", 1.0)) if kind == "vae" else 0.0, int(tc.get("seed", 0)),
                group="", owner="", created=0.0)


def _as_dict(cfg) -> dict:
    if cfg is None:
        return {}
    return cfg if isinstance(cfg, dict) else cfg.to_dict()


def _network(info: dict) -> tuple:
    """What must match for two models to be compared as a pair: data, network and likelihood."""
    mc = _as_dict(info.get("model_config"))
    return (info.get("dataset"), mc.get("arch"), tuple(mc.get("hidden") or ()), tuple(mc.get("channels") or ()),
            mc.get("latent_dim"), mc.get("likelihood"), tuple(mc.get("image_shape") or ()))


def kind(info: dict) -> str:
    return _as_dict(info.get("model_config")).get("kind", "vae")


def beta(info: dict) -> Optional[float]:
    """β of a VAE (None for an AE)."""
    return None if kind(info) == "ae" else of(info)["beta"]


def same_family(a: dict, b: dict) -> bool:
    """Trained together: the same run group (when both have one), else, for files without a
    group, the same data, network and seed."""
    ra, rb = of(a), of(b)
    if ra["group"] or rb["group"]:
        return ra["group"] == rb["group"] and _network(a) == _network(b)
    return _network(a) == _network(b) and ra["seed"] == rb["seed"]


def partner_ae(vae: dict, infos: Iterable[dict]) -> Optional[dict]:
    """The AE trained beside this VAE (same run group), or None."""
    for info in infos:
        if kind(info) == "ae" and same_family(vae, info):
            return info
    return None


def family_key(info: dict) -> str:
    r = of(info)
    if r["group"]:
        return r["group"]
    n = _network(info)
    return f"{n[0]}|{n[1]}|{n[2]}|{n[3]}|d{n[4]}|{n[5]}|seed{r['seed']}"


def sort_key(info: dict):
    """AE first, then the VAEs by β, then by name."""
    b = beta(info)
    return (b is not None, b or 0.0, info.get("name", ""))


def families(infos: Iterable[dict]) -> dict:
    """{family key: [infos]} for every family of at least two models, AE first then by β."""
    out: dict = {}
    for info in infos:
        out.setdefault(family_key(info), []).append(info)
    return {k: sorted(v, key=sort_key) for k, v in out.items() if len(v) >= 2}


def family_label(members: list) -> str:
    """A readable name for a family: dataset, latent size, who trained it and the run group."""
    first = members[0]
    r = of(first)
    mc = _as_dict(first.get("model_config"))
    who = {"shipped": "pretrained", "cli": "command line", "": ""}.get(r["owner"], r["owner"])
    n = len(members)
    parts = [f"{first.get('dataset', '?')} d={mc.get('latent_dim', '?')}", f"{n} model{'s' if n != 1 else ''}"]
    likelihood = mc.get("likelihood", "bernoulli")
    if likelihood == "gaussian":
        parts.insert(1, f"Gaussian σ={float(mc.get('gaussian_sigma', 0.1)):g}")
    elif likelihood != "bernoulli":
        parts.insert(1, str(likelihood).replace("_", " "))
    if who:
        parts.append(who)
    if r["group"] and r["owner"] != "shipped":
        parts.append(r["group"])
    return " · ".join(parts)
