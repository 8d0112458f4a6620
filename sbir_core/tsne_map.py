"""A 2-D map of an embedding backend's joint space: gallery photos and real sketches, by t-SNE.

    python -m sbir_core.tsne_map --backend triplet [--photos DIR] [--sketches DIR] [--per-class 2]
    python -m sbir_core.tsne_map --all          # every backend that embeds sketches and photos as vectors

Offline, openTSNE embeds the photos (default: the bundled gallery) and a sample of held-out
sketches (Sketchy test sketches, and Quick, Draw! drawings of every kind the photos show), after a
PCA to 64 dimensions, and writes `models/tsne_<backend>.npz`.

Serving places a new sketch without openTSNE (so the app imports neither it nor scipy/sklearn):
the sketch is projected with the same PCA and put at the similarity-weighted average of its
k nearest map points. That is how openTSNE itself initialises new points before optimising
them (`prepare_partial`); skipping the optimisation costs a little precision and saves ~0.5 s
and a heavy import per query.
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import MODELS_DIR, REPO_ROOT, data_dir
from .data.preprocess import sketch_input
from .index import l2_normalise

PCA_DIM = 64
NEIGHBOURS = 10


def map_path(name: str, models_dir: Path | None = None) -> Path:
    return (models_dir or MODELS_DIR) / f"tsne_{name}.npz"


def build_command(name: str) -> str:
    return f"python -m sbir_core.tsne_map --backend {name}"


def sketch_vector(backend: Any, sketch: Any) -> np.ndarray:
    """(D,) the backend's embedding of one sketch; ValueError for backends that do not embed."""
    q, _ = backend.encode_sketches(sketch_input(sketch, backend.preprocess)[None])
    q = np.asarray(q)
    if q.ndim != 2 or not np.issubdtype(q.dtype, np.floating):
        raise ValueError(f"backend {backend.name!r} does not embed sketches as vectors")
    return q[0].astype(np.float32)


