"""Train the `context` backend: unsupervised cross-domain context prediction (Joshi, Sakhi, Velury
2019, after Doersch et al. 2015). No sketch and no label is used in training.

    python -m sbir_core.train.context                       # ImageNet-initialised Lite0, cross-domain pairs
    python -m sbir_core.train.context --arch alexnet        # ablation: the AlexNet-style net from scratch
    python -m sbir_core.train.context --same-domain         # ablation: both patches from one domain

Pretext data: every photo here but the Sketchy `test` photos (held out for evaluation) and the
Sketchy `val` photos (held out to monitor the pretext task), with its Canny edge map from the
project's edge function (`train.features.edge_map`). Both are cached once as uint8 at 240 px
(`.cache/context/`). Each training pair: a 3x3 grid of 64 px cells, 16 px apart, placed at a random
offset, every patch jittered by up to 4 px (so the spacing is uneven and lines cannot simply be
continued across a gap); the centre patch and one of its 8 neighbours, one from the photo and one
from the edge map (random order of domains), the image mirrored half of the time, photo patches
made grey a third of the time (no colour shortcut), edge patches thickened half of the time
(sketch strokes are wider than Canny edges). The network predicts where the second patch lies.

Retrieval (what the backend serves): the encoder's pooled features of the whole photo, and of the
sketch through the same (edge-domain) input path, at 128 px; cosine nearest neighbours. Every few
minutes the run records pretext accuracy on held-out pairs and retrieval on the Sketchy `val`
sketches (monitoring only, never used to choose weights), and saves its weights. Which of them
ships is picked without any label: `--select RUN_DIR` keeps the one whose held-out edge maps
retrieve their own photo best (`select_checkpoint`).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import GALLERIES_DIR, REPO_ROOT, data_dir
from ..data import readers
from ..data.preprocess import Preprocess, prepare_photo, prepare_sketch
from ..data.splits import split_of
from ..evaluate import instance_rank, metrics
from .features import edge_map, photo_records

CACHE = REPO_ROOT / ".cache" / "context"
IMAGE = 240                        # side of the cached photos and edge maps
PATCH, GAP, JITTER = 64, 16, 4     # 3 * 64 + 2 * 16 = 224 of 240 px: 16 px for the grid's offset and jitter
PITCH = PATCH + GAP
RETRIEVAL = Preprocess(size=128)   # served input (mean/std 0.5: what `normalise` below computes)
OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]   # label -> (row, col) step


@dataclass
class ContextConfig:
    arch: str = "lite0"            # lite0 (ImageNet init) | alexnet (from scratch) | lite0_scratch
    cross: bool = True             # one patch from the photo, one from the edge map; False: both from one domain
    frozen_blocks: int = 5         # lite0: stem + blocks[:5] keep ImageNet's weights (stride-8 features)
    batch: int = 64                # pairs per step
    lr: float = 1e-3               # fusion layers (and the whole AlexNet)
    encoder_lr: float = 5e-5       # Lite0's trained blocks (2e-4: pretext accuracy rose faster but the val
                                   # retrieval fell below the untrained encoder's within 180 steps)
    weight_decay: float = 1e-4
    grey_photo: float = 0.33
    thicken_edges: float = 0.5
    max_minutes: float = 20.0
    max_steps: int = 1_000_000
    val_every_minutes: float = 6.0
    seed: int = 0
    threads: int = 1
    run_name: str = ""


def run_dir(name: str) -> Path:
    return REPO_ROOT / "runs" / name


def default_run_name(cfg: ContextConfig) -> str:
    return f"context_{cfg.arch}" + ("" if cfg.cross else "_same")


# -- data -----------------------------------------------------------------------------------------
def pretext_sources(root: Path | None = None) -> list[dict[str, str]]:
    """Every photo here with its role: `train` (pretext), `val` (Sketchy val photos: held-out pretext
    pairs). Sketchy test photos and the shoe set are left out (evaluation only)."""
    root = root or data_dir()
    out = [{"path": r.path, "source": r.source, "split": r.split} for r in photo_records(root) if r.split != "test"]
    for src, folder in (("bundled", GALLERIES_DIR / "bundled" / "images"), ("gallery_photos", root / "gallery_photos")):
        if folder.is_dir():
            out += [{"path": str(p), "source": src, "split": "train"} for p in sorted(folder.rglob("*"))
                    if p.is_file() and p.suffix.lower() in readers.IMAGE_SUFFIXES]
    return out


def photo_and_edges(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A photo -> (IMAGE, IMAGE, 3) uint8 RGB (fitted in a white square, as served) and its
    (IMAGE, IMAGE) uint8 edge map (black lines on white, the project's edge function)."""
    im = Image.open(path).convert("RGB")
    photo = np.asarray(prepare_photo(im, IMAGE))
    edges = np.asarray(edge_map(im).resize((IMAGE, IMAGE), Image.Resampling.BOX))
    return photo, edges


