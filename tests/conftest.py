"""Shared fixtures: the real data (tests that need it skip when ../shared/data is absent: on a
developer's machine only; under CI (`CI=true`) any skip fails the run, see `pytest_sessionfinish`)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from sbir_core.config import data_dir

DATA = data_dir()
# tests (and the app servers they start) never read or write the kinds a presenter kept on this machine
os.environ["SBIR_TAUGHT_DIR"] = tempfile.mkdtemp(prefix="sbir-taught-")


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


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI nothing may skip: a missing model, data folder, package or browser would otherwise let
    a backend or a page drop out of testing unnoticed. Each skip is named and the run fails."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if under_ci() and skipped:
        for rep in skipped:
            reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            reporter.write_line(f"SKIPPED UNDER CI (counts as a failure): {rep.nodeid}: {reason}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
