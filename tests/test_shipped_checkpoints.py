"""The pretrained models in checkpoints/: they load, run, keep their promises and match the table."""
import math
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
GAUSS = {"vae": "mnist-d2-gauss-vae-b1", "ae": "mnist-d2-gauss-ae"}   # the Gaussian-likelihood 2-D pair
GAUSS_SIGMA = 0.1


def test_the_shipped_set_is_complete_and_lean():
    names = {p.name[:-len(".safetensors")] for p in FILES}
    for fam in FAMILIES:
        assert f"{fam}-ae" in names
        assert {f"{fam}-vae-b{b:g}" for b in BETAS} <= names
    assert {"mnist-bin-d32-vae-b1", "digits-d2-ae", "digits-d2-vae-b1"} <= names
    assert set(GAUSS.values()) <= names
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
        "shipped-digits-d2": {"digits-d2-ae", "digits-d2-vae-b1"},
        "shipped-mnist-d2-gauss": set(GAUSS.values())}


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


# ---------------------------------------------------------------- the Gaussian-likelihood pair


def _mnist_infos():
    return {i["name"]: {**i, "model_config": i["model_config"].to_dict(), "train_config": i["train_config"].to_dict()}
            for i in list_checkpoints(CKPT) if i["dataset"] == "mnist"}


def test_the_gaussian_pair_is_the_bernoulli_2d_recipe_with_only_the_likelihood_changed():
    bern = {k: load_checkpoint(CKPT / f"mnist-d2-{'ae' if k == 'ae' else 'vae-b1'}.safetensors") for k in GAUSS}
    for kind, name in GAUSS.items():
        ckpt = load_checkpoint(CKPT / f"{name}.safetensors")
        mc, tc = ckpt.model_config, ckpt.train_config
        assert mc.kind == kind and mc.likelihood == "gaussian" and mc.gaussian_sigma == GAUSS_SIGMA
        assert ckpt.dataset == "mnist" and not tc.binarize
        bmc, btc = bern[kind].model_config, bern[kind].train_config
        assert bmc.likelihood == "bernoulli"
        assert (mc.arch, mc.hidden, mc.latent_dim, mc.image_shape) == (bmc.arch, bmc.hidden, bmc.latent_dim, bmc.image_shape)
        for field in ("epochs", "batch_size", "lr", "lr_decay", "seed", "beta", "warmup_epochs", "free_bits"):
            assert getattr(tc, field) == getattr(btc, field), field
        # Stored in half precision like the others, so it costs what a Bernoulli 2-D file costs.
        size = (CKPT / f"{name}.safetensors").stat().st_size
        assert size <= 1.01 * (CKPT / f"{bern[kind].name}.safetensors").stat().st_size


def test_the_gaussian_pair_pairs_with_itself_and_leaves_the_bernoulli_families_alone():
    from explorer import families
    from vae_core import runmeta
    infos = _mnist_infos()
    aes = [i for i in infos.values() if i["model_config"]["kind"] == "ae"]
    vaes = [i for i in infos.values() if i["model_config"]["kind"] == "vae"]
    assert families.partner_ae(infos[GAUSS["vae"]], aes)["name"] == GAUSS["ae"]
    assert not runmeta.same_family(infos[GAUSS["vae"]], infos["mnist-d2-ae"])
    assert not runmeta.same_family(infos["mnist-d2-vae-b1"], infos[GAUSS["ae"]])
    for fam in FAMILIES:
        for b in BETAS:
            assert families.partner_ae(infos[f"{fam}-vae-b{b:g}"], aes)["name"] == f"{fam}-ae"
    fams = {k: [i["name"] for i in v] for k, v in families.families(list(infos.values())).items()}
    assert fams["shipped-mnist-d2-gauss"] == [GAUSS["ae"], GAUSS["vae"]]
    assert fams["shipped-mnist-d2"] == ["mnist-d2-ae"] + [f"mnist-d2-vae-b{b:g}" for b in BETAS]
    # The pages still open on the Bernoulli 2-D pair, and Compare beta on the 20-D family.
    assert families.preferred_vae(vaes, aes)["name"] == "mnist-d2-vae-b1"
    assert families.default_family(families.families(list(infos.values()))) == "shipped-mnist-d20"


def _posterior_and_reconstruction(name):
    """The exploration set's 10,000 test images x [N, 1, 28, 28], the mean posterior standard
    deviation, the reconstructions decoded from the posterior means [N, 1, 28, 28] and the means [N, d]."""
    model = load_checkpoint(CKPT / f"{name}.safetensors").model.eval()
    x = load_exploration("mnist", CKPT / "data").x
    with torch.no_grad():
        mu, logvar = model.encode(x)
        mean = torch.sigmoid(model.decode(mu))
    return x, (0.5 * logvar).exp().mean().item(), mean, mu


def _edge_energy(img):
    """Sum of squared differences of neighbouring pixels (rows and columns), mean over images:
    higher for sharper strokes. img: [N, 1, 28, 28]."""
    return ((img[..., 1:, :] - img[..., :-1, :]) ** 2).sum((1, 2, 3)).mean().item() + \
        ((img[..., :, 1:] - img[..., :, :-1]) ** 2).sum((1, 2, 3)).mean().item()


