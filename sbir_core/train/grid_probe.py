"""How well does a frozen trunk grid, untrained, find the very photo that was drawn?

    python -m sbir_core.train.grid_probe b13:1:96 b11:2:112 b16:1:96 [--split test]

Each spec is `cache:pool:k`: the cached features after blocks[:N] (`b16` = the whole trunk; caches from
`python -m sbir_core.train.features --parts shoes,oriented,block_photos --end N`), average-pooled
p x p, each cell's channels projected by a whitened PCA to k (fitted on 800 sketches and 800 training
photos). A sketch's and a photo's grids are centred (each set's mean grid) and compared by the cosine
of the flattened grids. Reported: the drawn photo's rank among the photos of its own class (Sketchy,
both folders) and among all 304 shoes. How `instance` chose its grid (docs/instance.md).
"""
from __future__ import annotations

import argparse

import numpy as np

from . import cached


def _pool(x: np.ndarray, p: int) -> np.ndarray:
    n, c, h, w = x.shape
    return x if p == 1 else x.reshape(n, c, h // p, p, w // p, p).mean((3, 5))


def _whitening(samples: list[np.ndarray], k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The instance branch's cell PCA (`fit_cell_pca`) on up to 60,000 sampled cells."""
    from ..nets.instance import fit_cell_pca
    cells = np.concatenate([a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1]) for a in samples])
    mean, comps = fit_cell_pca(cells[rng.choice(len(cells), min(len(cells), 60000), replace=False)], k)
    return mean.numpy(), comps.numpy()


def _unit(grids: np.ndarray, centre: np.ndarray) -> np.ndarray:
    z = (grids - centre).reshape(len(grids), -1)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def probe(spec: str, split: str = "test") -> dict[str, float]:
    """Untrained grid matching for one `cache:pool:k` spec."""
    name, p, k = spec.split(":")
    p, k = int(p), int(k)
    sfx = "" if name == "b16" else "_" + name
    rng = np.random.default_rng(0)
    sk, ph = cached.load("sketches_oriented" + sfx), cached.load("photos" + sfx)
    ssk, sph = cached.load("shoe_sketches" + sfx), cached.load("shoe_photos" + sfx)
    train = np.asarray([i for i, r in enumerate(ph.records) if r["split"] == "train"])
    samples = [_pool(np.asarray(a.feats[np.sort(rng.choice(rows, 800, replace=False)), 0], np.float32), p)
               for a, rows in ((sk, np.arange(len(sk.records))), (ph, train))]
    mean, comps = _whitening(samples, k, rng)

    def project(feats: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.concatenate([np.einsum("nchw,kc->nkhw", _pool(np.asarray(feats[rows[i:i + 500], 0], np.float32), p)
                                         - mean[None, :, None, None], comps, optimize=True)
                               for i in range(0, len(rows), 500)])

    out = {}
    for label, sketches, photos, within_class in (("sketchy", sk, ph, True), ("shoes", ssk, sph, False)):
        col = {r["photo_id"]: i for i, r in enumerate(photos.records)}
        q = np.asarray([i for i, r in enumerate(sketches.records) if r["split"] == split and r["photo_id"] in col])
        Q, P = project(sketches.feats, q), project(photos.feats, np.arange(len(photos.records)))
        centre = P[train].mean(0) if within_class else P.mean(0)
        sim = _unit(Q, Q.mean(0)) @ _unit(P, centre).T
        own = np.asarray([col[sketches.records[i]["photo_id"]] for i in q])
        better = sim > sim[np.arange(len(q)), own][:, None]
        if within_class:
            labels = np.asarray([r["label"] for r in photos.records])
            better &= labels[own][:, None] == labels[None, :]
        rank = better.sum(1)
        out |= {f"{label}@{n}": float((rank < n).mean()) for n in (1, 5, 10)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+", help="cache:pool:k, e.g. b13:1:96")
    ap.add_argument("--split", default="test")
    a = ap.parse_args(argv)
    for spec in a.specs:
        r = probe(spec, a.split)
        print(spec, " ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
