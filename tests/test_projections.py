"""2-D maps: shapes, seeds, the identity for d = 2, the disk cache, two threads at once."""
import threading

import numpy as np
import pytest

from vae_core import projections
from vae_core.errors import ConfigError, DataError

# Small settings keep t-SNE and UMAP to about a second each.
FAST = {"tsne": {"early_exaggeration_iter": 50, "n_iter": 50}, "umap": {"n_epochs": 50}, "pca": {}}


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 8
    y = np.repeat(np.arange(3), 40)
    return (centres[y] + rng.normal(size=(120, 6))).astype(np.float32), y


@pytest.mark.parametrize("method", projections.METHODS)
def test_shape_and_determinism(clusters, method):
    codes, y = clusters
    a = projections.project(codes, method, seed=1, **FAST[method])
    b = projections.project(codes, method, seed=1, **FAST[method])
    assert a.shape == (120, 2) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    # Well-separated clusters stay separated: each point's nearest neighbour on the map is of its cluster.
    dist = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    assert (y[dist.argmin(1)] == y).mean() > 0.95


def test_seed_changes_the_umap_map(clusters):
    # (t-SNE starts from PCA and its Barnes-Hut steps are deterministic, so its seed barely matters.)
    codes, _ = clusters
    a = projections.project(codes, "umap", seed=0, **FAST["umap"])
    b = projections.project(codes, "umap", seed=5, **FAST["umap"])
    assert not np.allclose(a, b)


@pytest.mark.parametrize("method", projections.METHODS)
def test_identity_when_two_dimensional(method):
    codes = np.random.default_rng(2).normal(size=(50, 2)).astype(np.float32)
    out = projections.project(codes, method)
    np.testing.assert_array_equal(out, codes)
    out[0, 0] = 99.0                                   # a copy, not a view of the caller's array
    assert codes[0, 0] != 99.0


def test_pca_matches_the_top_principal_plane(clusters):
    codes, _ = clusters
    xy = projections.project(codes, "pca")
    centred = codes - codes.mean(0)
    var_total = np.linalg.svd(centred, compute_uv=False) ** 2
    np.testing.assert_allclose((xy ** 2).sum(0), var_total[:2], rtol=1e-3)


def test_cache_hit_returns_the_same_array_and_writes_a_file(clusters, tmp_path, monkeypatch):
    codes, _ = clusters
    first = projections.project(codes, "tsne", seed=0, cache_dir=tmp_path, cache_key="ckpt-a", **FAST["tsne"])
    files = list(tmp_path.glob("tsne-*.npz"))
    assert len(files) == 1
    # A hit must not compute: make computing impossible and ask again.
    monkeypatch.setitem(projections._METHODS, "tsne", lambda *a, **k: pytest.fail("recomputed"))
    again = projections.project(codes, "tsne", seed=0, cache_dir=tmp_path, cache_key="ckpt-a", **FAST["tsne"])
    np.testing.assert_array_equal(first, again)
    # Another checkpoint, other settings or other points are other files.
    monkeypatch.setitem(projections._METHODS, "tsne", lambda c, s, **k: np.zeros((len(c), 2)))
    projections.project(codes, "tsne", seed=0, cache_dir=tmp_path, cache_key="ckpt-b", **FAST["tsne"])
    projections.project(codes, "tsne", seed=0, cache_dir=tmp_path, cache_key="ckpt-a", n_iter=120)
    projections.project(codes[:-1], "tsne", seed=0, cache_dir=tmp_path, cache_key="ckpt-a", **FAST["tsne"])
    assert len(list(tmp_path.glob("tsne-*.npz"))) == 4


