"""bench.json -> BENCHMARKS.md: one table per section, each followed by how it was measured."""
from __future__ import annotations

from typing import Any, Sequence

LATENCY_TARGET_MS = {"classifier": 10.0, "triplet": 10.0, "cgan": 80.0, "instance": 15.0, "context": 10.0}   # p50 total, bundled gallery
EAGER_SPEEDUP_TARGET = 1.5
TEACH_TOP1_TARGET, TEACH_DROP_TARGET = 0.60, 0.01     # issue 36: 5 drawings a kind; the other kinds' top-1
EXACT_TARGET_MS, EXACT_TARGET_MAX_N = 10.0, 100_000
ANN_TARGET_MS, ANN_TARGET_N = 2.0, 1_000_000

QUALITY_COLUMNS = (   # (set, metric, header)
    ("quickdraw", "hit@4", "QuickDraw→gallery hit@4"), ("quickdraw", "P@4", "QuickDraw→gallery P@4"),
    ("quickdraw", "mAP@all", "QuickDraw→gallery mAP@all"),
    ("quickdraw", "hit@4_all_kinds", "QuickDraw→gallery hit@4, all drawn kinds"),
    ("quickdraw_hidden", "hit@4", "QuickDraw→gallery hit@4, labels hidden"),
    ("sketchy", "mAP@all", "Sketchy mAP@all"), ("sketchy", "P@20", "Sketchy P@20"),
    ("sketchy", "acc@1", "Sketchy acc@1"), ("sketchy", "acc@10", "Sketchy acc@10"),
    ("sketchy", "sketch_top1", "Sketchy sketch top-1"), ("sketchy", "sketch_top5", "Sketchy sketch top-5"),
    ("tuberlin", "sketch_top1", "TU-Berlin sketch top-1"), ("tuberlin", "mAP@all", "TU-Berlin→Sketchy mAP@all"),
    ("sketchy10", "mAP@all", "10-class mAP@all"), ("sketchy10", "P@20", "10-class P@20"),
    ("shoes", "acc@1", "Shoes acc@1"), ("shoes", "acc@10", "Shoes acc@10"),
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _f(x: Any, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if isinstance(x, (int, float)) else "–"


def _pp(d: dict[str, Any] | None, nd: int = 1) -> str:
    """p50 / p90 of a percentiles dict."""
    return f"{d['p50']:.{nd}f} / {d['p90']:.{nd}f}" if d else "–"


def _met(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def environment(r: dict[str, Any]) -> str:
    e = r["environment"]
    v = e["versions"]
    rows = [("CPU", f"{e['cpu']}, {e['logical_cpus']} logical CPUs, {e['memory_gib']} GiB RAM, {e['os']}"),
            ("Threads", "1 per query: " + ", ".join(f"{k}={val}" for k, val in e["thread_env"].items())
             + "; ONNX Runtime intra-op 1, inter-op 1; torch.set_num_threads(1); FAISS search 1 (build "
             + f"{r['config']['build_threads']})"),
            ("Load average (1/5/15 min)", f"{e['load_average_at_start']} at start, {e.get('load_average_at_end')} at end"
             " (above ~0.5 means other work shared the CPUs and slowed the timings)"),
            ("Libraries", ", ".join(f"{k} {val}" for k, val in v.items())),
            ("ONNX Runtime providers", ", ".join(e["onnxruntime_providers"]))]
    return _table(("", ""), rows)


def quality(r: dict[str, Any]) -> str:
    q = r["quality"]
    rows = []
    for name, res in q["results"].items():
        if "error" in res:
            rows.append([name] + [f"skipped: {res['error']}"] + [""] * (len(QUALITY_COLUMNS) - 1))
            continue
        rows.append([f"`{name}`"] + [_f(res["sets"].get(s, {}).get(m)) for s, m, _ in QUALITY_COLUMNS])
    out = _table(["backend"] + [h for _, _, h in QUALITY_COLUMNS], rows)
    first = next((res["sets"] for res in q["results"].values() if "sets" in res), {})
    sets = "; ".join(f"{d['title']}: {d['queries']} queries × {d['gallery']} photos, {d['classes']} classes, "
                     f"{_f(first.get(k, {}).get('relevant_per_query'), 1)} relevant photos per query"
                     for k, d in q["sets"].items())
    out += (f"\n*How measured:* every backend scores the full (queries × gallery) matrix of each set "
            f"(`Backend.score_matrix`); metrics from `sbir_core.evaluate.metrics`: mAP@all over the whole "
            f"ranking and P@20 at category level (same class = relevant), hit@4 = a photo of the drawn class in "
            f"the first row of 4 results, P@4 = the share of that row that is right, hit@4 over all drawn kinds = hit@4 × "
            f"(kinds the gallery has) / (kinds with Quick, Draw! drawings here), a kind without photos counting as a miss; "
            f"labels hidden = the same doodles against the same gallery with its labels withheld from the backend, acc@K = the sketch's own photo in "
            f"the top K, sketch top-1/5 = classification accuracy of the backends that classify; P@20 capped = relevant in the top 20 / min(20, relevant photos), for sets with few "
            f"relevant photos per query. Sets: {sets}. The same queries and galleries for every backend, in one run "
            f"({q['seconds']:.0f} s for this section).\n\n")
    notes = [f"{d['title']}: {'; '.join(d['notes'])}" for d in q["sets"].values() if d["notes"]]
    disjoint = q.get("quickdraw_rows_disjoint_from_training")
    notes.append(f"Quick, Draw! held-out rows: `QUICKDRAW_EVAL_ROWS` = {q['quickdraw_rows'][0]}-{q['quickdraw_rows'][1]} "
                 f"(the set above takes the first {r['config']['quickdraw_per_class'] or 'all'} per class); disjoint from "
                 f"every Quick, Draw! row a trainer reads (`sbir_core.data.splits`): "
                 f"{ {True: 'yes', False: '**NO**', None: 'trainer not present'}[disjoint] }")
    notes.append("Trained on (read from the trainers, `TRAINING_DATA` in sbir_core/heldout.py): "
                 + "; ".join(f"`{n}`: {txt}" for n, txt in q["held_out"].items()))
    dims = [f"`{n}` {res['sets']['sketchy']['effective_dim']} of {res['sets']['sketchy']['feature_dim']}"
            for n, res in q["results"].items() if "effective_dim" in res.get("sets", {}).get("sketchy", {})]
    if dims:
        notes.append("Effective dimension (participation ratio) of the Sketchy photo features: " + ", ".join(dims))
    return out + "Notes:\n" + "".join(f"- {n}\n" for n in notes)


def latency(r: dict[str, Any]) -> str:
    s = r["speed"]
    rows = []
    for name, res in s["latency"].items():
        if "error" in res:
            rows.append([f"`{name}`", f"error: {res['error']}", "", "", "", "", ""])
            continue
        target = LATENCY_TARGET_MS.get(name)
        rows.append([f"`{name}`", _pp(res["preprocess"]), _pp(res["encode"]), _pp(res["search"], 2),
                     _pp(res["total"]), _f(target, 0) if target else "–",
                     _met(res["total"]["p50"] <= target if target else None)])
    out = _table(["backend", "preprocess ms p50 / p90", "encode ms", "search ms", "total ms", "target p50 ms", "met"], rows)
    g = r["gallery"]
    return out + (f"\n*How measured:* {s['latency_queries']} held-out Sketchy sketches, each as a 400×400 RGBA image "
                  f"in memory (what the canvas hands over), through `backend.search(sketch, gallery, k=20)` after "
                  f"{r['config']['warmup']} warm-up queries; stages from its `extras['timings_ms']`. Gallery: "
                  f"`{g['name']}`, {g['photos']} photos, features precomputed. ONNX Runtime with 1 intra-op thread. "
                  f"`random` has no model and is left out.\n")


def eager(r: dict[str, Any]) -> str:
    rows = []
    for name, res in r["speed"].get("eager", {}).items():
        if "error" in res:
            rows.append([f"`{name}`", f"skipped: {res['error']}", "", "", "", "", ""])
            continue
        for file, f in res["files"].items():
            if "error" in f:
                rows.append([f"`{name}`", file, f"skipped: {f['error']}", "", "", "", ""])
                continue
            rows.append([f"`{name}`", f"`{file}` {tuple(f['input'])}", _pp(f["torch_eager_ms"]), _pp(f["onnxruntime_ms"]),
                         f"{f['speedup']:.2f}×", _met(f["speedup"] >= EAGER_SPEEDUP_TARGET), f"{f['max_abs_diff']:.1e}"])
    out = _table(["backend", "ONNX file (input)", "torch eager ms p50 / p90", "ONNX Runtime ms", "speedup",
                  f"≥ {EAGER_SPEEDUP_TARGET}×", "max abs diff"], rows)
    return out + (f"\n*How measured:* for each ONNX file, the torch module it was exported from "
                  f"(`export/<backend>.py: torch_modules()`), eval mode under `torch.inference_mode()`, against an "
                  f"ONNX Runtime session of the file, on the same random (1, 3, S, S) input, one thread each, "
                  f"{r['config']['eager_runs']} timed runs after 3 warm-up runs; speedup = torch p50 / ONNX Runtime p50. "
                  f"Max abs diff shows it is the same model. Measured last, in the same process (torch is only ever "
                  f"imported by the benchmark, never by serving).\n")


def cold_and_indexing(r: dict[str, Any]) -> str:
    s = r["speed"]
    rows = []
    for name, c in s["cold_start"].items():
        ix = s["indexing"].get(name, {})
        if "error" in c:
            rows.append([f"`{name}`", f"error: {c['error']}", "", "", "", "", "", _f(ix.get("photos_per_s"), 1)])
            continue
        st = c["stages_ms"]
        rows.append([f"`{name}`", _f(c["ms"], 0), _f(st["interpreter"], 0), _f(st["imports"], 0), _f(st["load_backend"], 0),
                     _f(st["load_gallery"], 0), _f(st["first_result"], 0), _f(ix.get("photos_per_s"), 1)])
    out = _table(["backend", "cold start ms", "interpreter", "imports", "ONNX session(s)", "gallery + features",
                  "first search", "indexing photos/s"], rows)
    n_photos = next((ix["photos"] for ix in s["indexing"].values() if "photos" in ix), 0)
    return out + (f"\n*How measured:* cold start = wall time from launching a fresh `python -c` (threads pinned to 1) "
                  f"to its first search result: import `sbir_core`, `load_backend`, load the gallery with its stored "
                  f"features, one search; median of {r['config']['cold_runs']} launches, OS file cache warm. Indexing = "
                  f"{n_photos} Sketchy photo files through `backend.index_photos` (decode, resize, encode in batches "
                  f"of 32) on one thread, after a warm-up.\n")


def _exact_engine(sc: dict[str, Any]) -> str:
    engine = next((row["exact_engine"] for row in sc["rows"] if "exact_engine" in row), "numpy")
    return ("FAISS's flat inner-product scan, `IndexFlatIP`, every vector compared" if engine.startswith("faiss")
            else "one numpy matrix-vector product + argpartition")


def scaling(r: dict[str, Any]) -> str:
    sc = r["scaling"]
    rows = []
    for row in sc["rows"]:
        h = row.get("hnsw")
        op = h["operating_point"] if h else None
        best = max(h["sweep"], key=lambda s: s["recall"]) if h else None
        shown = op or best
        rows.append([row["kind"], f"{row['n']:,}", _pp(row.get("exact_ms"), 2) if "exact_ms" in row else "(same as uniform)",
                     _f(h["build_seconds"], 1) if h else "–", shown["ef_search"] if shown else "–",
                     _pp(shown["ms"], 3) if shown else "–", _f(shown["recall"], 3) if shown else "–",
                     ("yes" if op else "**no**") if h else "–"])
    out = _table(["vectors", "N", "exact ms p50 / p90", "HNSW build s", "efSearch", "HNSW ms p50 / p90",
                  f"recall@{sc['k']}", f"recall ≥ {sc['min_recall']}"], rows)
    lr = sc["lowrank"]
    cfg = r["config"]
    out += (f"\n*How measured:* d = {sc['d']} float32 unit vectors, one query at a time on one thread, top {sc['k']}. "
            f"Exact: `sbir_core.index.ExactIndex` ({_exact_engine(sc)}), {sc['exact_queries']} "
            f"queries; its time does not depend on the data. Approximate: `sbir_core.index.HNSWIndex` (FAISS "
            f"`IndexHNSWSQ`: HNSW graph over 8-bit scalar-quantised vectors, inner product, M={cfg['hnsw_m']}, "
            f"efConstruction={cfg['hnsw_ef_construction']}, built "
            f"with {cfg['build_threads']} threads), {sc['ann_queries']} queries, efSearch swept over "
            f"{list(cfg['ef_search'])}; the row shows the fastest efSearch with recall ≥ {sc['min_recall']} (or the best "
            f"recall when none reaches it). Recall@{sc['k']} = share of the exact top {sc['k']} the index returns. "
            f"`uniform`: i.i.d. on the sphere (worst case for any approximate index). `lowrank`: a random "
            f"{lr['rank']}-dimensional subspace plus {int(lr['noise'] * 100)}% noise energy, effective dimension "
            f"{lr['effective_dim']}, a stand-in for embeddings that use few directions (compare the real features' "
            f"effective dimensions under Quality). "
            f"Queries are drawn from the same distribution, not from the gallery.\n")
    sweeps = [row for row in sc["rows"] if row.get("hnsw")]
    if sweeps:
        last = sweeps[-1]
        out += (f"\nefSearch sweep, {last['kind']} N = {last['n']:,}:\n\n"
                + _table(["efSearch", "ms p50 / p90", f"recall@{sc['k']}"],
                         [[s["ef_search"], _pp(s["ms"], 3), _f(s["recall"], 3)] for s in last["hnsw"]["sweep"]]))
    return out


def targets(r: dict[str, Any]) -> str:
    rows = []
    for name, target in LATENCY_TARGET_MS.items():
        res = r.get("speed", {}).get("latency", {}).get(name)
        got = res["total"]["p50"] if res and "total" in res else None
        rows.append([f"p50 query latency `{name}` ≤ {target:.0f} ms", _f(got, 1) + " ms" if got is not None else "not measured",
                     _met(got <= target if got is not None else None)])
    for name, res in r.get("speed", {}).get("eager", {}).items():
        for file, f in res.get("files", {}).items():
            if "speedup" in f:
                rows.append([f"ONNX Runtime ≥ {EAGER_SPEEDUP_TARGET}× torch eager (`{name}` `{file}`)", f"{f['speedup']:.2f}×",
                             _met(f["speedup"] >= EAGER_SPEEDUP_TARGET)])
    for row in r.get("scaling", {}).get("rows", []):
        if "exact_ms" in row and row["n"] <= EXACT_TARGET_MAX_N:
            rows.append([f"exact search < {EXACT_TARGET_MS:.0f} ms at {row['n']:,}", f"{row['exact_ms']['p50']:.2f} ms",
                         _met(row["exact_ms"]["p50"] < EXACT_TARGET_MS)])
        h = row.get("hnsw")
        if h and row["n"] >= ANN_TARGET_N:
            op = h["operating_point"]
            ok = op is not None and op["ms"]["p50"] < ANN_TARGET_MS
            got = (f"{op['ms']['p50']:.3f} ms at recall {op['recall']:.3f} (efSearch {op['ef_search']})" if op
                   else f"recall ≤ {max(s['recall'] for s in h['sweep']):.3f} at every efSearch")
            rows.append([f"approximate < {ANN_TARGET_MS:.0f} ms at {row['n']:,} ({row['kind']}) with recall@20 ≥ 0.95", got, _met(ok)])
    teaching = r.get("quality", {}).get("teaching")
    if teaching:
        k5 = teaching["shots"].get("5") or teaching["shots"].get(5)
        drop = teaching["other_top1_before"] - k5["other_top1"]
        rows.append(["teaching (issue 36): top-1 of 20 re-taught kinds from 5 drawings ≥ 0.60", _f(k5["taught_top1"]),
                     _met(k5["taught_top1"] >= TEACH_TOP1_TARGET)])
        rows.append(["teaching: the other kinds' top-1 drops ≤ 0.01", f"{drop:+.3f}".replace("+-", "-"),
                     _met(drop <= TEACH_DROP_TARGET)])
    for name, res in r.get("speed", {}).get("latency_taught", {}).items():
        got = res["total"]["p50"] if "total" in res else None
        plain = f" (plain, in turn with it: {_f(res['plain_p50'], 1)} ms)" if "plain_p50" in res else ""
        rows.append([f"p50 query latency `{name}` with 20 kinds taught ≤ 10 ms", (_f(got, 1) + " ms" + plain) if got is not None
                     else "not measured", _met(got <= 10 if got is not None else None)])
    return _table(["target (issues 8, 36)", "measured", "met"], rows) if rows else ""


def teaching(r: dict[str, Any]) -> str:
    """Issue 36: kinds taught from a few drawings (`sbir_core.train.imprint.measure`)."""
    t = r["quality"]["teaching"]
    rows = [[f"{k} drawing{'s' if int(k) > 1 else ''} each", _f(v["taught_top1"]), _f(t["other_top1_before"]),
             _f(v["other_top1"])] for k, v in t["shots"].items()]
    out = (f"20 kinds ({', '.join(t['kinds'])}) are forgotten by the `classifier` and taught again from k of their "
           f"held-out Quick, Draw! drawings (rows 0-4, drawn as on the canvas); {t['queries']} other held-out drawings "
           f"of them (rows 5-9) are read among all kinds, and {t['other_queries']} held-out drawings of the other kinds "
           f"before and after. Trained top-1 on the same {t['queries']} drawings: {_f(t['trained_top1'])}.\n\n")
    out += _table(["taught from", "taught kinds' top-1", "other kinds' top-1 before", "after"], rows)
    n = t.get("never_trained")
    if n:
        out += (f"\nKinds no model here was trained on ({', '.join(n['kinds'])}), taught from {n['examples_per_kind']} "
                f"drawings each (rows 10-14): top-1 {_f(n['taught_top1'])} on their {n['queries']} held-out drawings "
                f"(rows 0-9) among all kinds; every trained kind's drawings {_f(n['other_top1_before'])} → "
                f"{_f(n['other_top1_after'])}.\n")
    return out + "\n"


def load(r: dict[str, Any]) -> str:
    """Many sessions on one app server, and the cold first search of a new folder gallery."""
    ld, out = r["load"], ""
    sv = ld.get("server", {})
    if "error" in sv:
        out += f"Server load test failed: {sv['error']}\n\n"
    elif sv:
        one, many = sv["one_session"], sv["concurrent"]
        rows = [[f"1 session, {one['searches']} searches", _pp(one["latency_ms"], 0), "1.00 / 1.00", one["errors"],
                 one["differs_from_reference"] + one["short"], "–"],
                [f"{many['sessions']} sessions at once, {many['searches']} of {many['expected_searches']} searches",
                 _pp(many["latency_ms"], 0), f"{_f(sv['p50_ratio'], 2)} / {_f(sv['p90_ratio'], 2)}", many["errors"],
                 many["differs_from_reference"] + many["short"], _f(many["searches_per_s"], 1)]]
        out += _table(("load", "latency p50 / p90 (ms)", "vs 1 session", "errors", "lost or wrong answers",
                       "searches/s"), rows)
        out += (f"\n*How measured:* {sv['server']}, driven over its websocket the way a browser drives it: each "
                f"session opens the Search page, switches to the example sketches and picks them one after another "
                f"({sv['examples']} examples × k in {sv['k_values']}); latency = request to the end of the page run "
                f"(search and the whole page, not the browser's drawing or image downloads). Every answer is "
                f"compared with the one-session answer for the same sketch and k (photos, labels, scores, order): "
                f"*lost or wrong* counts answers that differ or are short.\n\n")
    cold = ld.get("cold_gallery")
    if cold:
        rows = []
        for key, c in cold.items():
            if not key.startswith("sessions_"):
                continue
            n = key.split("_")[1]
            if "error" in c:
                rows.append([n, f"failed: {c['error']}", "", "", ""])
                continue
            rows.append([n, c["photos"], _f(c["first_search_s"], 1), c["index_passes"],
                         "yes" if c["same_results"] else "**no**"])
        out += _table(("sessions asking at once", "photos", "first result after (s)", "indexing passes",
                       "same results"), rows)
        out += (f"\n*How measured:* a fresh process with an empty feature cache opens the folder `{cold['folder']}` "
                f"as a gallery and searches it with `{cold['backend']}` (one ONNX thread): every photo is decoded "
                f"and encoded once, then the search runs. With several sessions at once, one indexes and the others "
                f"wait for its result (the per-gallery lock).\n")
    return out


def markdown(r: dict[str, Any]) -> str:
    """The whole BENCHMARKS.md."""
    head = (f"# Benchmarks\n\nGenerated by `{r['command']}` on {r['generated']} in {r['seconds'] / 60:.1f} min; "
            f"regenerate with the same command (numbers in `bench.json`). Do not edit by hand.\n\n")
    if r["config"]["quick"]:
        head += "**This is a `--quick` smoke run: few classes and small sizes; not for comparison.**\n\n"
    g = r["gallery"]
    head += (f"Backends in this run: {', '.join(f'`{n}`' for n in r['backends'])}. Demo gallery: `{g['name']}`, "
             f"{g['photos']} photos ({g['labelled']} labelled).\n")
    for n in r["notes"] + ([g["note"]] if g["note"] else []):
        head += f"\n> {n}\n"
    parts = [head, "## Environment\n\n" + environment(r)]
    if "speed" in r or "scaling" in r:
        parts.append("## Targets\n\n" + targets(r))
    if "quality" in r:
        parts.append("## Retrieval quality\n\n" + quality(r))
        if r["quality"].get("teaching"):
            parts.append("## Teaching a kind from a few drawings\n\n" + teaching(r))
    if "speed" in r:
        parts.append("## Query latency (one CPU thread)\n\n" + latency(r))
        if r["speed"].get("eager"):
            parts.append("## ONNX Runtime vs torch eager (same model, one thread)\n\n" + eager(r))
        parts.append("## Cold start and gallery indexing\n\n" + cold_and_indexing(r))
    if "scaling" in r:
        parts.append("## Search time against gallery size\n\n" + scaling(r))
    if "load" in r:
        parts.append("## Many visitors at once, and a new gallery's first search\n\n" + load(r))
    if "browser" in r:
        from .browser import section
        parts.append("## The Search page in a browser: pen lift to new photos\n\n" + section(r["browser"]))
    return "\n".join(parts)
