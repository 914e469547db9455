"""Session fixtures shared by the test modules. The suite runs on pytest-xdist workers (pyproject addopts,
``--dist loadfile``), so the one expensive fixture, the tiny-profile pipeline run, is built once per session
under a file lock in the directory all workers share, and each module gets its own copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Before torch loads in the workers and the stages they start: two workers x two torch threads on two cores
# spin-wait for each other otherwise (stages/_common.py does the same for `dvc repro`).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
from _support import tiny_pipeline_repo
from filelock import FileLock


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny-profile pipeline reproduced once and committed (tests/_support.py): do not modify it, copy it
    with :func:`_support.copy_repo`."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session directory every worker shares
    template, done = root / "tiny-template", root / "tiny-template.done"
    with FileLock(str(root / "tiny-template.lock")):
        if not done.exists():
            shutil.rmtree(template, ignore_errors=True)
            template.mkdir()
            tiny_pipeline_repo(template)
            done.write_text("built\n")
    return template