def test_new_defaults_or_another_engine_never_read_an_old_map(clusters, tmp_path, monkeypatch):
    # A map cached under the old defaults (the caller passed no settings) must not come back
    # once the defaults or the engine change: the file name holds the effective settings.
    codes, _ = clusters
    calls = []
    monkeypatch.setitem(projections._METHODS, "tsne", lambda c, s, **k: calls.append(1) or np.zeros((len(c), 2)))
    projections.project(codes, "tsne", seed=0, cache_dir=tmp_path, cache_key="k")
    projections.project(codes, "tsne", seed=0, cache_dir=tmp_path, cache_key="k")
    assert len(calls) == 1
    monkeypatch.setitem(projections.TSNE_DEFAULTS, "n_iter", 321)
    projections.project(codes, "tsne", seed=0, cache_dir=tmp_path, cache_key="k")
    assert len(calls) == 2
    monkeypatch.setitem(projections.ENGINES, "tsne", "another library")
    assert projections.cached(codes, "tsne", 0, tmp_path, "k") is None
    projections.project(codes, "tsne", seed=0, cache_dir=tmp_path, cache_key="k")
    assert len(calls) == 3 and len(list(tmp_path.glob("tsne-*.npz"))) == 3


def test_damaged_cache_file_is_recomputed(clusters, tmp_path):
    codes, _ = clusters
    path = projections.cache_path(tmp_path, codes, "pca", 0, "k", {})
    tmp_path.mkdir(exist_ok=True)
    path.write_bytes(b"garbage")
    xy = projections.project(codes, "pca", cache_dir=tmp_path, cache_key="k")
    np.testing.assert_array_equal(xy, projections.project(codes, "pca"))
    assert projections._read_cache(path, len(codes)) is not None


def test_two_threads_at_once(clusters):
    codes, _ = clusters
    results, errors = {}, []

    def work(name, method, seed):
        try:
            results[name] = projections.project(codes, method, seed=seed, **FAST[method])
        except Exception as e:  # noqa: BLE001 - the test reports any failure below
            errors.append(e)

    jobs = [("u1", "umap", 0), ("u2", "umap", 0), ("t1", "tsne", 0), ("t2", "tsne", 0)]
    threads = [threading.Thread(target=work, args=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert set(results) == {"u1", "u2", "t1", "t2"}
    np.testing.assert_array_equal(results["u1"], results["u2"])
    np.testing.assert_array_equal(results["t1"], results["t2"])


def test_warmup_marks_umap_ready():
    seconds = projections.warmup_umap()
    assert seconds > 0 and projections.umap_ready()


def test_bad_inputs():
    with pytest.raises(ConfigError, match="isomap"):
        projections.project(np.zeros((10, 3)), "isomap")
    with pytest.raises(DataError):
        projections.project(np.zeros((10,)), "pca")
    with pytest.raises(DataError, match="NaN"):
        projections.project(np.full((10, 3), np.nan), "pca")


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_a_map_computed_on_a_ray_worker_is_the_one_computed_here(clusters, tmp_path, method):
    """vae_core.cluster.project_remote (a real local Ray: the session's head) gives the map
    project() gives in this process, same settings and seed; project(elsewhere=...) caches it here
    and, once cached, never sends it again."""
    from vae_core import cluster
    x, _ = clusters
    here = projections.project(x, method, seed=3)
    sent = []

    def remote(codes, m, seed):
        sent.append((m, seed))
        return cluster.project_remote(codes, m, seed)

    there = projections.project(x, method, seed=3, cache_dir=tmp_path, cache_key="k", elsewhere=remote)
    assert sent == [(method, 3)]
    np.testing.assert_allclose(there, here, atol=1e-4)
    again = projections.project(x, method, seed=3, cache_dir=tmp_path, cache_key="k", elsewhere=remote)
    assert sent == [(method, 3)] and np.array_equal(again, there)


def test_a_broken_map_from_elsewhere_is_refused_and_not_cached(clusters, tmp_path):
    x, _ = clusters
    with pytest.raises(DataError, match="computed elsewhere has shape"):
        projections.project(x, "tsne", cache_dir=tmp_path, cache_key="k",
                            elsewhere=lambda codes, m, seed: np.full((len(codes), 2), np.nan))
    assert not list(tmp_path.rglob("*.npz"))
