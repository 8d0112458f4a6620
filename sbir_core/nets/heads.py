"""Trainable parts that sit on the frozen trunk's cached features (B, 320, h, w), and the
reference system's small CNN. Everything here is exported to ONNX for serving."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .backbone import FEATURE_DIM, TRUNK_BLOCKS, Top, freeze, lite0


def imagenet_top(start: int = TRUNK_BLOCKS) -> Top:
    """The ImageNet blocks[start:] + head conv + pool, as a starting point (a fresh copy each call)."""
    return Top(lite0(), start)


class ClassifierHead(nn.Module):
    """Trunk features -> class logits: trainable MBConv blocks[start:] (none by default), head conv,
    dropout, linear. (B, C_start, h, w) trunk features up to block `start` -> (B, n_classes)."""

    def __init__(self, n_classes: int, dropout: float = 0.3, start: int = TRUNK_BLOCKS):
        super().__init__()
        self.top = imagenet_top(start)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(FEATURE_DIM, n_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.top(f)))


class Probabilities(nn.Module):
    """Wrap a logits model so the exported ONNX returns softmax probabilities."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(dim=-1)


class KindReading(nn.Module):
    """A trained `ClassifierHead` served with what teaching needs: (B, C_start, h, w) -> (P(kind) (B, C),
    logits (B, C), pooled features (B, 1280)). The logits and features let serving add a kind taught
    from a few drawings (weight imprinting) and drop kinds, without torch (`sbir_core.teach`)."""

    def __init__(self, head: ClassifierHead):
        super().__init__()
        self.head = head

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = self.head.top(f)
        logits = self.head.fc(pooled)
        return logits.softmax(dim=-1), logits, pooled


class PhotoClassifierHead(nn.Module):
    """Frozen ImageNet head + a linear probe over the vocabulary: labels unlabelled gallery photos."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.top = freeze(imagenet_top())
        self.fc = nn.Linear(FEATURE_DIM, n_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.top(f))


class VocabularyPhotoLabeller(nn.Module):
    """Photo -> P(kind) over the whole vocabulary, for photos without a label (a visitor's folder, a
    store). Two experts on the same frozen pooled features (B, 1280):
    - the trained probe (`PhotoClassifierHead`: Sketchy's photos, so its kinds are `trained`);
    - the backbone's own ImageNet-1k head, its 1,000 probabilities summed into vocabulary kinds by the
      reviewed map `sbir_core/data/imagenet_vocabulary.tsv` (`imagenet_map`, (1000, C) 0/1).
    The ImageNet head's mass on kinds the probe never saw (a hat, a tent... outside Sketchy: O) goes
    to those kinds, the rest (1 - O, mass on Sketchy's kinds or on no kind) is shared out by the probe;
    `imagenet_weight` scales the odds of the unseen kinds against the probe's (a prior: the probe is
    trained on photos of its kinds, the map only names them), then the whole is renormalised, so a
    photo ImageNet is sure of can still be filed with confidence.
    (B, 320, h, w) trunk features -> (B, C) probabilities summing to 1."""

    def __init__(self, probe: PhotoClassifierHead, imagenet_fc: nn.Linear, imagenet_map: torch.Tensor,
                 trained: torch.Tensor, imagenet_weight: float):
        super().__init__()
        self.top, self.fc = probe.top, probe.fc
        self.imagenet_fc = copy.deepcopy(imagenet_fc)
        other = imagenet_map * (~trained.bool()).float()[None, :]                        # (1000, C) unseen kinds only
        self.register_buffer("imagenet_map", other)
        self.register_buffer("trained", trained.float())                                 # (C,)
        self.imagenet_weight = float(imagenet_weight)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        pooled = self.top(f)                                                             # (B, 1280)
        probe = torch.softmax(self.fc(pooled), dim=-1) * self.trained                   # (B, C)
        probe = probe / probe.sum(dim=-1, keepdim=True)
        other = torch.softmax(self.imagenet_fc(pooled), dim=-1) @ self.imagenet_map    # (B, C) unseen kinds
        unseen = other.sum(dim=-1, keepdim=True)                                         # (B, 1) O
        w = self.imagenet_weight
        return ((1.0 - unseen) * probe + w * other) / (1.0 - unseen + w * unseen)       # (B, C)


class SmallSketchCNN(nn.Module):
    """The reference system's own network: 3 conv + max-pool pairs and 2 dense layers, from scratch.
    (B, 3, S, S) -> (B, C); grey input is replicated to 3 channels by the shared preprocessing."""

    def __init__(self, n_classes: int, size: int = 64, width: int = 32, hidden: int = 512, dropout: float = 0.4):
        super().__init__()
        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
        self.features = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width))
        flat = 4 * width * (size // 8) ** 2
        self.dense = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(),
                                   nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))
