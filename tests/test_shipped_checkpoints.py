"""The pretrained models in checkpoints/: they load, run, keep their promises and match the table."""
import re
from pathlib import Path

import pytest
import torch

from vae_core.checkpoints import list_checkpoints, load_checkpoint
from vae_core.data import load_dataset, load_exploration
from vae_core.metrics import load_classifier
from vae_core.train import binarized, evaluate_terms

CKPT = Path(__file__).resolve().parent.parent / "checkpoints"
FILES = sorted(CKPT.glob("*.safetensors"))
FAMILIES = ["mnist-d2", "mnist-d20"]
BETAS = [0.5, 1, 2, 4, 8]
KEYS = ["loss", "recon", "kl", "log_px", "active_units", "knn_acc", "prior_confidence"]


def test_the_shipped_set_is_complete_and_lean():
    names = {p.name[:-len(".safetensors")] for p in FILES}
    for fam in FAMILIES:
        assert f"{fam}-ae" in names
        assert {f"{fam}-vae-b{b:g}" for b in BETAS} <= names
    assert {"mnist-bin-d32-vae-b1", "digits-d2-ae", "digits-d2-vae-b1"} <= names
    total = sum(p.stat().st_size for p in CKPT.rglob("*") if p.is_file())
    assert total <= 25 * 2**20, f"checkpoints/ holds {total / 2**20:.1f} MB, over the 25 MB budget"


def test_every_file_records_its_shipped_family():
    """Families and pairs are read from the run record, so every shipped file carries one."""
    groups = {}
    for info in list_checkpoints(CKPT):
        run = info["run"]
        assert run is not None, f"{info['name']} has no run record: run vae_core.shipped.mark_shipped"
        assert run["owner"] == "shipped" and run["kind"] == info["model_config"].kind
        assert run["beta"] == (info["train_config"].beta if run["kind"] == "vae" else 0.0)
        groups.setdefault(run["group"], set()).add(info["name"])
    assert groups == {
        "shipped-mnist-d2": {"mnist-d2-ae"} | {f"mnist-d2-vae-b{b:g}" for b in BETAS},
        "shipped-mnist-d20": {"mnist-d20-ae"} | {f"mnist-d20-vae-b{b:g}" for b in BETAS},
        "shipped-mnist-bin-d32": {"mnist-bin-d32-vae-b1"},
        "shipped-digits-d2": {"digits-d2-ae", "digits-d2-vae-b1"}}


def test_the_pages_open_on_the_2d_beta_1_pair_and_compare_beta_on_the_20d_family():
    from explorer import families
    infos = [{**i, "model_config": i["model_config"].to_dict(), "train_config": i["train_config"].to_dict()}
             for i in list_checkpoints(CKPT) if i["dataset"] == "mnist"]
    vaes = [i for i in infos if i["model_config"]["kind"] == "vae"]
    aes = [i for i in infos if i["model_config"]["kind"] == "ae"]
    vae = families.preferred_vae(vaes, aes)
    assert vae["name"] == "mnist-d2-vae-b1"
    assert families.preferred_ae(vae, aes)["name"] == "mnist-d2-ae"
    assert families.default_family(families.families(infos)) == "shipped-mnist-d20"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_checkpoint_loads_runs_and_matches_its_metrics(path):
    ckpt = load_checkpoint(path)
    m = ckpt.metrics
    for key in KEYS:
        assert key in m, f"{path.name} lacks metric {key}"
    assert m["iw_samples"] == (1000 if ckpt.model_config.kind == "vae" else 0)
    assert ckpt.history and len(ckpt.history) == ckpt.train_config.epochs
    if ckpt.dataset == "mnist":
        test = load_exploration("mnist", CKPT / "data")
    else:
        test = load_dataset(ckpt.dataset, "test")
    assert m["n_test"] == len(test)
    if ckpt.train_config.binarize:
        test = binarized(test, m["seed"])
    out = ckpt.model(test.x[:4])
    assert out.logits.shape == (4, *ckpt.model_config.image_shape)
    # The stored metrics were measured on these very (half-precision) weights: recomputing gives them again.
    beta = ckpt.train_config.beta if ckpt.model_config.kind == "vae" else 0.0
    terms = evaluate_terms(ckpt.model, test, beta=beta, seed=m["seed"])
    assert terms["recon"] == pytest.approx(m["recon"], abs=0.1)
    assert terms["kl"] == pytest.approx(m["kl"], abs=0.1)


def _table_rows():
    text = (CKPT / "README.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for line in text.splitlines():
        if re.match(r"^\| [a-z0-9]", line) and not line.startswith("| model |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = dict(zip(cols, cells))
    return rows


def test_readme_table_lists_every_checkpoint_with_its_stored_metrics():
    rows = _table_rows()
    for info in list_checkpoints(CKPT):
        row = rows[info["name"]]
        m = info["metrics"]
        assert float(row["test loss"]) == pytest.approx(m["loss"], abs=0.01)
        assert float(row["KL"]) == pytest.approx(m["kl"], abs=0.01)
        if m["log_px"] is not None:
            assert float(row["log p(x) (IW)"]) == pytest.approx(m["log_px"], abs=0.01)
        assert int(row["active units"]) == m["active_units"]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_tells_the_beta_story(family):
    ms = [load_checkpoint(CKPT / f"{family}-vae-b{b:g}.safetensors").metrics for b in BETAS]
    kl = [m["kl"] for m in ms]
    recon = [m["recon"] for m in ms]
    active = [m["active_units"] for m in ms]
    assert kl == sorted(kl, reverse=True), f"KL should fall as beta rises: {kl}"
    assert recon == sorted(recon), f"reconstruction error should rise with beta: {recon}"
    assert active == sorted(active, reverse=True), f"active units should not increase: {active}"


def test_quality_bars():
    d20 = load_checkpoint(CKPT / "mnist-d20-vae-b1.safetensors").metrics
    assert d20["loss"] < 105.6 - 2, "the 20-D VAE must beat the reference recipe's 105.6 nats clearly"
    binary = load_checkpoint(CKPT / "mnist-bin-d32-vae-b1.safetensors")
    assert binary.train_config.binarize and binary.metrics["binarized"]
    assert binary.metrics["iw_samples"] >= 1000 and -binary.metrics["log_px"] <= 89.5


def test_ae_prior_samples_score_below_the_vae():
    for fam in FAMILIES:
        ae = load_checkpoint(CKPT / f"{fam}-ae.safetensors").metrics
        vae = load_checkpoint(CKPT / f"{fam}-vae-b1.safetensors").metrics
        assert ae["prior_class_entropy_norm"] < vae["prior_class_entropy_norm"]


@pytest.mark.parametrize("name", ["mnist", "digits"])
def test_classifiers_load_and_read_their_images(name):
    clf = load_classifier(CKPT / "classifiers" / f"{name}-classifier.safetensors")
    data = load_exploration("mnist", CKPT / "data") if name == "mnist" else load_dataset("digits", "test")
    with torch.no_grad():
        acc = (clf(data.x[:500]).argmax(1) == data.y[:500]).float().mean().item()
    assert acc > 0.9