@dataclass
class EmbeddingMap:
    """Precomputed map points; `place` puts a new sketch on it."""
    backend: str
    feature_key: str
    coords: np.ndarray        # (N, 2) t-SNE coordinates
    features: np.ndarray      # (N, PCA_DIM) unit vectors in PCA space
    pca_mean: np.ndarray      # (D,)
    pca_components: np.ndarray  # (PCA_DIM, D)
    labels: np.ndarray        # (N,) class names ('' when unknown)
    domains: np.ndarray       # (N,) 'photo' | 'sketch'
    ids: np.ndarray           # (N,) item ids
    sources: np.ndarray       # (N,) 'repo:<path>' or 'data:<path>' (never absolute)

    @classmethod
    def load(cls, name: str, models_dir: Path | None = None) -> "EmbeddingMap":
        """FileNotFoundError (with the build command) when the map was never built."""
        path = map_path(name, models_dir)
        if not path.is_file():
            raise FileNotFoundError(f"no embedding map for {name!r} ({path.name}); build it with `{build_command(name)}`")
        try:
            z = np.load(path, allow_pickle=False)
            return cls(str(z["backend"]), str(z["feature_key"]), z["coords"].astype(np.float32),
                       z["features"].astype(np.float32), z["pca_mean"].astype(np.float32),
                       z["pca_components"].astype(np.float32), z["labels"], z["domains"], z["ids"], z["sources"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise FileNotFoundError(f"the embedding map {path.name} is damaged ({e}); rebuild it with "
                                    f"`{build_command(name)}`") from None

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(B, D) backend embeddings -> (B, PCA_DIM) unit vectors in the map's PCA space (a query wider
        than the photos' features - cgan's, with the class reading after the imaginary photo's
        embedding - is placed by its first D values, the part in the photos' space)."""
        vectors = np.asarray(vectors)[:, :len(self.pca_mean)]
        return l2_normalise((l2_normalise(vectors) - self.pca_mean) @ self.pca_components.T)

    def place(self, vector: np.ndarray, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """(D,) embedding -> ((2,) map position, (k,) indices of its nearest map points)."""
        sims = self.features @ self.project(vector[None])[0]                       # (N,)
        nn = np.argsort(-sims)[:k]
        w = np.exp((sims[nn] - sims[nn].max()) / 0.05)                             # sharp, never all-zero
        return (w[:, None] * self.coords[nn]).sum(0) / w.sum(), nn

    def resolve(self, i: int) -> Path | None:
        """The file behind map point i, when it is on this machine (a Quick, Draw! drawing: its file)."""
        s = str(self.sources[i])
        kind, _, rel = s.partition(":")
        root = REPO_ROOT if kind == "repo" else data_dir() if kind == "data" else None
        if root is None:
            return None
        p = root / rel.split("#", 1)[0]
        return p if p.is_file() else None

    def image(self, i: int) -> Any:
        """Map point i as a picture (a photo or sketch file, a Quick, Draw! drawing rendered as on the
        canvas), or None when its source is not on this machine."""
        path = self.resolve(i)
        if path is None:
            return None
        row = str(self.sources[i]).partition("#")[2]
        if not row:
            return path
        from .data.readers import quickdraw_strokes
        from .data.render import render_canvas
        d = next((d for n, d in enumerate(quickdraw_strokes(path, limit=int(row) + 1)) if n == int(row)), None)
        return render_canvas(d["strokes"]) if d else None


def _source(path: Path) -> str:
    path = Path(path).resolve()
    for kind, root in (("data", data_dir().resolve()), ("repo", REPO_ROOT)):
        try:
            return f"{kind}:{path.relative_to(root).as_posix()}"
        except ValueError:
            continue
    return f"file:{path.name}"


def quickdraw_sketches(kinds: set[str], per_class: int) -> list[tuple[str, str, Any]]:
    """Held-out Quick, Draw! drawings (the benchmark's rows 0-) of `kinds`, drawn as on the canvas:
    (kind, source, image) each."""
    from .data.readers import quickdraw_classes, quickdraw_strokes
    from .data.render import render_canvas
    from .data.splits import QUICKDRAW_EVAL_ROWS
    folder = data_dir() / "quickdraw" / "simplified"
    if not folder.is_dir() or per_class < 1:
        return []
    out = []
    for kind, path in sorted(quickdraw_classes(folder, ".ndjson").items()):
        if kind in kinds:
            rows = list(QUICKDRAW_EVAL_ROWS)[:per_class]
            for n, d in enumerate(quickdraw_strokes(path, limit=rows[-1] + 1)):
                if n in rows:
                    out.append((kind, f"{_source(path)}#{n}", render_canvas(d["strokes"])))
    return out


def build(backend_name: str, photos: Path | None = None, sketches: Path | None = None,
          per_class: int = 2, photos_per_class: int = 0, perplexity: float = 30.0, seed: int = 0,
          out: Path | None = None, doodles_per_class: int = 2) -> Path:
    """Embed photos + sampled held-out sketches (Sketchy test sketches, and Quick, Draw! drawings of
    every kind the photos show) with the backend, PCA, openTSNE; write the npz."""
    from openTSNE import TSNE

    from . import Gallery, load_backend
    from .data.readers import image_folder
    from .data.splits import split_of

    backend = load_backend(backend_name, threads=2)
    gallery = Gallery.from_folder(photos) if photos else Gallery.bundled()
    all_feats = gallery.features(backend)            # first: unreadable photos leave the gallery here
    keep = list(range(len(gallery)))
    if photos_per_class:
        counts: dict[Any, int] = {}
        kept = []
        for i in keep:
            if counts.get(gallery.labels[i], 0) < photos_per_class:
                counts[gallery.labels[i]] = counts.get(gallery.labels[i], 0) + 1
                kept.append(i)
        keep = kept
    photo_feats = all_feats[keep]
    if photo_feats.ndim != 2 or not np.issubdtype(photo_feats.dtype, np.floating):
        raise ValueError(f"backend {backend_name!r} does not embed photos as vectors: no map for it")

    sketch_root = Path(sketches) if sketches else data_dir() / "sketchy" / "sketch"
    chosen = []
    if sketch_root.is_dir():
        by_class: dict[str, list] = {}
        for it in image_folder(sketch_root, sketches=True):
            if it.label and split_of(it.photo_id) in ("test", None):
                by_class.setdefault(it.label, []).append(it)
        rng = np.random.default_rng(seed)
        for c in sorted(by_class):
            items = by_class[c]
            chosen += [items[j] for j in sorted(rng.choice(len(items), min(per_class, len(items)), replace=False))]
    doodles = quickdraw_sketches({gallery.labels[i] for i in keep if gallery.labels[i]}, doodles_per_class)
    sketch_feats = np.stack([sketch_vector(backend, it.path) for it in chosen]
                            + [sketch_vector(backend, im) for _, _, im in doodles]) if chosen or doodles else \
        np.zeros((0, photo_feats.shape[1]), np.float32)

    sketch_feats = sketch_feats[:, :photo_feats.shape[1]]       # cgan: the imaginary photo's embedding, not its reading
    x = l2_normalise(np.concatenate([photo_feats, sketch_feats]).astype(np.float32))   # (N, D)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:PCA_DIM]                                                              # (P, D)
    feats = l2_normalise((x - mean) @ comps.T)                                        # (N, P)
    emb = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), metric="cosine",
               random_state=seed, n_jobs=1, verbose=False).fit(feats)
    coords = np.asarray(emb, dtype=np.float32)

    photo_src = [gallery.sources[i] for i in keep]
    out = Path(out) if out else map_path(backend_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, backend=backend_name, feature_key=backend.feature_key, coords=coords,
        features=feats.astype(np.float16), pca_mean=mean.astype(np.float32), pca_components=comps.astype(np.float32),
        labels=np.asarray([gallery.labels[i] or "" for i in keep] + [it.label for it in chosen] + [k for k, _, _ in doodles]),
        domains=np.asarray(["photo"] * len(keep) + ["sketch"] * (len(chosen) + len(doodles))),
        ids=np.asarray([gallery.ids[i] for i in keep] + [it.path.stem for it in chosen]
                       + [f"{k} doodle {src.rsplit('#', 1)[1]}" for k, src, _ in doodles]),
        sources=np.asarray([_source(p) if isinstance(p, (str, Path)) else "" for p in photo_src]
                           + [_source(it.path) for it in chosen] + [src for _, src, _ in doodles]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Precompute the t-SNE embedding map of one embedding backend.")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--backend")
    which.add_argument("--all", action="store_true", help="every trained backend and baseline that embeds as vectors")
    ap.add_argument("--photos", type=Path, help="photo folder (default: the bundled gallery)")
    ap.add_argument("--sketches", type=Path, help="sketch folder (default: ../shared/data/sketchy/sketch, test split)")
    ap.add_argument("--per-class", type=int, default=2, help="Sketchy sketches per class")
    ap.add_argument("--doodles-per-class", type=int, default=2,
                    help="held-out Quick, Draw! drawings per kind the photos show")
    ap.add_argument("--photos-per-class", type=int, default=0, help="cap photos per class (0: all)")
    ap.add_argument("--perplexity", type=float, default=30.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    if a.all:
        from .backends import available_backends
        names = [n for n in available_backends(include_baselines=True) if n != "random"]
    else:
        names = [a.backend]
    failed = 0
    for name in names:
        try:
            path = build(name, a.photos, a.sketches, a.per_class, a.photos_per_class, a.perplexity,
                         out=a.out if not a.all else None, doodles_per_class=a.doodles_per_class)
        except (FileNotFoundError, ValueError, OSError) as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"wrote {path}")
    return 2 if failed and not a.all or failed == len(names) else 0


if __name__ == "__main__":
    sys.exit(main())
