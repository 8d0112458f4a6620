"""Shared fixtures: the real data (tests that need it skip when ../shared/data is absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

from sbir_core.config import data_dir

DATA = data_dir()


def need_data(*parts: str) -> Path:
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not present at {p}")
    return p


@pytest.fixture(scope="session")
def sketchy_dir() -> Path:
    return need_data("sketchy")


@pytest.fixture(scope="session")
def small_photo_dir(tmp_path_factory, sketchy_dir) -> Path:
    """A real 4-class, 20-photo gallery folder (links into the Sketchy photos; nothing copied into the repo)."""
    out = tmp_path_factory.mktemp("photos")
    for c in ("airplane", "cat", "shoe", "teapot"):
        (out / c).mkdir()
        for p in sorted((sketchy_dir / "photo" / c).iterdir())[:5]:
            (out / c / p.name).symlink_to(p)
    return out


@pytest.fixture(scope="session")
def held_out(sketchy_dir) -> dict:
    """One test-split Sketchy sketch per class for a few classes (photos and sketches never trained on)."""
    from sbir_core.data.readers import sketchy
    from sbir_core.data.splits import split_of
    _, sketches = sketchy(sketchy_dir)
    out = {}
    for s in sketches:
        if split_of(s.photo_id) == "test" and s.label in ("airplane", "cat", "shoe", "teapot") and s.label not in out:
            out[s.label] = s
    return out
