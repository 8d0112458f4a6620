"""The `http://` store path against a real Milvus standalone server (the `milvus` package: the Milvus
server binary inside the wheel, started on free 127.0.0.1 ports with its data in a temporary folder),
not only Milvus Lite: the command lines build and search a folder in it, an interrupted build
resumes without duplicates, a server that goes down mid-build is a clear message, a collection of
another dimension is refused, and the app searches it."""
from __future__ import annotations

import json

import milvus  # noqa: F401  (requirements-milvus.txt pins it: a missing package must fail here, not skip)
import numpy as np
import pytest

from sbir_core import Gallery, load_backend
from sbir_core.store import PhotoRecord, StoreError, open_store
from sbir_core.store.build import index_folder
from sbir_core.store.milvus import start_local_server
from tests.test_stores import EXAMPLES, _folder, _run

class Server:
    """One Milvus standalone server on loopback ports (`start_local_server`); `stop` ends it."""

    def __init__(self, data_dir):
        self.proc, self.uri = start_local_server(data_dir)

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("milvus-data"))
    yield s
    s.stop()


def test_command_lines_build_a_folder_into_the_server_and_search_it(server, tmp_path):
    folder = _folder(tmp_path, n_per_class=2)
    uri = f"{server.uri}?gallery=cli"
    r = _run("sbir_core.store.build", str(folder), "--store", uri, "--backends", "triplet", "--batch", "4")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr          # 1: the broken photo, named
    assert "triplet: 6 indexed now, 0 already stored" in r.stdout and "cup/broken.jpg" in r.stderr
    r = _run("sbir_core.search", str(EXAMPLES[0]), "--gallery", uri, "--backend", "triplet", "--k", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["store"] == server.uri and out["photos"] == 6 and [x["rank"] for x in out["results"]] == [1, 2, 3]
    # the same top 3 as the same photos searched in memory
    b = load_backend("triplet", threads=1)
    mem = b.search(str(EXAMPLES[0]), Gallery.from_folder(folder), k=3)
    assert [x["id"] for x in out["results"]] == mem.ids
    r = _run("sbir_core.search", str(EXAMPLES[0]), "--gallery", f"{uri}&consistency=bounded", "--backend", "triplet",
             "--k", "3", "--json")                          # served without waiting for the time tick: same answer
    assert r.returncode == 0 and [x["id"] for x in json.loads(r.stdout)["results"]] == mem.ids, r.stderr


def test_an_interrupted_build_resumes_and_duplicates_nothing(server, tmp_path):
    folder = _folder(tmp_path)
    b = load_backend("triplet", threads=1)
    store = open_store(f"{server.uri}?gallery=resume")

    def interrupt(done: int, total: int, rate: float) -> None:         # Ctrl-C after the first batch
        raise KeyboardInterrupt

    rep = index_folder(folder, store, [b], batch=5, progress=interrupt)
    assert rep.interrupted and store.count(b.feature_key) == 5
    rep = index_folder(folder, store, [b], batch=5)
    assert rep.already["triplet"] == 5 and rep.indexed["triplet"] == 7 and store.count(b.feature_key) == 12
    rep = index_folder(folder, store, [b], batch=5)                     # again: nothing new, nothing doubled
    assert rep.indexed["triplet"] == 0 and store.count(b.feature_key) == 12
    ids = [r.id for chunk in store.photos(b.feature_key) for r in chunk]
    assert len(ids) == len(set(ids)) == 12
    store.close()


def test_another_dimension_under_the_same_key_is_refused(server):
    store = open_store(f"{server.uri}?gallery=dims")
    store.add("triplet-x", np.eye(4, dtype=np.float32), [PhotoRecord(f"p{i}") for i in range(4)])
    with pytest.raises(StoreError, match="holds 4-dimensional vectors, got 8"):
        store.add("triplet-x", np.eye(8, dtype=np.float32), [PhotoRecord(f"q{i}") for i in range(8)])
    with pytest.raises(StoreError, match="dimensions"):
        store.search("triplet-x", np.ones(8, np.float32), 3)
    with pytest.raises(StoreError, match="holds no vectors"):
        store.search("classifier-y", np.ones(4, np.float32), 3)                # a backend it was not built by
    store.close()


def test_app_searches_a_gallery_on_the_server(server, tmp_path, monkeypatch):
    st_testing = pytest.importorskip("streamlit.testing.v1")
    from tests.test_app import APP, DRAWING
    folder = _folder(tmp_path, n_per_class=3)
    uri = f"{server.uri}?gallery=app"
    index_folder(folder, open_store(uri), [load_backend("triplet", threads=1)], batch=8)
    monkeypatch.setenv("SBIR_STORE", uri)
    at = st_testing.AppTest.from_file(APP, default_timeout=180)
    at.session_state["canvas_inject"] = DRAWING
    at.session_state["gallery_key_picker"] = "store"
    at.session_state["backend_picker"] = "triplet"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert sum(m.value.count("class='card-name'") for m in at.markdown) == 9       # every stored photo
    at.switch_page("pages/galleries.py").run()                                  # its size and index kind
    assert not at.exception
    line = f"Vector store {server.uri} · HNSW index · photos per backend: triplet 9"
    assert any(c.value == line for c in at.caption), [c.value for c in at.caption]


def test_a_server_that_goes_down_mid_build_is_a_clear_message(server, tmp_path):
    """Last in this module: the server is stopped after the first batch of a build. The build stops with
    a StoreError naming the server, not a traceback from deep inside the client. (A second server
    cannot run beside the first: the package's health port is fixed.)"""
    folder = _folder(tmp_path)
    store = open_store(f"{server.uri}?gallery=down")

    def stop_server(done: int, total: int, rate: float) -> None:
        if server.proc.running:
            server.stop()

    with pytest.raises(StoreError, match="failed while .*is the server still running"):
        index_folder(folder, store, [load_backend("triplet", threads=1)], batch=5, progress=stop_server)
    with pytest.raises(StoreError, match="cannot reach a Milvus server"):
        open_store(server.uri)
