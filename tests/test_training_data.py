"""The classifier's training data: stroke augmentation, fixed held-out splits, batch composition."""
from __future__ import annotations

import numpy as np
import pytest

from sbir_core.heldout import quickdraw_rows_disjoint_from_training
from sbir_core.data import readers, splits
from sbir_core.data.classes import VOCABULARY, canonical
from sbir_core.data.render import render_strokes

from .conftest import need_data


def _drawing() -> list[tuple[np.ndarray, np.ndarray]]:
    """A house: square body, triangle roof, a door (Quick, Draw! 0-255 coordinates)."""
    return [(np.array([50., 200, 200, 50, 50]), np.array([120., 120, 250, 250, 120])),
            (np.array([40., 125, 210]), np.array([120., 20, 120])),
            (np.array([110., 110, 140, 140]), np.array([250., 190, 190, 250]))]


def test_augment_strokes_varies_the_drawing_but_keeps_it_whole():
    from sbir_core.train.augment import augment_strokes
    rng = np.random.default_rng(0)
    base = np.asarray(render_strokes(_drawing(), 64)) < 128
    variants = [augment_strokes(_drawing(), rng) for _ in range(40)]
    assert all(len(v) in (2, 3) for v in variants)                    # at most one stroke dropped
    assert any(len(v) == 2 for v in variants) and any(len(v) == 3 for v in variants)
    ink = [np.asarray(render_strokes(v, 64)) < 128 for v in variants]
    overlap = [(a & base).sum() / base.sum() for a in ink]
    assert max(overlap) < 0.95                                         # every variant differs from the original
    assert np.median(overlap) > 0.2                                    # ... but is still the same drawing
    again = augment_strokes(_drawing(), np.random.default_rng(0))
    assert all(np.allclose(a[0], b[0]) for a, b in zip(again, variants[0]))   # seeded: reproducible


def test_tuberlin_split_is_fixed_per_class_and_whole():
    root = need_data("tuberlin")
    items = readers.tuberlin(root)
    split = splits.tuberlin_splits(items)
    assert split == splits.tuberlin_splits(list(items))
    for c in {it.raw_label for it in items}:
        s = [sp for it, sp in zip(items, split) if it.raw_label == c]
        assert s.count("test") == splits.TUBERLIN_TEST and s.count("val") == splits.TUBERLIN_VAL
    assert all(it.label in VOCABULARY for it in items)                 # every TU-Berlin class is in the vocabulary


def test_quickdraw_evaluation_rows_are_never_trained_on():
    assert quickdraw_rows_disjoint_from_training()
    assert set(splits.QUICKDRAW_EVAL_ROWS).isdisjoint(splits.QUICKDRAW_STROKE_TRAIN_ROWS)


def test_vocabulary_covers_every_drawn_class():
    root = need_data("quickdraw", "simplified")
    names = [p.stem for p in root.glob("*.ndjson")]
    unmapped = sorted(n for n in names if canonical(n) is None)
    assert len(unmapped) == 9 and "circle" in unmapped               # only the abstract shapes stay out
    assert len(VOCABULARY) == len(set(VOCABULARY))


def test_batch_counts_follow_the_shares():
    pytest.importorskip("torch")
    from sbir_core.train.classifier import ClassifierConfig, _batch_counts
    counts = _batch_counts(ClassifierConfig().shares(), 128)
    assert sum(counts.values()) == 128 and set(counts) == {"sketches", "tuberlin", "quickdraw", "strokes", "edges"}
    assert counts["sketches"] > counts["tuberlin"] > 0
    assert "edges" not in ClassifierConfig(edges_share=0).shares()


def test_a_head_trained_from_a_later_block_starts_a_longer_one():
    """Stage 3 (blocks 11-15) starts from stage 2 (blocks 13-15): every trained tensor lands on
    the block it was trained as, and the two extra blocks keep their ImageNet weights."""
    torch = pytest.importorskip("torch")
    from sbir_core.nets.heads import ClassifierHead
    from sbir_core.train.classifier import _init_tensors
    torch.manual_seed(0)
    short, long_ = ClassifierHead(7, start=13), ClassifierHead(7, start=11)
    with torch.no_grad():
        for p in short.parameters():
            p.add_(torch.randn_like(p))
    imagenet = {k: v.clone() for k, v in long_.state_dict().items()}
    take = _init_tensors(short.state_dict(), 13, 11, long_.state_dict())
    assert len(take) == len(short.state_dict())
    long_.load_state_dict(take, strict=False)
    x = torch.randn(2, 192, 6, 6)                        # the input of block 13
    short.eval(), long_.eval()
    with torch.no_grad():
        assert torch.allclose(long_.top.blocks[2](x), short.top.blocks[0](x))
        assert torch.equal(long_.fc.weight, short.fc.weight)
    assert all(torch.equal(long_.state_dict()[k], v) for k, v in imagenet.items() if k.startswith("top.blocks.0."))
