"""Vector stores (sbir_core.store): the in-process store and real Milvus Lite (pymilvus + milvus-lite,
embedded, a local .db) give the same rankings on the same features; a folder indexed into a store
resumes after an interrupted build, follows photos added, changed and removed, names unreadable
files; store galleries search like in-memory ones; bad URIs get a clear message."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import milvus_lite  # noqa: F401  (requirements-test.txt installs both: a missing one must fail here, not skip)
import numpy as np
import pymilvus  # noqa: F401
import pytest

from sbir_core import Gallery, load_backend
from sbir_core.config import REPO_ROOT
from sbir_core.store import MemoryStore, PhotoRecord, StoreError, is_store_uri, open_store
from sbir_core.bench.stores_photos import same_up_to_ties as same_ranking
from sbir_core.store.build import index_folder, list_folder


EXAMPLES = sorted((REPO_ROOT / "assets" / "examples").glob("*.png"))


def _records(g: Gallery) -> list[PhotoRecord]:
    return [PhotoRecord(pid, str(src), lab or "", "") for pid, src, lab in zip(g.ids, g.sources, g.labels)]


@pytest.fixture(scope="module")
def bundled_lite(tmp_path_factory):
    """The bundled gallery's triplet and classifier features (its committed embeddings) in a Milvus Lite
    file and in the in-process store, as `sbir_core.store.build FOLDER --store` writes them."""
    path = tmp_path_factory.mktemp("lite") / "bundled.db"
    g = Gallery.bundled()
    lite, mem = open_store(str(path)), MemoryStore()
    backends = {n: load_backend(n, threads=1) for n in ("triplet", "classifier")}
    for b in backends.values():
        vecs = b.store_vectors(g.features(b), g.labels)
        lite.add(b.feature_key, vecs, _records(g))
        mem.add(b.feature_key, vecs, _records(g))
    yield path, lite, mem, backends, g
    lite.close()


def test_same_top_k_as_in_process_store(bundled_lite):
    """Exact store and Milvus Lite's HNSW return the same top 10, in the same order, on real features."""
    _, lite, mem, backends, g = bundled_lite
    b = backends["triplet"]
    feats = g.features(b)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(g), 20, replace=False):
        q = feats[i] + 0.3 * rng.standard_normal(feats.shape[1]).astype(np.float32)
        q /= np.linalg.norm(q)
        ids_m, s_m = mem.search(b.feature_key, q, 10)
        ids_l, s_l = lite.search(b.feature_key, q, 10)
        assert same_ranking(ids_m, s_m, ids_l, s_l)
        np.testing.assert_allclose(s_l, s_m, atol=1e-5)
        exact = np.argsort(-(feats @ q), kind="stable")[:10]
        assert same_ranking([g.ids[j] for j in exact], (feats @ q)[exact], ids_m, s_m)
    assert lite.count(b.feature_key) == mem.count(b.feature_key) == len(g)


def test_store_gallery_searches_like_the_bundled_one(bundled_lite):
    """Sketches through `backend.search`: the Milvus Lite gallery gives the bundled gallery's top 10 for
    triplet (ids and scores), and for classifier the same classes in the same order."""
    path, _, _, backends, g = bundled_lite
    sg = Gallery.from_store(str(path))
    assert sg.store is not None and len(sg) == len(g) and sorted(sg.ids) == sorted(g.ids)
    for sketch in EXAMPLES[:6]:
        a, b = backends["triplet"].search(sketch, g, k=10), backends["triplet"].search(sketch, sg, k=10)
        assert same_ranking(a.ids, a.scores, b.ids, b.scores)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-5)
        assert [sg.sources[i] for i in b.indices] == [str(g.sources[g.ids.index(pid)]) for pid in b.ids]
        a, b = backends["classifier"].search(sketch, g, k=10), backends["classifier"].search(sketch, sg, k=10)
        assert b.labels == a.labels
        np.testing.assert_allclose(b.scores, a.scores, rtol=2e-4)
    top = float(backends["triplet"].search(EXAMPLES[0], g, k=1).scores[0])
    t = min(backends["triplet"].default_threshold, top - 0.02)     # the slider's start, or just under the best
    within = backends["triplet"].search_within(EXAMPLES[0], sg, t)
    assert len(within.ids) > 0 and (within.scores >= t).all()
    ref = backends["triplet"].search_within(EXAMPLES[0], g, t)
    assert same_ranking(ref.ids, ref.scores, within.ids, within.scores)
    assert sg.image(int(within.indices[0])).size[0] > 0              # photos read from their files on demand