def build_pretext_cache() -> None:
    """Cache every pretext photo and its edge map once (uint8, `.cache/context/pretext_*`)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    recs = pretext_sources()
    photos = np.lib.format.open_memmap(CACHE / "pretext_photos.npy", "w+", np.uint8, (len(recs), IMAGE, IMAGE, 3))
    edges = np.lib.format.open_memmap(CACHE / "pretext_edges.npy", "w+", np.uint8, (len(recs), IMAGE, IMAGE))
    t0 = time.time()
    for i, r in enumerate(recs):
        photos[i], edges[i] = photo_and_edges(r["path"])
        if i % 500 == 0:
            print(f"pretext cache {i}/{len(recs)} {time.time() - t0:.0f}s", flush=True)
    photos.flush(), edges.flush()
    (CACHE / "pretext.json").write_text(json.dumps(recs))


def load_pretext() -> tuple[np.ndarray, np.ndarray, list[dict]]:
    if not (CACHE / "pretext.json").is_file():
        build_pretext_cache()
    recs = json.loads((CACHE / "pretext.json").read_text())
    return np.load(CACHE / "pretext_photos.npy"), np.load(CACHE / "pretext_edges.npy"), recs


def patch_corners(label: int, rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top-left corners of the centre patch and of its neighbour at OFFSETS[label]: the grid at a
    random offset, each patch jittered on its own (uneven spacing), all inside the IMAGE square."""
    span = 3 * PATCH + 2 * GAP
    oy, ox = rng.integers(JITTER, IMAGE - span - JITTER + 1, size=2)
    dy, dx = OFFSETS[label]
    jit = rng.integers(-JITTER, JITTER + 1, size=4)
    centre = (int(oy + PITCH + jit[0]), int(ox + PITCH + jit[1]))
    other = (int(oy + (1 + dy) * PITCH + jit[2]), int(ox + (1 + dx) * PITCH + jit[3]))
    return centre, other


def _thicken(e: np.ndarray) -> np.ndarray:
    """Dark lines one pixel wider (a 2x2 minimum filter)."""
    out = e.copy()
    out[1:] = np.minimum(out[1:], e[:-1])
    out[:, 1:] = np.minimum(out[:, 1:], out[:, :-1])
    return out


