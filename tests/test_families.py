"""Which models belong together is read from each file's run record, never from its name: pairs in
the sidebar, families on the Compare β page, groups in the class gallery."""
import sys
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:          # the pages import `explorer` from the repository root
    sys.path.insert(0, str(REPO))

from explorer import families, gallery  # noqa: E402
from vae_core import runmeta  # noqa: E402
from vae_core.checkpoints import list_checkpoints, save_checkpoint  # noqa: E402
from vae_core.config import ModelConfig, TrainConfig  # noqa: E402
from vae_core.models import build_model  # noqa: E402

APP = str(REPO / "router.py")
COMPARE = str(REPO / "app_pages" / "6_Compare_beta.py")
GALLERY = str(REPO / "app_pages" / "8_Class_gallery.py")
METRICS = {"loss": 30.0, "recon": 28.0, "kl": 2.0, "knn_acc": 0.7}


def save(folder, name, kind="vae", beta=1.0, seed=0, group=None, owner="student-0a1b2c3d", hidden=(16,),
         dataset="digits", metrics=None, created=None):
    """An untrained tiny model (weights from a seeded generator: no training needed). group=None
    writes no run record, as files made before the record existed."""
    shape = (1, 8, 8) if dataset == "digits" else (1, 28, 28)
    cfg = ModelConfig(kind=kind, latent_dim=2, hidden=hidden, image_shape=shape)
    model = build_model(cfg, generator=torch.Generator().manual_seed(seed))
    tc = TrainConfig(dataset=dataset, beta=beta if kind == "vae" else 0.0, seed=seed)
    run = None if group is None else runmeta.make(kind, beta, seed, group=group, owner=owner, created=created)
    return save_checkpoint(Path(folder) / name, model, tc, dataset=dataset, metrics=metrics, run=run)


def infos_of(folder) -> dict:
    """{name: info} as the pages see them (configs as dicts)."""
    out = {}
    for info in list_checkpoints(folder):
        info["model_config"] = info["model_config"].to_dict()
        info["train_config"] = info["train_config"].to_dict() if info["train_config"] else None
        out[info["name"]] = info
    return out


def no_exception(at):
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def env(tmp_path, monkeypatch):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shipped.mkdir()
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(shipped))
    monkeypatch.setenv("VAE_USER_DIR", str(user))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    return shipped, user


# ---------------------------------------------------------------- pairs


def test_a_vae_named_with_a_job_suffix_pairs_with_the_ae_of_its_run(tmp_path):
    save(tmp_path, "mnist-d2-vae-b1-3f2a", "vae", group="job-3f2a")
    save(tmp_path, "my first autoencoder", "ae", group="job-3f2a")
    save(tmp_path, "mnist-d2-ae", "ae", group="job-9999")           # the name a name-parser would pick
    infos = infos_of(tmp_path)
    vae = infos["mnist-d2-vae-b1-3f2a"]
    aes = [i for i in infos.values() if i["model_config"]["kind"] == "ae"]
    assert families.partner_ae(vae, aes)["name"] == "my first autoencoder"
    assert families.preferred_ae(vae, aes)["name"] == "my first autoencoder"
    fams = families.families(list(infos.values()))
    assert {k: [i["name"] for i in v] for k, v in fams.items()} == {
        "job-3f2a": ["my first autoencoder", "mnist-d2-vae-b1-3f2a"]}


def test_the_sidebar_opens_on_the_pair_of_one_run(env):
    shipped, _ = env
    save(shipped, "mnist-d2-vae-b1-3f2a", "vae", group="job-3f2a")
    save(shipped, "zz-anything", "ae", group="job-3f2a")
    save(shipped, "mnist-d2-ae", "ae", group="job-9999")
    at = AppTest.from_file(APP, default_timeout=60).run()
    no_exception(at)
    assert at.session_state["sel_vae"] == "mnist-d2-vae-b1-3f2a"
    assert at.session_state["sel_ae"] == "zz-anything"


def test_colliding_names_from_different_runs_are_not_paired(tmp_path):
    save(tmp_path, "digits-d2-vae-b1", "vae", group="job-aaaa")
    save(tmp_path, "digits-d2-ae", "ae", group="job-bbbb")
    infos = infos_of(tmp_path)
    assert families.partner_ae(infos["digits-d2-vae-b1"], [infos["digits-d2-ae"]]) is None
    assert families.families(list(infos.values())) == {}
    # The sidebar still shows an AE beside it (one of the same latent size), but not as its partner.
    assert families.preferred_ae(infos["digits-d2-vae-b1"], [infos["digits-d2-ae"]])["name"] == "digits-d2-ae"


def test_a_run_record_on_one_side_only_does_not_pair(tmp_path):
    save(tmp_path, "v", "vae", group="job-aaaa")
    save(tmp_path, "a", "ae")                                      # no record: an older file
    infos = infos_of(tmp_path)
    assert families.partner_ae(infos["v"], [infos["a"]]) is None


def test_files_without_a_run_record_pair_only_on_the_same_data_network_and_seed(tmp_path):
    save(tmp_path, "v", "vae", seed=3)
    save(tmp_path, "ae-same", "ae", seed=3)
    save(tmp_path, "ae-other-seed", "ae", seed=4)
    save(tmp_path, "ae-other-net", "ae", seed=3, hidden=(24,))
    save(tmp_path, "ae-other-data", "ae", seed=3, dataset="mnist")
    infos = infos_of(tmp_path)
    assert all(infos[n]["run"] is None for n in infos)
    v = infos["v"]
    assert families.partner_ae(v, [infos["ae-same"]])["name"] == "ae-same"
    for other in ("ae-other-seed", "ae-other-net", "ae-other-data"):
        assert families.partner_ae(v, [infos[other]]) is None, other
    fams = families.families(list(infos.values()))
    assert sorted(sorted(i["name"] for i in m) for m in fams.values()) == [["ae-same", "v"]]