def test_first_row_hedge_is_the_same_in_memory_and_in_a_store(bundled_lite):
    """A reading split between cat (0.5) and dog (0.3): with the hedge at 0.5 the first row holds the
    best cat, then the best dog, then more cats - in memory and through Milvus Lite alike; cards get
    P(class), not the lift; without the hedge the whole row is cats."""
    path, _, _, backends, g = bundled_lite
    sg = Gallery.from_store(str(path))
    b = backends["classifier"]
    pos = b.class_positions
    q = np.full((1, len(pos)), 0.1 / (len(pos) - 3), np.float32)
    q[0, pos["cat"]], q[0, pos["dog"]], q[0, pos["fish"]] = 0.5, 0.3, 0.1
    share = b.meta.get("first_row_hedge", 0.0)
    try:
        b.meta["first_row_hedge"] = 0.5
        rows = [gal.rank(b, q, 8) for gal in (g, sg)]
        labels = [[gal.labels[i] for i in idx] for gal, (idx, _) in zip((g, sg), rows)]
        assert labels[0][:4] == labels[1][:4] == ["cat", "dog", "cat", "cat"]
        assert [g.ids[i] for i in rows[0][0][:2]] == [sg.ids[i] for i in rows[1][0][:2]]
        for _, scores in rows:
            np.testing.assert_allclose(scores[:2], [0.5, 0.3], atol=1e-3)
        b.meta["first_row_hedge"] = 0.0
        idx, _ = g.rank(b, q, 8)
        assert [g.labels[i] for i in idx[:4]] == ["cat"] * 4
    finally:
        b.meta["first_row_hedge"] = share