def sample_pairs(photos: np.ndarray, edges: np.ndarray, rows: np.ndarray, rng: np.random.Generator,
                 cfg: ContextConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B,) image rows -> centre patches (B, 64, 64, 3), neighbour patches (B, 64, 64, 3) as uint8
    RGB (edge patches grey in 3 channels) and labels (B,) in 0..7."""
    n = len(rows)
    a = np.empty((n, PATCH, PATCH, 3), np.uint8)
    b = np.empty_like(a)
    labels = rng.integers(0, len(OFFSETS), size=n)
    for i, r in enumerate(rows):
        flip = rng.random() < 0.5
        p, e = photos[r], edges[r]
        if flip:
            p, e = p[:, ::-1], e[:, ::-1]
        if cfg.cross:
            domains = ("photo", "edge") if rng.random() < 0.5 else ("edge", "photo")
        else:
            domains = ("photo", "photo") if rng.random() < 0.5 else ("edge", "edge")
        for out, (y, x), dom in zip((a, b), patch_corners(int(labels[i]), rng), domains):
            if dom == "photo":
                crop = p[y:y + PATCH, x:x + PATCH]
                if rng.random() < cfg.grey_photo:
                    crop = np.repeat((crop @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=2)
            else:
                crop = e[y:y + PATCH, x:x + PATCH]
                if rng.random() < cfg.thicken_edges:
                    crop = _thicken(crop)
                crop = crop[..., None]
            out[i] = crop
    return a, b, labels


def normalise(x: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (B, H, W) -> float (B, 3, H, W) in [-1, 1]: RETRIEVAL's mean/std 0.5."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    t = t[..., None].expand(*t.shape, 3) if t.ndim == 3 else t
    return t.permute(0, 3, 1, 2) / 127.5 - 1.0


# -- retrieval sets (prepared once at a given input size, uint8) ----------------------------------
def retrieval_sets(size: int = RETRIEVAL.size) -> dict[str, dict[str, Any]]:
    """{'val', 'test', 'shoes'}: gallery photos and query sketches, prepared exactly as served
    (prepare_photo / prepare_sketch at `size`), with labels and photo ids. Cached in `.cache/context/`.
    val: Sketchy `val` sketches against the val photos + 4 train photos per class; test: Sketchy
    `test` sketches against all 3,125 Sketchy photos (as the evaluation CLI); shoes: every sketch
    against the 304 shoe photos."""
    path = CACHE / f"retrieval_{size}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return {s: {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(s + "/")}
                for s in ("val", "test", "shoes")}
    root = data_dir()
    photos, sketches = readers.sketchy(root / "sketchy")
    per_class: dict[str, int] = {}
    val_photos = []
    for it in photos:
        sp = split_of(it.photo_id)
        if sp == "val" or (sp == "train" and per_class.get(it.label, 0) < 4):
            val_photos.append(it)
            per_class[it.label] = per_class.get(it.label, 0) + (sp == "train")
    shoe_photos, shoe_sketches = readers.shoes(root / "shoes")
    chosen = {"val": (val_photos, [s for s in sketches if split_of(s.photo_id) == "val"]),
              "test": (photos, [s for s in sketches if split_of(s.photo_id) == "test"]),
              "shoes": (shoe_photos, shoe_sketches)}
    flat: dict[str, np.ndarray] = {}
    for name, (ph, sk) in chosen.items():
        flat[f"{name}/photos"] = np.stack([np.asarray(prepare_photo(Image.open(p.path), size)) for p in ph])
        flat[f"{name}/sketches"] = np.stack([np.asarray(prepare_sketch(s.path, size, RETRIEVAL.margin)) for s in sk])
        flat[f"{name}/photo_labels"] = np.asarray([p.label or "" for p in ph])
        flat[f"{name}/photo_ids"] = np.asarray([p.photo_id for p in ph])
        flat[f"{name}/sketch_labels"] = np.asarray([s.label or "" for s in sk])
        flat[f"{name}/sketch_photo_ids"] = np.asarray([s.photo_id for s in sk])
        print(f"retrieval set {name}: {len(ph)} photos, {len(sk)} sketches", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **flat)
    return retrieval_sets(size)


def onnx_session(module: torch.nn.Module, path: Path, channels: int = 3):
    """Export a torch module (eval mode, dynamic batch and image size) and open it in ONNX Runtime on one
    thread: several times faster than torch eager here, for the frozen part and for evaluation."""
    import onnxruntime as ort
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, (torch.randn(2, channels, 64, 64),), str(path), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}},
                          opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class _FrozenPart(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.frozen_part(x)


def frozen_runner(encoder: torch.nn.Module, path: Path):
    """The Lite0 encoder's frozen ImageNet part as an ONNX Runtime call (torch in, torch out)."""
    sess = onnx_session(_FrozenPart(encoder), path)
    return lambda x: torch.from_numpy(sess.run(None, {"input": x.detach().numpy()})[0])


