"""Metrics against examples worked by hand."""
import numpy as np
import pytest

from sbir_core.evaluate import (average_precision, capped_precision_at, instance_rank, metrics, per_class,
                                precision_at, relevance)


def test_average_precision_hand_worked():
    # ranked relevance 1 0 1 0 -> AP = (1/1 + 2/3) / 2 = 0.8333
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], bool)
    ap = average_precision(rel)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert ap[1] == pytest.approx(1 / 4)
    assert ap[2] == 0.0


def test_relevance_follows_scores():
    scores = np.array([[0.1, 0.9, 0.5, 0.3]])
    rel = relevance(scores, ["cat"], ["cat", "dog", "cat", "dog"])
    # ranking: idx1 (dog), idx2 (cat), idx3 (dog), idx0 (cat)
    assert rel.tolist() == [[False, True, False, True]]
    assert average_precision(rel)[0] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_precision_at_k_and_capped():
    rel = np.array([[1, 1, 0, 0, 0, 0]], bool)
    assert precision_at(rel, 4)[0] == 0.5
    assert capped_precision_at(rel, 4)[0] == 1.0     # only 2 relevant: both found in the top 4


def test_instance_rank_and_acc():
    scores = np.array([[0.2, 0.8, 0.5], [0.9, 0.1, 0.3], [0.5, 0.5, 0.5]])
    ranks = instance_rank(scores, ["b", "c", "zz"], ["a", "b", "c"])
    assert ranks.tolist() == [0, 1, -1]
    # ties do not favour the sketch: its photo sits where the (stable) ranking puts it
    assert instance_rank(np.array([[0.5, 0.5, 0.5]]), ["c"], ["a", "b", "c"]).tolist() == [2]
    m = metrics(scores, ["x", "y", "x"], ["x", "x", "y"], ["b", "c", "zz"], ["a", "b", "c"], ks=(1, 2))
    assert m["paired_queries"] == 2 and m["acc@1"] == 0.5 and m["acc@2"] == 1.0


def test_metrics_perfect_and_random_rankings():
    labels = np.repeat(np.arange(5), 10)
    onehot = np.eye(5)[labels]
    perfect = metrics(onehot @ onehot.T, labels, labels)
    assert perfect["mAP@all"] == pytest.approx(1.0) and perfect["P@20"] == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    rand = metrics(rng.random((200, 50)), rng.integers(0, 5, 200), labels)
    assert 0.1 < rand["mAP@all"] < 0.35       # ~ 1/5 relevant, so random AP sits near 0.2
    pc = per_class(onehot @ onehot.T, labels, labels)
    assert set(pc) == {str(i) for i in range(5)} and all(v == pytest.approx(1.0) for v in pc.values())


def test_first_row_hit_and_precision_hand_worked():
    # query 0: ranked cat, dog, dog, dog, dog, cat -> a hit in the first 4, P@4 = 1/4
    # query 1: ranked dog x4, cat, cat -> no hit, P@4 = 0
    g = ["cat", "dog", "dog", "dog", "dog", "cat"]
    scores = np.array([[6, 5, 4, 3, 2, 1], [1, 5, 4, 3, 2, 0]], float)
    m = metrics(scores, ["cat", "cat"], g)
    assert m["hit@4"] == 0.5 and m["P@4"] == pytest.approx((1 / 4 + 0) / 2)