def _folder(tmp_path: Path, n_per_class: int = 4) -> Path:
    """A small labelled folder of real photos from the bundled gallery (copies), plus one broken file."""
    g = Gallery.bundled()
    out = tmp_path / "photos"
    picked: dict[str, list[Path]] = {}
    for src, lab in zip(g.sources, g.labels):
        if lab in ("apple", "cat", "cup") and len(picked.setdefault(lab, [])) < n_per_class:
            picked[lab].append(Path(src))
    for lab, files in picked.items():
        (out / lab).mkdir(parents=True)
        for f in files:
            shutil.copy(f, out / lab / f.name)
    (out / "cup" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return out


def test_build_resumes_follows_changes_and_names_unreadable_files(tmp_path):
    folder = _folder(tmp_path)
    listed = list(list_folder(folder))
    assert len(listed) == 13 and listed[0].id.startswith("apple/") and listed[0].label == "apple"
    b = load_backend("triplet", threads=1)
    store = open_store(str(tmp_path / "g.db"))
    key = b.feature_key

    def interrupt(done: int, total: int, rate: float) -> None:   # Ctrl-C after the first batch was stored
        raise KeyboardInterrupt

    rep = index_folder(folder, store, [b], batch=5, progress=interrupt)
    assert rep.interrupted and store.count(key) == 5

    rep = index_folder(folder, store, [b], batch=5)                  # resumes: the 5 stored are skipped
    assert not rep.interrupted and rep.already["triplet"] == 5 and rep.indexed["triplet"] == 7
    assert store.count(key) == 12
    assert len(rep.unreadable) == 1 and rep.unreadable[0].startswith("cup/broken.jpg (")

    rep = index_folder(folder, store, [b], batch=5)                  # nothing new: nothing encoded
    assert rep.indexed["triplet"] == 0 and rep.already["triplet"] == 12

    gone = sorted((folder / "cat").iterdir())[0]                      # a photo removed, one added
    gone.unlink()
    g = Gallery.bundled()
    shutil.copy(g.sources[g.labels.index("dog")], folder / "cat" / "new_cat.jpg")
    rep = index_folder(folder, store, [b], batch=5)
    assert rep.removed["triplet"] == 1 and rep.indexed["triplet"] == 1 and store.count(key) == 12
    ids = {r.id for chunk in store.photos(key) for r in chunk}
    assert f"cat/{gone.stem}" not in ids and "cat/new_cat" in ids
    # the added photo is found: its own stored vector ranks it first
    assert store.search(key, store.get(key, ["cat/new_cat"])[0], 1)[0] == ["cat/new_cat"]

    c = load_backend("classifier", threads=1)                         # a second backend: same photos, own vectors
    rep = index_folder(folder, store, [b, c], batch=5)
    assert rep.indexed == {"triplet": 0, "classifier": 12} and store.dim(c.feature_key) == 2 * len(c.meta["classes"])

    changed = folder / "apple" / sorted(p.name for p in (folder / "apple").iterdir())[1]
    os.utime(changed, ns=(1, 1))                                      # a changed file: a new stamp
    rep = index_folder(folder, store, [b, c], batch=5)
    assert rep.indexed == {"triplet": 1, "classifier": 1}
    store.close()


def test_store_apis_agree_on_add_delete_replace(tmp_path):
    """The same calls on both stores leave the same contents."""
    rng = np.random.default_rng(1)
    v = rng.standard_normal((50, 8)).astype(np.float32)
    recs = [PhotoRecord(f"p{i}", f"/x/{i}.jpg", "cat", "1:1") for i in range(50)]
    stores = [MemoryStore(), open_store(str(tmp_path / "s.db"))]
    for st in stores:
        st.add("k", v, recs)
        st.delete("k", ["p3", "p7", "nope"])
        st.add("k", v[:1] * 2, [PhotoRecord("p0", "/x/0.jpg", "dog", "2:2")])    # replaced, not duplicated
    mem, lite = stores
    for st in stores:
        assert st.count("k") == 48 and st.keys() == ["k"] and st.dim("k") == 8
        assert st.stamps("k", ["p0", "p3", "p9"]) == {"p0": "2:2", "p9": "1:1"}
        np.testing.assert_allclose(st.get("k", ["p0", "p9"]), np.stack([v[0] * 2, v[9]]), rtol=1e-6)
        with pytest.raises(StoreError, match="p3"):
            st.get("k", ["p3"])
        with pytest.raises(StoreError, match="holds no vectors"):
            st.search("other", v[0], 3)
        with pytest.raises(StoreError, match="dimensions"):
            st.search("k", v[0][:4], 3)
    q = v[11]
    assert mem.search("k", q, 10)[0] == lite.search("k", q, 10)[0]
    assert mem.within("k", q, 0.0, 100)[0] == lite.within("k", q, 0.0, 100)[0]
    lite.close()


@pytest.mark.parametrize("uri, message", [
    ("nonsense", "is not one of"),
    ("ftp://host/x", "unknown scheme 'ftp'"),
    ("http://:19530", "no host name"),
    ("http://host:99999", "port must be a number"),
    ("http://host:19530/some/path", "unexpected path"),
    ("/no/such/folder/photos.db", "does not exist"),
    ("./photos.db?index=LSH", "unknown index"),
    ("./photos.db?ef=-3", "positive whole number"),
    ("./photos.db?colour=red", "unknown option 'colour'"),
    ("./photos.db?consistency=weak", "consistency must be one of strong, bounded"),
    ("http://127.0.0.1:9", "cannot reach a Milvus server"),       # discard port: nothing answers
])
def test_bad_uris_get_a_clear_message(uri, message):
    with pytest.raises(StoreError, match=message):
        open_store(uri)


def test_missing_pymilvus_is_a_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)                   # as if not installed
    with pytest.raises(StoreError, match="needs the pymilvus package.*requirements-milvus.txt"):
        open_store("./photos.db")