def embed(encoder: torch.nn.Module, images: np.ndarray, batch: int = 64, session=None) -> np.ndarray:
    """uint8 images -> (N, D) L2-normalised encoder features (what serving computes), through ONNX
    Runtime (the encoder exported to a temporary file unless a `session` is given)."""
    import tempfile
    if session is None:
        with tempfile.TemporaryDirectory() as tmp:
            session = _export_for_eval(encoder, Path(tmp))
    out = [session.run(None, {"input": normalise(images[i:i + batch]).numpy()})[0]
           for i in range(0, len(images), batch)]
    f = np.concatenate(out)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def retrieval_metrics(encoder: torch.nn.Module, s: dict[str, Any], per_class_instance: bool = False,
                      session=None) -> dict[str, Any]:
    """Category (mAP@all, P@20) and instance (acc@1/5/10) metrics of one retrieval set."""
    if session is None:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            return retrieval_metrics(encoder, s, per_class_instance, _export_for_eval(encoder, Path(tmp)))
    g, q = embed(encoder, s["photos"], session=session), embed(encoder, s["sketches"], session=session)
    scores = q @ g.T                                                                  # (Q, N) cosine
    m = metrics(scores, list(s["sketch_labels"]), list(s["photo_labels"]), list(s["sketch_photo_ids"]),
                list(s["photo_ids"]))
    if per_class_instance:
        ranks = instance_rank(scores, list(s["sketch_photo_ids"]), list(s["photo_ids"]))
        labels = s["sketch_labels"]
        m["per_class_instance"] = {str(c): {"queries": int((labels == c).sum()),
                                            "acc@5": float((ranks[labels == c] < 5).mean()),
                                            "acc@10": float((ranks[labels == c] < 10).mean())}
                                   for c in sorted(set(labels.tolist()))}
    return m


def _export_for_eval(encoder: torch.nn.Module, folder: Path):
    """The whole encoder as one ONNX Runtime session (the frozen part's runner set aside for the export)."""
    runner = getattr(encoder, "frozen_runner", None)
    if runner is not None:
        encoder.frozen_runner = None
    try:
        return onnx_session(encoder, folder / "encoder.onnx")
    finally:
        if runner is not None:
            encoder.frozen_runner = runner


# -- training -------------------------------------------------------------------------------------
def make_model(cfg: ContextConfig) -> torch.nn.Module:
    from ..nets.context import ContextNet, make_encoder
    return ContextNet(make_encoder(cfg.arch, cfg.frozen_blocks))


def val_pairs(photos: np.ndarray, edges: np.ndarray, rows: np.ndarray, cfg: ContextConfig, n: int = 512):
    """Fixed held-out pretext pairs (Sketchy val photos), the same for every evaluation."""
    rng = np.random.default_rng(1234)
    return sample_pairs(photos, edges, rng.choice(rows, size=n), rng, cfg)


@torch.no_grad()
def pretext_accuracy(model: torch.nn.Module, pairs, batch: int = 128) -> float:
    model.eval()
    a, b, y = pairs
    hits = 0
    for i in range(0, len(y), batch):
        hits += int((model(normalise(a[i:i + batch]), normalise(b[i:i + batch])).argmax(1).numpy()
                     == y[i:i + batch]).sum())
    return hits / len(y)