def test_the_default_family_prefers_the_shipped_20d_then_2d_then_the_largest():
    fams = {"job-a": [1, 2, 3], "shipped-mnist-d2": [1, 2], "shipped-mnist-d20": [1, 2]}
    assert families.default_family(fams) == "shipped-mnist-d20"
    del fams["shipped-mnist-d20"]
    assert families.default_family(fams) == "shipped-mnist-d2"
    del fams["shipped-mnist-d2"]
    fams["job-b"] = [1, 2, 3, 4]
    assert families.default_family(fams) == "job-b"
    assert families.default_family({}) is None


@pytest.mark.parametrize("n", [1, 2, 8, 9, 20])
def test_spread_keeps_at_most_eight_with_both_ends(n):
    members = list(range(n))
    kept = families.spread(members)
    assert len(kept) == min(n, 8) and kept == sorted(set(kept))
    assert kept[0] == 0 and kept[-1] == n - 1


# ---------------------------------------------------------------- Compare β


def test_a_family_of_nine_opens_on_compare_beta(env):
    shipped, _ = env
    save(shipped, "nine-ae", "ae", group="sweep-nine", metrics=METRICS)
    betas = [0.25, 0.5, 1, 2, 3, 4, 6, 8]
    for b in betas:
        save(shipped, f"nine-vae-{b:g}", "vae", beta=b, group="sweep-nine", metrics=METRICS)
    at = AppTest.from_file(COMPARE, default_timeout=180).run()
    no_exception(at)
    chosen = at.multiselect(key="cb_models").value
    assert len(chosen) == 8 and chosen[0] == "nine-ae" and chosen[-1] == "nine-vae-8"
    assert any("9 models" in c.value and "at most 8" in c.value for c in at.caption)
    assert len(at.table[0].value) == 8


def test_compare_beta_groups_by_run_not_by_name(env):
    shipped, _ = env
    for name, kind, beta in (("a-ae", "ae", 0), ("b-vae-b1", "vae", 1), ("c", "vae", 4)):
        save(shipped, name, kind, beta=beta, group="job-one", metrics=METRICS)
    save(shipped, "a-vae-b2", "vae", beta=2, group="job-two", metrics=METRICS)    # a name-parser's a-*
    save(shipped, "a-vae-b8", "vae", beta=8, group="job-two", metrics=METRICS)
    at = AppTest.from_file(COMPARE, default_timeout=180).run()
    no_exception(at)
    assert at.multiselect(key="cb_models").value == ["a-ae", "b-vae-b1", "c"]
    at.selectbox(key="cb_family").set_value("job-two").run()
    no_exception(at)
    assert at.multiselect(key="cb_models").value == ["a-vae-b2", "a-vae-b8"]


# ---------------------------------------------------------------- class gallery


def test_the_gallery_shows_saved_models_grouped_by_run(env):
    _, user = env
    save(user, "alice-ae", "ae", group="job-alice", owner="student-aaaa1111", metrics=METRICS)
    save(user, "alice-vae", "vae", beta=4, group="job-alice", owner="student-aaaa1111",
         metrics={**METRICS, "kl": float("nan"), "knn_acc": "high"})
    at = AppTest.from_file(GALLERY, default_timeout=60).run()
    no_exception(at)
    headers = [s.value for s in at.subheader]
    assert len(headers) == 1 and "2 models" in headers[0] and "student-aaaa1111" in headers[0]
    assert any("student-aaaa1111" in c.value and "job-alice" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert table["model"].tolist() == ["alice-ae", "alice-vae"]
    assert table["β"].tolist() == ["— (AE)", "4"]
    assert table["KL"].tolist() == ["2.00", "—"] and table["k-NN accuracy"].tolist() == ["0.700", "—"]
    assert len(at.get("image")) == 2                                 # one prior-sample strip per model


def test_the_gallery_puts_other_runs_in_their_own_groups_and_honours_the_window(env):
    import time
    _, user = env
    save(user, "bob-vae", "vae", group="job-bob", owner="student-bbbb2222")
    save(user, "old-vae", "vae", group="job-old", created=time.time() - 30 * 3600)
    at = AppTest.from_file(GALLERY, default_timeout=60).run()
    no_exception(at)
    assert [s.value for s in at.subheader] == ["digits d=2 · 1 model · student-bbbb2222 · job-bob"]
    at.selectbox(key="cg_window").set_value("all").run()
    no_exception(at)
    assert len(at.subheader) == 2


def test_the_gallery_explains_an_empty_folder(env):
    at = AppTest.from_file(GALLERY, default_timeout=60).run()
    no_exception(at)
    text = " ".join(i.value for i in at.info)
    assert "No models" in text and "Train" in text and "β sweep" in text
    assert not at.subheader


@pytest.mark.parametrize("value, shown", [(1.5, "1.50"), (2, "2.00"), (None, "—"), (float("nan"), "—"),
                                          (float("inf"), "—"), ("3", "—"), (True, "—"), ([1.0], "—")])
def test_gallery_numbers_format_only_finite_numbers(value, shown):
    assert gallery.number(value) == shown