def test_uri_forms():
    assert is_store_uri("./a.db") and is_store_uri("http://h:19530") and is_store_uri("memory")
    assert not is_store_uri("galleries/bundled")
    assert isinstance(open_store("memory"), MemoryStore) and isinstance(open_store(None), MemoryStore)


def test_server_uri_through_a_local_milvus_server(tmp_path):
    """The http:// path, against a Milvus gRPC server on 127.0.0.1 (Milvus Lite's own server,
    started here as `milvus-lite server` would run it)."""
    from milvus_lite.adapter.grpc.server import start_server_in_thread
    server, db, port = start_server_in_thread(str(tmp_path / "server-data"), host="127.0.0.1", port=0)
    try:
        st = open_store(f"http://127.0.0.1:{port}?gallery=stock")
        v = np.eye(4, dtype=np.float32)
        st.add("triplet-x", v, [PhotoRecord(f"p{i}") for i in range(4)])
        assert st.search("triplet-x", v[2], 2)[0][0] == "p2" and st.keys() == ["triplet-x"]
        assert open_store(f"http://127.0.0.1:{port}?gallery=other").keys() == []     # galleries kept apart
        st.close()
    finally:
        server.stop(grace=0)
        db.close()


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SBIR_STORE", None)
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


def test_command_lines_build_and_search(tmp_path):
    """`sbir_core.store.build FOLDER --store` then `search SKETCH --gallery STORE --json`, as a script would."""
    folder = _folder(tmp_path, n_per_class=2)
    db = tmp_path / "cli.db"
    r = _run("sbir_core.store.build", str(folder), "--store", str(db), "--backends", "triplet", "--batch", "4")
    assert r.returncode == 1, r.stderr                                     # 1: an unreadable photo
    assert "triplet: 6 indexed now, 0 already stored" in r.stdout and "cup/broken.jpg" in r.stderr
    assert "Traceback" not in r.stderr
    r = _run("sbir_core.search", str(EXAMPLES[0]), "--gallery", str(db), "--backend", "triplet", "--k", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["results"]) == 3 and out["store"] == str(db) and out["results"][0]["rank"] == 1
    assert all(Path(x["file"]).is_file() for x in out["results"])
    from sbir_core import search                                            # refusals, in this process
    from sbir_core.store import build
    with pytest.raises(SystemExit, match="holds no features of classifier"):
        search.main([str(EXAMPLES[0]), "--gallery", str(db), "--backend", "classifier"])
    with pytest.raises(SystemExit, match="unknown scheme 'ftp'"):
        build.main([str(folder), "--store", "ftp://x", "--backends", "triplet"])
    with pytest.raises(SystemExit, match="no such folder"):
        build.main([str(tmp_path / "nowhere"), "--store", str(db), "--backends", "triplet"])


def test_app_searches_a_store_gallery(bundled_lite, monkeypatch):
    """SBIR_STORE names the Milvus Lite store: the app offers it as a gallery and searches it, with
    photos read from their files for the cards; a backend the store lacks gets a message, not a crash."""
    st_testing = pytest.importorskip("streamlit.testing.v1")
    from tests.test_app import APP, DRAWING
    path = bundled_lite[0]
    monkeypatch.setenv("SBIR_STORE", str(path))
    for backend, ok in (("triplet", True), ("classifier", True), ("pretrained", False)):
        at = st_testing.AppTest.from_file(APP, default_timeout=180)
        at.session_state["canvas_inject"] = DRAWING
        at.session_state["gallery_key_picker"] = "store"
        at.session_state["backend_picker"] = backend
        at.run()
        assert not at.exception, backend
        assert at.session_state["gallery_key_picker"] == "store"
        cards = any("<div class='card-name" in m.value for m in at.markdown)
        if ok:
            assert cards, backend
        else:
            assert not cards and any("holds no features of pretrained" in e.value for e in at.error), backend