def train(cfg: ContextConfig) -> Path:
    """The flat training loop; writes runs/<name>/ckpt.pt (+ curves.json, eval.json)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    name = cfg.run_name or default_run_name(cfg)
    out = run_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    photos, edges, recs = load_pretext()
    split = np.asarray([r["split"] for r in recs])
    train_rows, held_rows = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    print(f"pretext: {len(train_rows)} training photos (+ mirrored), {len(held_rows)} held out", flush=True)
    photos, edges = np.asarray(photos), np.asarray(edges)                         # into memory (~0.9 GB)
    vpairs = val_pairs(photos, edges, held_rows, cfg)
    vsets = retrieval_sets()

    model = make_model(cfg)
    if cfg.arch == "lite0":
        model.encoder.frozen_runner = frozen_runner(model.encoder, out / "frozen.onnx")
    enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
    enc_lr = cfg.encoder_lr if cfg.arch == "lite0" else cfg.lr
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": enc_lr}, {"params": head_params, "lr": cfg.lr}],
                            weight_decay=cfg.weight_decay)
    curves: list[dict[str, Any]] = []
    t_start = time.time()
    deadline = t_start + 60 * cfg.max_minutes
    next_val = t_start
    step, run_loss, run_acc, n_run = 0, 0.0, 0.0, 0

    def validate() -> None:
        nonlocal run_loss, run_acc, n_run
        row = {"epoch": len(curves), "step": step, "minutes": round((time.time() - t_start) / 60, 2),
               "train_loss": run_loss / n_run if n_run else None,
               "train_pretext_acc": run_acc / n_run if n_run else None,
               "val_pretext_acc": pretext_accuracy(model, vpairs)}
        m = retrieval_metrics(model.encoder, vsets["val"])
        row.update({f"val_{k}": m[k] for k in ("mAP@all", "P@20", "acc@1", "acc@10")})
        curves.append(row)
        (out / "curves.json").write_text(json.dumps(curves, indent=1))
        torch.save({"encoder": model.encoder.state_dict(), "config": asdict(cfg), "steps": step},
                   out / f"ckpt_val{row['epoch']}.pt")       # each validation point, to test like-for-like budgets
        print(json.dumps(row), flush=True)
        run_loss, run_acc, n_run = 0.0, 0.0, 0
        model.train()

    while True:
        now = time.time()
        if now >= next_val:
            validate()
            next_val = time.time() + 60 * cfg.val_every_minutes
        if time.time() >= deadline or step >= cfg.max_steps:
            break
        a, b, y = sample_pairs(photos, edges, rng.choice(train_rows, size=cfg.batch), rng, cfg)
        model.train()
        logits = model(normalise(a), normalise(b))
        yt = torch.from_numpy(y)
        loss = F.cross_entropy(logits, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        run_loss += float(loss.detach())
        run_acc += float((logits.argmax(1) == yt).float().mean())
        n_run += 1
        if step % 50 == 0:
            print(f"step {step} loss {run_loss / n_run:.3f} acc {run_acc / n_run:.3f} "
                  f"{(time.time() - t_start) / 60:.1f} min", flush=True)
    if n_run:
        validate()
    ckpt = {"encoder": model.encoder.state_dict(), "head": {k: v for k, v in model.state_dict().items()
                                                            if not k.startswith("encoder.")},
            "config": asdict(cfg), "steps": step, "curves": curves}
    torch.save(ckpt, out / "ckpt.pt")
    print(f"saved {out / 'ckpt.pt'} after {step} steps", flush=True)
    return out / "ckpt.pt"


def load_encoder(ckpt: dict) -> torch.nn.Module:
    """The trained encoder of a checkpoint (fp16 weights of a shipped one are read as float32)."""
    from ..nets.context import make_encoder
    cfg = ckpt["config"]
    enc = make_encoder(cfg["arch"], cfg.get("frozen_blocks", 5))
    enc.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["encoder"].items()})
    return enc.eval()


def edge_to_photo_set(size: int = RETRIEVAL.size) -> dict[str, np.ndarray]:
    """The held-out pretext photos (Sketchy `val`) and their own edge maps, prepared as served (the
    edge map as a sketch). Needs no label: each edge map's answer is its own photo."""
    from ..data.preprocess import _is_blank
    photos, edges, recs = load_pretext()
    rows = [i for i, r in enumerate(recs) if r["split"] == "val" and not _is_blank(edges[i])]
    ids = np.asarray([str(i) for i in rows])
    return {"photos": np.stack([np.asarray(prepare_photo(Image.fromarray(photos[i]), size)) for i in rows]),
            "sketches": np.stack([np.asarray(prepare_sketch(Image.fromarray(edges[i]), size, RETRIEVAL.margin))
                                  for i in rows]),
            "photo_labels": ids, "photo_ids": ids, "sketch_labels": ids, "sketch_photo_ids": ids}


def select_checkpoint(folder: Path) -> dict[str, Any]:
    """Pick a run's stopping point without any label: of the checkpoints saved at each validation,
    the one whose held-out edge maps find their own photo most often (acc@10, then acc@1). Adds
    `sel_edge2photo_acc@1/@10` to the run's curves and writes `selected.json`."""
    eset = edge_to_photo_set()
    curves = json.loads((folder / "curves.json").read_text())
    scores = []
    for row in curves:
        path = folder / f"ckpt_val{row['epoch']}.pt"
        if not path.is_file():
            continue
        m = retrieval_metrics(load_encoder(torch.load(path, map_location="cpu", weights_only=False)), eset)
        row["sel_edge2photo_acc@1"], row["sel_edge2photo_acc@10"] = m["acc@1"], m["acc@10"]
        scores.append((m["acc@10"], m["acc@1"], row["epoch"]))
        print(f"{path.name}: step {row['step']} edge->photo acc@1 {m['acc@1']:.3f} acc@10 {m['acc@10']:.3f}",
              flush=True)
    (folder / "curves.json").write_text(json.dumps(curves, indent=1))
    best = max(scores)
    sel = {"checkpoint": f"ckpt_val{best[2]}.pt", "epoch": best[2], "step": curves[best[2]]["step"],
           "edge2photo_acc@10": best[0], "edge2photo_acc@1": best[1]}
    (folder / "selected.json").write_text(json.dumps(sel, indent=1))
    print(f"selected {sel}", flush=True)
    return sel


