"""The benchmark's building blocks on tiny inputs: recall, ground truth, HNSW, percentiles, report."""
from __future__ import annotations

import numpy as np
import pytest

from sbir_core.bench import report, scaling
from sbir_core.heldout import effective_dimension
from sbir_core.bench.speed import percentiles
from sbir_core.index import ExactIndex


def test_recall_at_k_hand_worked():
    found = np.array([[0, 1, 2], [5, 6, -1]])      # second query: the index returned only two
    truth = np.array([[0, 1, 3], [5, 6, 7]])
    assert scaling.recall_at_k(found, truth) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert scaling.recall_at_k(truth, truth) == 1.0


def test_exact_top_k_and_hnsw_on_a_hand_checkable_case():
    vectors = np.eye(8, dtype=np.float32)                       # 8 orthogonal unit vectors
    queries = np.array([[2, 1, 0, 0, 0, 0, 0, 0],               # nearest: e0, then e1
                        [0, 0, 0, 0, 0, 1, 3, 0]], np.float32)  # nearest: e6, then e5
    truth = scaling.exact_top_k(ExactIndex(vectors), queries, 2)
    assert truth.tolist() == [[0, 1], [6, 5]]
    h = scaling.hnsw_sweep(vectors, queries, truth, k=2, m=4, ef_construction=16, ef_search=(16,), build_threads=1)
    assert h["sweep"][0]["recall"] == 1.0                       # efSearch >= N: the search is exhaustive
    wrong = np.array([[0, 2], [3, 4]])                          # 1 of 2 right, then 0 of 2
    assert scaling.recall_at_k(wrong, truth) == pytest.approx(0.25)


def test_exact_index_faiss_scan_and_numpy_agree_with_brute_force(monkeypatch):
    """Both exact paths (FAISS's flat scan, numpy without faiss) return the brute-force top k with its
    scores; `vectors` is the same unit-row matrix either way; `within` keeps exactly the items over t."""
    from sbir_core import index as index_mod
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((500, 24)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = rng.standard_normal(24).astype(np.float32)
    brute = unit @ (q / np.linalg.norm(q))
    best = np.argsort(-brute)[:10]
    with_faiss = ExactIndex(vectors)
    assert with_faiss.flat is not None
    monkeypatch.setattr(index_mod, "_faiss_flat", lambda v: None)
    plain = ExactIndex(vectors)
    assert plain.flat is None
    for ix in (with_faiss, plain):
        assert np.allclose(ix.vectors, unit, atol=1e-6) and len(ix) == 500
        idx, s = ix.search(q, 10)
        assert idx.tolist() == best.tolist() and np.allclose(s, brute[best], atol=1e-5)
        assert ix.search(q, 1000)[0].shape == (500,)
        inside, s_in = ix.within(q, 0.3)
        assert sorted(inside.tolist()) == np.nonzero(brute >= 0.3)[0].tolist() and np.all(np.diff(s_in) <= 0)


def test_scaling_structure_and_exact_recall_is_one():
    out = scaling.run_scaling((2_000,), exact_queries=3, ann_queries=3, uniform_hnsw_sizes=(2_000,),
                              ef_search=(8, 256), build_threads=1)
    kinds = [(r["kind"], r["n"]) for r in out["rows"]]
    assert kinds == [("uniform", 2_000), ("lowrank", 2_000)]
    uni, low = out["rows"]
    assert uni["exact_recall"] == 1.0                           # exact search vs its own ground truth
    assert uni["exact_ms"]["n"] == 3 and uni["exact_ms"]["p50"] <= uni["exact_ms"]["p90"]
    assert "exact_ms" not in low
    for row in (uni, low):
        sweep = row["hnsw"]["sweep"]
        assert [s["ef_search"] for s in sweep] == [8, 256]
        assert all(0.0 <= s["recall"] <= 1.0 for s in sweep)
        assert sweep[1]["recall"] >= sweep[0]["recall"]         # a wider search never finds fewer here
        op = row["hnsw"]["operating_point"]
        assert op is None or op["recall"] >= 0.95
    assert out["lowrank"]["effective_dim"] == pytest.approx(scaling.effective_dimension_lowrank(256), abs=0.05)


def test_lowrank_vectors_are_unit_and_mostly_in_the_subspace():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((64, 4)))[0].astype(np.float32)
    v = scaling.lowrank_vectors(500, 64, rng, basis)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    in_span = np.linalg.norm(v @ basis, axis=1) ** 2            # energy inside the subspace
    assert 0.85 < in_span.mean() < 0.95                         # 90% by construction (+ noise's share)


def test_effective_dimension_counts_equal_directions():
    x = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], np.float64)
    assert effective_dimension(x) == pytest.approx(2.0)
    assert scaling.effective_dimension_lowrank(256) > scaling.LOWRANK_RANK        # noise adds a little


def test_percentiles():
    p = percentiles(list(range(1, 11)))
    assert p == {"p50": 5.5, "p90": 9.1, "n": 10}


def test_quality_and_report_on_real_data_with_random_baseline(sketchy_dir):
    from sbir_core.bench.__main__ import QUICK, run
    from dataclasses import replace
    r = run(replace(QUICK, quality_workers=1), ["random"], ["quality"])
    sets = r["quality"]["results"]["random"]["sets"]
    assert set(sets) == {"sketchy", "sketchy10", "tuberlin", "shoes", "quickdraw", "quickdraw_hidden"}
    assert all(s["queries"] > 0 for s in sets.values())
    assert sets["quickdraw_hidden"]["queries"] == sets["quickdraw"]["queries"]
    drawn = r["quality"]["sets"]["quickdraw"]["drawn_kinds"]
    assert drawn >= 335 and sets["quickdraw"]["hit@4_all_kinds"] == sets["quickdraw"]["hit@4"] * 3 / drawn
    assert sets["shoes"]["mAP@all"] == 1.0                      # every shoe photo is relevant to every shoe sketch
    assert "acc@1" in sets["sketchy"] and "acc@1" not in sets["quickdraw"]   # only paired sets get acc@K
    md = report.markdown(r)
    assert "## Retrieval quality" in md and "| `random` |" in md and "*How measured:*" in md
    assert "## Query latency" not in md                        # section not run, not reported


