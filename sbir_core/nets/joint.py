"""The `triplet` backend's joint sketch/photo embedding: one space where sketch vectors and photo
vectors are compared by cosine.

Each side's vector is two unit parts, weighted so the whole is a unit vector too:
- a semantic part (`dim`): what kind of thing it is, placed by proxies shared by sketches and photos
  (every kind of the vocabulary has one, so kinds without training photos still place their sketches);
- an instance part (the grid's per-cell codes): where things are in the picture, so a sketch finds
  the very photo it was drawn from among photos of its kind.
cosine(sketch, photo) = (1 - w) * semantic cosine + w * instance cosine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import FEATURE_DIM, Top
from .instance import InstanceBranch


class Semantic(nn.Module):
    """Pooled features (B, 1280) -> (B, dim) unit vectors."""

    def __init__(self, dim: int = 256, hidden: int = 1024, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, hidden), nn.BatchNorm1d(hidden),
                                 nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(pooled), dim=-1)


def photo_semantic(sem: torch.Tensor, probs: torch.Tensor, proxies: torch.Tensor, prior: float) -> torch.Tensor:
    """A photo's semantic part: its own embedding plus `prior` x the photo labeller's reading as a point
    of the space (P(kind) over the unit proxies), so photos of kinds no training photo showed (the
    labeller names them from ImageNet) still land near their kind's sketches."""
    reading = F.normalize(probs @ F.normalize(proxies, dim=-1), dim=-1)
    return F.normalize(sem + prior * reading, dim=-1)


def fuse(semantic: torch.Tensor, instance: torch.Tensor, weight: float) -> torch.Tensor:
    """Two unit parts -> one unit vector whose cosines are (1 - w) x semantic + w x instance."""
    return torch.cat([semantic * (1 - weight) ** 0.5, instance * weight ** 0.5], dim=-1)


class Parts(nn.Module):
    """The trainable parts, on cached features (training) or inside the served heads (export)."""

    def __init__(self, n_classes: int, dim: int = 256, hidden: int = 1024, dropout: float = 0.2,
                 mid: int = 128, cell: int = 16):
        super().__init__()
        self.sketch_sem = Semantic(dim, hidden, dropout)
        self.photo_sem = Semantic(dim, hidden, dropout)
        self.proxies = nn.Parameter(torch.randn(n_classes, dim) * 0.1)
        self.sketch_inst = InstanceBranch("spatial", mid=mid, cell=cell)
        self.photo_inst = InstanceBranch("spatial", mid=mid, cell=cell)

    @classmethod
    def from_checkpoint(cls, ck: dict) -> "Parts":
        """The trained parts of a `sbir_core.train.triplet` checkpoint, in eval mode."""
        c = ck["config"]
        parts = cls(len(ck["classes"]), c["dim"], c["hidden"], c["dropout"], c["mid"], c["cell"])
        parts.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
        return parts.eval()


class JointSketchHead(nn.Module):
    """Served sketch side: the classifier's trained blocks + head conv (frozen), then the parts.
    (B, C, h, w) features after the shared trunk file's blocks -> (B, D)."""

    def __init__(self, top: Top, parts: Parts, weight: float):
        super().__init__()
        self.top, self.sem, self.inst, self.weight = top, parts.sketch_sem, parts.sketch_inst, weight

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        for b in self.top.blocks:
            f = b(f)
        pooled = self.top.act(self.top.bn1(self.top.conv_head(f))).mean(dim=(2, 3))
        return fuse(self.sem(pooled), self.inst(f), self.weight)


class JointPhotoHead(nn.Module):
    """Served photo side: the frozen ImageNet head and the photo labeller, then the parts.
    (B, 320, 6, 6) trunk features -> (B, D)."""

    def __init__(self, top: Top, labeller: nn.Module, parts: Parts, prior: float, weight: float):
        super().__init__()
        self.top, self.labeller = top, labeller
        self.sem, self.inst, self.proxies = parts.photo_sem, parts.photo_inst, parts.proxies
        self.prior, self.weight = prior, weight

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        sem = photo_semantic(self.sem(self.top(g)), self.labeller(g), self.proxies, self.prior)
        return fuse(sem, self.inst(g), self.weight)