def evaluate_encoders(encoders: dict[str, tuple[torch.nn.Module, int]], out: Path | None = None) -> dict[str, Any]:
    """Held-out retrieval of several torch encoders ({name: (encoder, input size)}): Sketchy test
    (category and instance level, per-class instance acc@5/10) and shoes (instance level)."""
    results = {}
    for name, (enc, size) in encoders.items():
        sets = retrieval_sets(size)
        t0 = time.time()
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            sess = _export_for_eval(enc, Path(tmp))
            results[name] = {"input_size": size,
                             "sketchy_test": retrieval_metrics(enc, sets["test"], True, sess),
                             "shoes": retrieval_metrics(enc, sets["shoes"], session=sess)}
        st, sh = results[name]["sketchy_test"], results[name]["shoes"]
        print(f"{name:>20}: Sketchy mAP@all {st['mAP@all']:.4f} P@20 {st['P@20']:.4f} acc@1/5/10 "
              f"{st['acc@1']:.3f}/{st['acc@5']:.3f}/{st['acc@10']:.3f}  shoes acc@1/10 {sh['acc@1']:.3f}/"
              f"{sh['acc@10']:.3f}  ({time.time() - t0:.0f}s)", flush=True)
    if out:
        out.write_text(json.dumps(results, indent=1))
    return results


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="lite0", choices=["lite0", "alexnet", "lite0_scratch"])
    ap.add_argument("--same-domain", action="store_true", help="ablation: both patches from the same domain")
    ap.add_argument("--max-minutes", type=float, default=20.0)
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--val-every", type=float, default=6.0, help="minutes between validations")
    ap.add_argument("--encoder-lr", type=float, default=5e-5)
    ap.add_argument("--frozen-blocks", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-name", default="")
    ap.add_argument("--select", metavar="RUN_DIR", help="only pick RUN_DIR's stopping point, without labels "
                    "(edge map -> own photo retrieval on held-out photos; see select_checkpoint)")
    ap.add_argument("--evaluate", nargs="*", metavar="CKPT",
                    help="only evaluate: these checkpoints, the ImageNet Lite0 at 128 px and `pretrained` (224 px)")
    a = ap.parse_args(argv)
    if a.select:
        torch.set_num_threads(1)
        select_checkpoint(Path(a.select))
        return
    if a.evaluate is not None:
        from ..nets.backbone import PooledFeatures, lite0
        torch.set_num_threads(1)
        encs: dict[str, tuple[torch.nn.Module, int]] = {
            "pretrained (Lite0 ImageNet, 224 px)": (PooledFeatures(lite0(image_size=224)).eval(), 224),
            "Lite0 ImageNet, 128 px": (PooledFeatures(lite0(image_size=128)).eval(), 128)}
        for p in a.evaluate:
            ck = torch.load(p, map_location="cpu", weights_only=False)
            encs[f"{Path(p).parent.name}/{Path(p).stem}"] = (load_encoder(ck), RETRIEVAL.size)
        evaluate_encoders(encs, CACHE / "evaluation.json")
        return
    cfg = ContextConfig(arch=a.arch, cross=not a.same_domain, max_minutes=a.max_minutes, max_steps=a.max_steps,
                        val_every_minutes=a.val_every, encoder_lr=a.encoder_lr, frozen_blocks=a.frozen_blocks,
                        batch=a.batch, seed=a.seed, run_name=a.run_name)
    ckpt = train(cfg)
    evaluate_encoders({ckpt.parent.name: (load_encoder(torch.load(ckpt, weights_only=False)), RETRIEVAL.size)},
                      ckpt.parent / "eval.json")


if __name__ == "__main__":
    main()