def test_hidden_labels_are_withheld_from_the_backend_but_judge_relevance():
    from sbir_core.heldout import demo_gallery, quickdraw_canvas
    gallery, _ = demo_gallery()
    s = quickdraw_canvas(gallery, per_class=1, max_classes=2, hide_labels=True)
    assert not any(s.gallery.labels) and s.gallery_truth == [g or "" for g in gallery.labels]
    assert len(s.gallery) == len(gallery) and s.gallery.labels is not gallery.labels


def test_query_latency_stages(small_photo_dir, sketchy_dir):
    from sbir_core import Gallery, load_backend
    from sbir_core.bench.speed import canvas_images, query_latency
    sketches = canvas_images(sorted((sketchy_dir / "sketch" / "cup").iterdir())[:3])
    assert sketches[0].size == (400, 400) and sketches[0].mode == "RGBA"
    lat = query_latency(load_backend("pretrained", threads=1), Gallery.from_folder(small_photo_dir), sketches, warmup=1)
    assert set(lat) == {"preprocess", "encode", "search", "total"}
    assert all(lat[s]["n"] == 3 for s in lat)
    assert lat["total"]["p50"] >= lat["encode"]["p50"]


def test_model_files_finds_every_onnx_name_in_a_model_json():
    from sbir_core.bench.speed import model_files
    meta = {"sketch_model": ["trunk.onnx", "sketch_head.onnx"], "photo_model": "photo.onnx",
            "preprocess": {"size": 224}, "classes": ["cup"], "extra": {"generator": "g.onnx"}}
    assert model_files(meta) == {"trunk.onnx", "sketch_head.onnx", "photo.onnx", "g.onnx"}


def test_report_shows_skips_and_targets():
    from sbir_core.bench.__main__ import QUICK
    from dataclasses import asdict
    env = {"cpu": "x", "logical_cpus": 2, "memory_gib": 1.0, "os": "Linux", "load_average_at_start": [0, 0, 0],
           "load_average_at_end": [0, 0, 0], "onnxruntime_providers": ["CPUExecutionProvider"],
           "thread_env": {"OMP_NUM_THREADS": "1"}, "versions": {"numpy": "2"}}
    lat = {st: {"p50": 9.0, "p90": 11.0, "n": 5} for st in ("preprocess", "encode", "search", "total")}
    r = {"command": "python -m sbir_core.bench", "generated": "now", "seconds": 60.0, "config": asdict(QUICK),
         "environment": env, "backends": ["triplet", "cgan"], "notes": [],
         "gallery": {"name": "bundled", "photos": 3, "labelled": 2, "note": None},
         "speed": {"latency": {"triplet": lat, "cgan": {"error": "ModelFileError: gone"}},
                   "cold_start": {"triplet": {"error": "boom"}}, "indexing": {}, "latency_queries": 5,
                   "gallery_photos": 3, "eager": {"triplet": {"error": "torch_modules() failed"}}}}
    md = report.markdown(r)
    assert "| p50 query latency `triplet` ≤ 10 ms | 9.0 ms | yes |" in md
    assert "| p50 query latency `cgan` ≤ 80 ms | not measured | – |" in md
    assert "error: ModelFileError: gone" in md and "skipped: torch_modules() failed" in md
    assert "## Retrieval quality" not in md and "## Search time" not in md


def test_compare_eager_runs_a_chain_of_onnx_files(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn
    from sbir_core.bench.speed import compare_eager
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    for module, name, shape in ((trunk, "t.onnx", (1, 3, 16, 16)), (head, "h.onnx", (1, 4, 16, 16))):
        torch.onnx.export(module, (torch.randn(*shape),), str(tmp_path / name), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "b"}}, opset_version=17, dynamo=False)
    out = compare_eager({"t.onnx+h.onnx": (nn.Sequential(trunk, head), 16),
                         "missing.onnx": (trunk, 16)}, tmp_path, runs=3, warmup=1)
    chain = out["t.onnx+h.onnx"]
    assert chain["input"] == [1, 3, 16, 16]
    assert chain["max_abs_diff"] < 1e-4                        # the chain computes what the torch module does
    assert chain["torch_eager_ms"]["n"] == 3 and chain["speedup"] > 0
    assert "error" in out["missing.onnx"]


@pytest.mark.parametrize("sq8", [True, False])
def test_hnsw_index_finds_the_exact_neighbours_with_a_wide_search(sq8):
    """With efSearch >= N the graph search is exhaustive: the same top 5 as exact search, whether the
    vectors are stored as floats or as 8-bit codes (their scores then differ by a quantisation step)."""
    from sbir_core.index import HNSWIndex
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    exact, approx = ExactIndex(vectors), HNSWIndex(vectors, m=8, ef_construction=40, ef_search=512, sq8=sq8)
    assert len(approx) == 300
    for q in rng.standard_normal((5, 16)).astype(np.float32):
        (ie, se), (ia, sa) = exact.search(q, 5), approx.search(q, 5)
        assert set(ia.tolist()) == set(ie.tolist())
        assert np.allclose(np.sort(sa), np.sort(se), atol=0.05 if sq8 else 1e-5)
