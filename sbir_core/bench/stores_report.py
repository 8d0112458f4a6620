"""The vector stores' section of BENCHMARKS.md from bench_stores.json: written between markers by
`python -m sbir_core.bench.stores`, and kept when the full benchmark rewrites the file; runs merged."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .scaling import LOWRANK_RANK

BEGIN = "<!-- stores:begin (python -m sbir_core.bench.stores) -->"
END = "<!-- stores:end -->"


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old`'s rows with `new`'s results added (replacing a store measured in both); one report."""
    rows = {row["n"]: row for row in old["rows"]}
    for row in new["rows"]:
        if row["n"] not in rows:
            rows[row["n"]] = row
            continue
        names = {(s["store"], s["index"]) for s in row["results"]}
        rows[row["n"]]["results"] = [s for s in rows[row["n"]]["results"] if (s["store"], s["index"]) not in names] + row["results"]
    old["rows"] = [rows[n] for n in sorted(rows)]
    old["seconds"] = round(old.get("seconds", 0) + new.get("seconds", 0), 1)
    old["load_average_at_end"] = new.get("load_average_at_end")
    old["runs"] = old.get("runs", 1) + 1
    for extra in ("indexing", "parity"):
        if extra in new:
            old[extra] = new[extra]
    return old


def markdown_section(r: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, between markers so the full benchmark keeps it (see `keep_section`)."""
    lines = [BEGIN, "## Vector stores: in-process vs Milvus Lite (and a Milvus server)", "",
             "| vectors | store | index | insert vectors/s | then indexes built in s | reopened, first answer s | "
             "query ms p50 / p90 | recall@20 | RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        for s in sorted(row["results"], key=lambda s: ("memory" not in s["store"], "Milvus" in s["store"])):
            ready = s.get("ready_s", 0.0) if "Milvus" in s["store"] else "–"
            built = s.get("close_s", s.get("index_build_s", "–")) if "Milvus" in s["store"] else "– (in the insert)"
            lines.append(f"| {row['n']:,} | {s['store']} | {s['index']} | {s['insert_per_s']:,} | {built} | {ready} | "
                         f"{s['ms']['p50']:.2f} / {s['ms']['p90']:.2f} | {s['recall']:.3f} | {s.get('rss_mib')} |")
    sweeps = [(row["n"], s) for row in r["rows"] for s in row["results"] if "ef_sweep" in s]
    if sweeps:
        lines += ["", "Search knob swept (same index; the table above shows the fastest FAISS ef with recall@20 ≥ 0.95, "
                  "and Milvus Lite at ef = 128 or its last nprobe):", "",
                  "| vectors | store | search knob | query ms p50 / p90 | recall@20 |", "|---|---|---|---|---|"]
        for n, s in sweeps:
            for e in s["ef_sweep"]:
                knob = f"nprobe {e['ef']}" if s.get("index_type") == "IVF_FLAT" else f"ef {e['ef']}"
                lines.append(f"| {n:,} | {s['store'].split(' (')[0]} | {knob} | {e['ms']['p50']:.2f} / "
                             f"{e['ms']['p90']:.2f} | {e['recall']:.3f} |")
    strong = [(row["n"], s) for row in r["rows"] for s in row["results"] if "ms_strong_consistency" in s]
    if strong:
        lines += ["", "The Milvus server rows are searched at bounded consistency (`?consistency=bounded`: how a gallery "
                  "built beforehand is served); at strong consistency, the store's default, every query waits for the "
                  "server's time tick: " + "; ".join(f"{n:,} vectors p50 {s['ms_strong_consistency']['p50']:.0f} ms"
                                                     for n, s in strong) + "."]
    par = r.get("parity")
    if par:
        lines += ["", f"The bundled gallery ({par['photos']} photos) in memory vs in Milvus Lite, `backend.search` top {par['k']} "
                  f"for {par['queries']} sketches ({par['source']}):", "",
                  "| backend | identical top 10 | identical up to float32 ties | same classes in the same order | "
                  "search ms in memory p50 | in Milvus Lite p50 |", "|---|---|---|---|---|---|"]
        for name, x in par["backends"].items():
            ties = "n/a (its store scores carry the tie-break)" if name.startswith("classifier") else \
                f"{x['identical_up_to_float_ties']}/{par['queries']}"
            lines.append(f"| `{name}` | {x['identical']}/{par['queries']} | {ties} | "
                         f"{x['same_labels']}/{par['queries']} | {x['search_ms_memory']['p50']:.2f} | "
                         f"{x['search_ms_milvus_lite']['p50']:.2f} |")
    ix = r.get("indexing")
    if ix:
        lines += ["", f"Indexing a folder (`sbir_core.store.build FOLDER --store`, `{ix['backend']}`, {ix['milvus_lite']['photos']:,} "
                  f"photos of `{Path(ix['folder']).parent.name}/{Path(ix['folder']).name}`; {ix['milvus_lite']['indexed'][ix['backend']]:,} of them indexed per store; ONNX Runtime with {ix.get('ort_threads', '?')} thread(s), reading and preprocessing in a second thread):", "",
                  "| store | photos/s (wall) | photos per CPU-second | read + preprocess photos/s (2nd thread) | encode photos/s | "
                  "store writes photos/s | load average before → after |", "|---|---|---|---|---|---|---|"]
        for name in ("memory", "milvus_lite"):
            x = ix[name]
            lines.append(f"| {name.replace('_', ' ')} | {x['photos_per_s']} | {x.get('photos_per_cpu_s', '–')} | "
                         f"{x['decode_photos_per_s']} | "
                         f"{x['encode_photos_per_s']} | {x['store_photos_per_s'] or '– (a list append)'} | {ix['load_average_before']} → "
                         f"{ix['load_average_after']} |")
    busy = r.get("indexing_loaded")
    if busy:
        lines += ["", f"The same on a busier moment (load average {busy['load_average_before'][0]}): "
                  f"{busy['milvus_lite']['photos_per_s']} photos/s into Milvus Lite, {busy['memory']['photos_per_s']} "
                  f"in-process; per CPU-second {busy['milvus_lite']['photos_per_cpu_s']}."]
    ix2 = r.get("indexing_2_ort_threads")
    if ix2:
        lines += ["", f"With {ix2['ort_threads']} ONNX Runtime threads instead (at load average "
                  f"{ix2['load_average_before'][0]}, beside the busier run): {ix2['milvus_lite']['photos_per_s']} photos/s into Milvus Lite, "
                  f"{ix2['milvus_lite']['photos_per_cpu_s']} per CPU-second: the threads compete with the reading "
                  f"thread and the machine's other jobs, so `sbir_core.store.build` runs one (`--threads` to change)."]
    env = r["environment"]
    how = (" / ".join(f"`{c.split('   #')[0]}`" for c in r["commands"]) if r.get("commands")
           else "`python -m sbir_core.bench.stores`")
    when = r.get("generated", "") if r.get("commands") else f"{r['seconds'] / 60:.0f} min, {r.get('generated', '')}"
    lines += ["", f"*How measured:* {how} ({when}{'; ' + r['note'] if r.get('note') else ''}); "
              f"synthetic unit vectors of `triplet`'s dimension (d = {r['d']}) near a random {LOWRANK_RANK}-dimensional "
              f"subspace plus 10 % noise energy (the `lowrank` vectors of the scaling section), queries from the same "
              f"distribution, top {r['k']}, one query at a time on one thread; inserted in batches of {r['batch']:,} "
              f"through each store's `add` (Milvus: `upsert` over gRPC to Milvus Lite's in-process server). Recall@20 = "
              f"share of the exact top 20 (FAISS flat scan) returned. HNSW parameters are the same in FAISS and Milvus "
              f"Lite (M={r['hnsw']['M']}, efConstruction={r['hnsw']['efConstruction']}), both built by FAISS with "
              f"{next((s.get('build_threads') for row in r['rows'] for s in row['results'] if 'build_threads' in s), '?')} threads; Milvus Lite {r.get('milvus_lite_version', '')} "
              f"builds one HNSW per sealed segment of at most 100,000 rows and merges the segments' results. "
              f"Milvus Lite's insert rate counts the upserts; its segments' indexes are built in the background, and closing the file waits for them ('then indexes built in'); 'reopened' = opening the store again, as the app does, and its first answer (segments and indexes loaded). IVF_FLAT: nlist centroids per segment, searched at nprobe. Each row's load average before and after is in bench_stores.json. RSS = the benchmark process after "
              f"the step (Milvus Lite runs inside it). Machine: {env.get('cpu', '?')}, {env.get('logical_cpus', '?')} logical CPUs, {env.get('memory_gib', '?')} GiB, shared "
              f"with other jobs: load average {r.get('load_average_at_start')} at the start, "
              f"{r.get('load_average_at_end')} at the end.",
              END]
    return "\n".join(lines) + "\n"


def keep_section(old: str, new: str) -> str:
    """`new` BENCHMARKS.md text with the stores section of `old` carried over (the full benchmark
    rewrites the file; this section comes from its own, longer run)."""
    if BEGIN not in old or END not in old or BEGIN in new:
        return new
    section = BEGIN + old.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"
    return new.rstrip("\n") + "\n\n" + section


def write_section(md_path: Path, section: str) -> None:
    """Replace the stores section of a BENCHMARKS.md (or append it), leaving the rest as it is."""
    old = md_path.read_text(encoding="utf-8") if md_path.is_file() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = old.rstrip("\n") + ("\n\n" if old.strip() else "") + section
    md_path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
