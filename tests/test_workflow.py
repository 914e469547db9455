"""The pull-request CI workflow (.github/workflows/pr-metrics.yml): trigger, permissions and the order of its
steps (checkout with full history, Python 3.11, the README's install, the tiny profile's `dvc repro`,
`wakeword report --diff` against the base branch, the PR comment, the plots artifact). Its shell steps are
checked with `bash -n`, and its tiny-profile snippet is run on the repository's params.yaml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from wakeword.params import load_params

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "pr-metrics.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def _index(steps: list[dict[str, Any]], pattern: str, key: str = "run") -> int:
    """Index of the first step whose `key` (run script or uses) matches `pattern`."""
    for i, step in enumerate(steps):
        if re.search(pattern, str(step.get(key, ""))):
            return i
    raise AssertionError(f"no step with {key} matching {pattern!r}")


def test_runs_on_pull_requests_and_may_comment(workflow: dict[Any, Any]) -> None:
    on = workflow.get("on", workflow.get(True))  # PyYAML (YAML 1.1) reads the key `on` as True
    assert on is not None and "pull_request" in on
    assert workflow["permissions"]["pull-requests"] == "write"
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu") and job["timeout-minutes"] <= 90


def test_steps_in_order(steps: list[dict[str, Any]]) -> None:
    checkout = _index(steps, r"^actions/checkout@", "uses")
    assert steps[checkout]["with"]["fetch-depth"] == 0
    python = _index(steps, r"^actions/setup-python@", "uses")
    assert str(steps[python]["with"]["python-version"]) == "3.11"
    install = _index(steps, r'pip install -c constraints\.txt -e "\.\[dev\]"')
    fetch = _index(steps, r"git fetch .*origin .*BASE_REF")
    repro = _index(steps, r"(?m)^dvc repro$")
    assert "TINY_PARAMS" in steps[repro]["run"]
    report = _index(steps, r'wakeword report --diff "origin/\$\{BASE_REF\}"')
    tiny_report = _index(steps, r"wakeword report --diff ci-base-tiny")
    comment = _index(steps, r"^actions/github-script@", "uses")
    assert "createComment" in steps[comment]["with"]["script"]
    assert "comment.md" in steps[comment]["with"]["script"]
    upload = _index(steps, r"^actions/upload-artifact@", "uses")
    assert "metrics/images" in steps[upload]["with"]["path"]
    assert checkout < python < install < fetch < report < repro < tiny_report < comment
    assert install < upload and steps[upload]["if"] == "always()"


def test_base_ref_comes_from_the_event(workflow: dict[Any, Any], steps: list[dict[str, Any]]) -> None:
    (job,) = workflow["jobs"].values()
    assert job["env"]["BASE_REF"] == "${{ github.base_ref }}"
    base = next(s for s in steps if s.get("id") == "base")
    assert base["continue-on-error"] is True
    assert "git worktree add" in base["run"] and "dvc repro" in base["run"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_run_scripts_parse(steps: list[dict[str, Any]]) -> None:
    for step in steps:
        if "run" in step:
            script = re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"])  # GitHub expressions are filled in first
            proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, f"{step.get('name')}: {proc.stderr}"


def test_tiny_params_snippet_writes_valid_tiny_params(workflow: dict[Any, Any], tmp_path: Path) -> None:
    (job,) = workflow["jobs"].values()
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "profiles").mkdir()
    shutil.copy(ROOT / "profiles" / "tiny.yaml", tmp_path / "profiles" / "tiny.yaml")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-P", "-c", job["env"]["TINY_PARAMS"]], cwd=tmp_path, env=env, check=True)
    tiny = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    p = load_params(tmp_path / "params.yaml")
    assert p.train.epochs == tiny["train"]["epochs"]
    assert p.synth.n_positive == tiny["synth"]["n_positive"]
