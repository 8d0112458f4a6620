"""The triplet trainer's second stage (photo branch refit) on small synthetic features: it must
file photos under their class proxies, keep sketches next to their own photos, and touch nothing
but the photo branch."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sbir_core.nets.heads import FEATURE_DIM, PhotoProjection, class_posteriors
from sbir_core.train.triplet import TripletConfig, refit_photo_branch

C, D, N_PER = 5, 16, 12


def synthetic():
    """Photos whose pooled features carry their class, sketch embeddings sitting on their class proxy."""
    g = torch.Generator().manual_seed(0)
    proxies = F.normalize(torch.randn(C, D, generator=g), dim=-1)
    y = torch.arange(C).repeat_interleave(N_PER)                                        # (N,)
    means = torch.randn(C, FEATURE_DIM, generator=g)
    pooled = means[y][:, None] + 0.5 * torch.randn(len(y), 2, FEATURE_DIM, generator=g)  # (N, 2, F)
    sketch_photo = np.arange(len(y))
    sketch_emb = F.normalize(proxies[y][:, None] + 0.15 * torch.randn(len(y), 2, D, generator=g), dim=-1)
    return proxies, y, pooled, sketch_photo, sketch_emb


def photo_accuracy(net: torch.nn.Module, proxies: torch.Tensor, pooled: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return (net(pooled[:, 0]) @ proxies.T).argmax(-1).eq(y).float().mean().item()


def test_refit_files_photos_under_their_proxies_and_changes_only_the_photo_branch():
    torch.manual_seed(0)
    proxies, y, pooled, sketch_photo, sketch_emb = synthetic()
    frozen = (proxies.clone(), sketch_emb.clone(), pooled.clone())
    net = PhotoProjection(D, hidden=32)
    before = photo_accuracy(net, proxies, pooled, y)
    cfg = TripletConfig(refit_steps=150, batch=16, refit_lr=3e-3, scale=8.0)
    weights = np.full(len(sketch_photo), 1.0 / len(sketch_photo))
    refit_photo_branch(net, proxies, pooled, y, None, np.arange(len(y)), sketch_emb, sketch_photo, weights, cfg,
                       np.random.default_rng(0))
    assert before < 0.5 and photo_accuracy(net, proxies, pooled, y) == 1.0
    assert all(torch.equal(a, b) for a, b in zip(frozen, (proxies, sketch_emb, pooled)))
    assert not net.training

    # in the served space each sketch's nearest photos are now of its class
    with torch.no_grad():
        q = class_posteriors(sketch_emb[:, 0], proxies, cfg.scale)
        g = class_posteriors(net(pooled[:, 0]), proxies, cfg.scale)
    top = (q @ g.T).topk(N_PER, dim=1).indices                                        # (N, N_PER)
    assert (y[top] == y[:, None]).float().mean().item() > 0.95


def test_refit_follows_the_teacher_where_labels_agree():
    """With distillation, the photo posteriors also take the teacher's ranking of the other classes."""
    torch.manual_seed(0)
    proxies, y, pooled, sketch_photo, sketch_emb = synthetic()
    teacher = torch.full((len(y), 2, C), -4.0)
    teacher[torch.arange(len(y)), :, y] = 4.0
    teacher[torch.arange(len(y)), :, (y + 1) % C] = 3.0                                 # the runner-up class
    net = PhotoProjection(D, hidden=32)
    cfg = TripletConfig(refit_steps=200, batch=16, refit_lr=3e-3, scale=8.0, distill_weight=1.0, refit_triplet_weight=0.0)
    refit_photo_branch(net, proxies, pooled, y, teacher, np.arange(len(y)), sketch_emb, sketch_photo,
                       np.full(len(y), 1.0 / len(y)), cfg, np.random.default_rng(0))
    with torch.no_grad():
        second = (net(pooled[:, 0]) @ proxies.T).topk(2, dim=-1).indices[:, 1]
    assert second.eq((y + 1) % C).float().mean().item() > 0.9
