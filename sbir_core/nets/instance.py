"""The `instance` backend's trainable parts: embeddings that keep *where* things are in the picture
(pose, orientation, parts), so a sketch finds the very photo it was drawn from, not only its class.

Both branches read the frozen trunk's spatial features (B, 320, 6, 6) before any global pooling. A
branch maps every cell (1x1 conv, then a depthwise 3x3 conv for a little positional slack), and the embedding
is the flattened grid of small per-cell codes (spatial), a globally pooled code (pooled), or both
concatenated. Sketches and photo edge maps share one branch, photos have their own.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import TRUNK_BLOCKS, TRUNK_CHANNELS, freeze, lite0

MODES = ("spatial", "pooled", "both")


class InstanceBranch(nn.Module):
    """(B, 320, h, w) trunk features -> (B, D) unit vectors.

    mode `spatial`: D = cell * h * w (each grid cell's code, L2-normalised per cell so every part of
    the picture counts alike; with `residual`, D = C * h * w: the centred input grid itself plus a
    learnt correction that starts at zero, so training starts from the frozen features' own spatial
    match and cannot forget it on a few hundred pairs); `pooled`: D = gdim (global average pool, the ablation); `both`: the two
    unit vectors concatenated with weights sqrt(1 - g) and sqrt(g), so the result is a unit vector too."""

    def __init__(self, mode: str = "both", mid: int = 128, cell: int = 32, gdim: int = 128,
                 global_share: float = 0.3, in_channels: int = TRUNK_CHANNELS, residual: bool = False,
                 grid: int = 6):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.global_share = mode, global_share
        self.body = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                                  nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False),   # depthwise: cheap slack
                                  nn.BatchNorm2d(mid), nn.ReLU())
        self.cell = nn.Conv2d(mid, cell, 1) if mode != "pooled" else None
        self.pool = nn.Linear(mid, gdim) if mode != "spatial" else None
        self.residual = residual
        if residual:                 # the grid itself (centred), plus a learnt correction that starts at zero
            self.center = nn.Parameter(torch.zeros(in_channels, grid, grid))
            self.cell = nn.Conv2d(mid, in_channels, 1) if mode != "pooled" else None
            if self.cell is not None:
                nn.init.zeros_(self.cell.weight)
                nn.init.zeros_(self.cell.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.residual:
            f = f - self.center
        h = self.body(f)                                                         # (B, mid, h, w)
        parts = []
        if self.cell is not None and self.residual:                              # (B, C, h, w): centred grid + correction
            parts.append(F.normalize((f + self.cell(h)).flatten(1), dim=-1))
        elif self.cell is not None:
            c = F.normalize(self.cell(h), dim=1)                                 # (B, cell, h, w), unit per cell
            parts.append(F.normalize(c.flatten(1), dim=-1))
        if self.pool is not None:
            parts.append(F.normalize(self.pool(h.mean(dim=(2, 3))), dim=-1))
        if len(parts) == 1:
            return parts[0]
        g = self.global_share
        return torch.cat([parts[0] * (1 - g) ** 0.5, parts[1] * g ** 0.5], dim=-1)


class FrozenBlocksThen(nn.Module):
    """Frozen ImageNet MBConv blocks[start:end] then a branch: serves the sketch branch on the features
    the `classifier` backend's trunk file already computes (after blocks[:start]), so one trunk run
    feeds both stages. (B, C_start, h, w) -> the branch's output. `end` < 16 when the branch trains
    blocks[end:] itself (`TrainedBlocks`); start == end is no block at all."""

    def __init__(self, branch: nn.Module, start: int, end: int = TRUNK_BLOCKS):
        super().__init__()
        if not 0 <= start <= end <= TRUNK_BLOCKS:
            raise ValueError(f"frozen blocks [{start}:{end}] do not fit a {TRUNK_BLOCKS}-block trunk")
        self.blocks = freeze(nn.Sequential(*lite0()._blocks[start:end]))
        self.branch = branch

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.branch(self.blocks(f))


class TrainedBlocks(nn.Module):
    """MBConv blocks[start:16] (ImageNet weights to start with, then trained for instance matching),
    the fixed cell projection and a branch: the sketch side of `instance` when it trains trunk blocks
    on features cached after blocks[:start] (`features --end START`). Batch-norm statistics stay
    ImageNet's (eval mode even while training: batches of ~100 sketches of one kind would skew them);
    its scales and shifts train. At start it is exactly the frozen trunk's grid, then the branch.
    (B, C_start, h, w) -> the branch's output."""

    def __init__(self, branch: nn.Module, projection: nn.Module, start: int):
        super().__init__()
        self.start = start
        self.blocks = nn.Sequential(*lite0()._blocks[start:TRUNK_BLOCKS])
        self.projection, self.branch = projection, branch

    def train(self, mode: bool = True) -> "TrainedBlocks":
        super().train(mode)
        self.blocks.eval()
        return self

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.branch(self.projection(self.blocks(f)))


class CellProjection(nn.Module):
    """A fixed linear map of every grid cell's trunk features (PCA fitted once on cached sketch, photo
    and edge cells): (B, C, h, w) -> (B, K, h, w). It keeps what varies between pictures in K << C
    channels, so the trainable branches run on small inputs (training on two shared CPU cores)."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", components.float()[:, :, None, None].clone())      # (K, C, 1, 1)
        self.register_buffer("bias", -(components.float() @ mean.float()).clone())        # (K,)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.conv2d(f, self.weight, self.bias)


def fit_cell_pca(cells: "np.ndarray", k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, C) cell feature samples -> mean (C,), components (k, C) scaled to unit variance (whitened)."""
    import numpy as np
    x = cells.astype(np.float64)
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    std = s[:k] / np.sqrt(len(x) - 1)
    return torch.from_numpy(mean).float(), torch.from_numpy(vt[:k] / std[:, None]).float()


class Projected(nn.Module):
    """(pool p x p, then) CellProjection, then a branch: what is exported (the projection is fixed, the
    branch trained). `pool` > 1 for a branch on an earlier, finer grid (`train.instance --grid-pool`)."""

    def __init__(self, projection: CellProjection, branch: nn.Module, pool: int = 1):
        super().__init__()
        self.projection, self.branch, self.pool = projection, branch, pool

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:
            f = F.avg_pool2d(f, self.pool)
        return self.branch(self.projection(f))


class PhotoGridHead(nn.Module):
    """Photos for a branch on the grid after blocks[:grid_from], with one trunk run per photo: frozen
    blocks[start:grid_from], then two outputs: the branch's embedding of that grid, and the rest of
    the frozen trunk (blocks[grid_from:16], (B, 320, 6, 6)) that the classifier's photo head reads.
    (B, C_start, h, w) -> (embedding, trunk features)."""

    def __init__(self, branch: nn.Module, start: int, grid_from: int):
        super().__init__()
        if not 0 <= start <= grid_from < TRUNK_BLOCKS:
            raise ValueError(f"a grid after block {grid_from} cannot be reached from block {start}")
        blocks = lite0()._blocks
        self.to_grid = freeze(nn.Sequential(*blocks[start:grid_from]))
        self.rest = freeze(nn.Sequential(*blocks[grid_from:TRUNK_BLOCKS]))
        self.branch = branch

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.to_grid(f)
        return self.branch(g), self.rest(g)