def test_sigma_0_1_outweighs_the_kl_so_the_gaussian_vae_behaves_more_like_its_ae():
    """sigma = 0.1 weighs the reconstruction as 50 * sum (x - x_hat)^2, far above the Bernoulli term on
    the same images: at beta = 1 the Gaussian VAE buys a larger KL (narrower posteriors), reconstructs
    at least as closely and as sharply, and its prior samples lose the variety the Bernoulli VAE's have."""
    gm = load_checkpoint(CKPT / f"{GAUSS['vae']}.safetensors").metrics
    bm = load_checkpoint(CKPT / "mnist-d2-vae-b1.safetensors").metrics
    assert gm["kl"] > 2 * bm["kl"], (gm["kl"], bm["kl"])
    x, g_sd, g_rec, g_mu = _posterior_and_reconstruction(GAUSS["vae"])
    _, b_sd, b_rec, b_mu = _posterior_and_reconstruction("mnist-d2-vae-b1")
    assert g_sd < 0.5 * b_sd, (g_sd, b_sd)
    # Its codes leave the prior's scale: far more of them lie beyond 3 prior standard deviations.
    g_out, b_out = [(mu.norm(dim=1) > 3).float().mean().item() for mu in (g_mu, b_mu)]
    assert g_out > 0.3 and b_out < 0.15, (g_out, b_out)
    g_sse = ((g_rec - x) ** 2).sum((1, 2, 3)).mean().item()
    b_sse = ((b_rec - x) ** 2).sum((1, 2, 3)).mean().item()
    assert g_sse < b_sse, (g_sse, b_sse)
    assert _edge_energy(g_rec) > 1.05 * _edge_energy(b_rec)
    # Prior samples: the N(0, I) prior covers only part of the wider code cloud, as with an AE.
    assert gm["prior_class_entropy_norm"] < bm["prior_class_entropy_norm"] - 0.1
    assert gm["prior_classifier_score"] < bm["prior_classifier_score"]


def test_the_gaussian_log_px_is_a_density_and_the_readme_says_so():
    """A Gaussian log p(x) is a log-density of continuous pixels: its reconstruction term carries
    784 * log(sigma * sqrt(2 pi)) (about -1085 nats at sigma = 0.1), so it is on another scale from
    any Bernoulli log-probability, and the README must not let a reader compare them."""
    m = load_checkpoint(CKPT / f"{GAUSS['vae']}.safetensors").metrics
    const = 784 * (math.log(GAUSS_SIGMA) + 0.5 * math.log(2 * math.pi))       # about -1084.8 nats
    # What is left of the reconstruction term is 50 * sum (x - x_hat)^2 under a posterior sample:
    # of the order of the 2-D reconstructions' squared error (about 30 per image), not of nats of a probability.
    assert 25 < (m["recon"] - const) / 50 < 40
    assert m["log_px"] is not None and m["log_px"] >= -m["loss"] - 0.01      # IW bound at or above the ELBO
    text = " ".join((CKPT / "README.md").read_text().split())
    assert "density" in text and "not comparable" in text


def test_every_map_the_latent_map_page_offers_ships_under_the_current_settings():
    """A shipped model's maps appear at once only if checkpoints/maps holds them under today's
    settings: the cache file's name hashes the engine and the effective settings, so changing a
    default without `python -m vae_core maps checkpoints` fails here, not in a class."""
    import numpy as np

    from explorer.models import map_cache_key
    from vae_core.projections import cache_path
    from vae_core.shipped import MAP_METHODS, MAP_POINTS, map_key
    missing, count = [], 0
    for info in list_checkpoints(CKPT):
        d = info["model_config"].latent_dim
        if d <= 2:
            continue
        ckpt = load_checkpoint(info["path"])
        digest = ckpt.digest
        # What `python -m vae_core maps` writes under is what the app looks for.
        assert map_key(digest, info["dataset"]) == map_cache_key(ckpt, info["dataset"])
        for n in MAP_POINTS:
            # With a cache key, only the codes' shape and dtype enter the name, not their values.
            shape_only = np.zeros((n, d), dtype=np.float32)
            for method in MAP_METHODS:
                count += 1
                if not cache_path(CKPT / "maps", shape_only, method, 0, map_key(digest, info["dataset"]),
                                  {}).is_file():
                    missing.append(f"{info['name']} {method} n={n}")
    assert count >= 6 * len(MAP_POINTS) * len(MAP_METHODS)
    assert not missing, f"not precomputed: {missing}; run `python -m vae_core maps checkpoints`"


def test_every_shipped_2d_vae_has_its_exact_ranking_and_one_of_them_recomputes_to_it():
    """The True posterior page ranks a shipped family at once from checkpoints/exact: every 2-D
    VAE needs its file (`python -m vae_core exact checkpoints` writes them), and what the page
    would compute must be what is stored (here for the β = 1 VAE: about 4 s)."""
    from vae_core.exact import RANK_IMAGES, ranking_id, ranking_values, read_ranking

    def shipped(ckpt, dataset):         # from checkpoints/ itself: never a user folder's copy
        return read_ranking(CKPT, ranking_id(ckpt.model, ckpt.digest), dataset)

    twod = [info for info in list_checkpoints(CKPT)
            if info["model_config"].kind == "vae" and info["model_config"].latent_dim == 2]
    assert len(twod) >= 7
    missing = [info["name"] for info in twod if shipped(load_checkpoint(info["path"]), info["dataset"]) is None]
    assert not missing, f"no exact ranking for {missing}; run `python -m vae_core exact checkpoints`"
    ckpt = load_checkpoint(CKPT / "mnist-d2-vae-b1.safetensors")
    fresh = ranking_values(ckpt.model, load_exploration("mnist", CKPT / "data").x[:RANK_IMAGES])
    stored = shipped(ckpt, "mnist")
    assert fresh.keys() == stored.keys()
    for key in fresh:
        assert abs(fresh[key] - stored[key]) < 1e-3, (key, fresh[key], stored[key])
