"""Fréchet distance and KID (sbir_core.bench.image_quality): known values on constructed feature sets."""
from __future__ import annotations

import numpy as np
import pytest

from sbir_core.bench.image_quality import _mmd2_unbiased, frechet_distance, kernel_inception_distance


def gaussian(n: int, d: int, seed: int, mix_seed: int | None = None) -> np.ndarray:
    """n correlated d-dim Gaussian features; one `mix_seed` = one distribution, `seed` the sample."""
    mix = np.random.default_rng(seed if mix_seed is None else mix_seed).standard_normal((d, d)) / np.sqrt(d)
    return np.random.default_rng(seed + 1000).standard_normal((n, d)) @ mix


def test_identical_sets_are_at_distance_zero():
    a, b = gaussian(600, 16, 0, mix_seed=0), gaussian(600, 16, 1, mix_seed=0)
    assert abs(frechet_distance(a, a)) < 1e-8
    same, sd = kernel_inception_distance(a, b, subset_size=200, n_subsets=20)   # two samples, one distribution
    other, _ = kernel_inception_distance(a, gaussian(600, 16, 2, mix_seed=5), subset_size=200, n_subsets=20)
    assert abs(same) < 3 * sd and abs(same) < 0.25 * other                # unbiased: ~0, far below a real gap


def test_shift_and_scale_give_the_closed_form():
    a = gaussian(400, 12, 1)
    mu = np.linspace(-1, 2, 12)
    assert frechet_distance(a, a + mu) == pytest.approx(float(mu @ mu), rel=1e-6)   # same covariance
    # b = 2a: |mu_a|² + tr(C + 4C - 2·2C) = |mu_a|² + tr(C)
    expect = float(a.mean(0) @ a.mean(0) + np.trace(np.cov(a, rowvar=False)))
    assert frechet_distance(a, 2 * a) == pytest.approx(expect, rel=1e-6)


def test_matches_scipy_sqrtm_and_is_symmetric():
    linalg = pytest.importorskip("scipy.linalg")
    a, b = gaussian(200, 10, 2), gaussian(250, 10, 3) + 0.3
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(ref, rel=1e-6)


def test_fewer_samples_than_dimensions_stays_finite():
    a, b = gaussian(20, 64, 4), gaussian(20, 64, 5)
    assert np.isfinite(frechet_distance(a, b)) and frechet_distance(a, b) > 0


def test_kid_known_value_and_brute_force():
    # all of one set at 0, all of the other at c = (1, 1): k(0,0) = 1, k(c,c) = (2/2 + 1)³ = 8, k(0,c) = 1
    assert _mmd2_unbiased(np.zeros((5, 2)), np.ones((6, 2))) == pytest.approx(1 + 8 - 2)
    x, y = gaussian(7, 3, 6), gaussian(9, 3, 7)
    k = lambda u, v: (u @ v / 3 + 1) ** 3                                   # noqa: E731
    brute = (sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
             + sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / 72
             - 2 * sum(k(u, v) for u in x for v in y) / 63)
    assert _mmd2_unbiased(x, y) == pytest.approx(brute)


def test_kid_grows_with_the_shift_and_refuses_bad_shapes():
    a, b = gaussian(300, 8, 8), gaussian(300, 8, 9)
    near, _ = kernel_inception_distance(a, b + 0.2, subset_size=100, n_subsets=20)
    far, _ = kernel_inception_distance(a, b + 1.0, subset_size=100, n_subsets=20)
    assert 0 < near < far
    with pytest.raises(ValueError):
        frechet_distance(a, np.zeros((10, 7)))
    with pytest.raises(ValueError):
        kernel_inception_distance(a[:1], b)


def test_checkerboard_ratio_finds_a_period_two_grid():
    from sbir_core.bench.image_quality import checkerboard_ratio
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.standard_normal((8, 3, 64, 64)), axis=2), axis=3) / 64   # 1/f²-like, as photos
    grid = np.indices((64, 64)).sum(0) % 2 * 1.0                                              # a checkerboard
    clean = checkerboard_ratio(smooth)
    assert 0.3 < clean < 3
    assert checkerboard_ratio(smooth + 0.5 * grid) > 20 * clean
    with pytest.raises(ValueError):
        checkerboard_ratio(np.zeros((2, 3, 30, 30)))
