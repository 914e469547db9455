"""Sharing a DVC pipeline's data and run cache through a remote, on a throw-away two-stage pipeline (no
wakeword training): a local-directory remote, `dvc push`, a fresh `git clone` + `dvc pull` that is up to date
and reruns nothing, and the run cache (`dvc push/pull --run-cache`) restoring a stage for a parameter value
that was run elsewhere, without running its command.

What the run cache needs to restore a stage is every output object in the cache. `dvc push` never uploads
the objects of `cache: false` outputs (the metrics of this project), and `push --run-cache` only uploads the
run records, so across a remote only stages without `cache: false` outputs restore; with a shared cache
directory (`dvc cache dir`) every stage does. Both are checked here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DVC_YAML = """\
stages:
  make:
    cmd: python make.py
    deps: [make.py]
    params: [n]
    outs: [data/numbers.txt]
  total:
    cmd: python total.py
    deps: [total.py, data/numbers.txt]
    outs: [data/total.txt]
    metrics:
      - metrics.json:
          cache: false
"""
MAKE_PY = """\
import os, pathlib
n = int(pathlib.Path("params.yaml").read_text().split(":")[1])
with open(os.environ["RUNLOG"], "a") as log:
    log.write("make\\n")
pathlib.Path("data").mkdir(exist_ok=True)
pathlib.Path("data/numbers.txt").write_text("".join(f"{i}\\n" for i in range(n)))
"""
TOTAL_PY = """\
import json, os, pathlib
with open(os.environ["RUNLOG"], "a") as log:
    log.write("total\\n")
total = sum(int(x) for x in pathlib.Path("data/numbers.txt").read_text().split())
pathlib.Path("data/total.txt").write_text(str(total))
pathlib.Path("metrics.json").write_text(json.dumps({"total": total}))
"""
UP_TO_DATE = "Data and pipelines are up to date."


def _cached(stage: str) -> str:
    return f"Stage '{stage}' is cached - skipping run, checking out outputs"


class Shell:
    """Runs git/dvc with the run log (the stages' side effect) at a known path."""

    def __init__(self, runlog: Path) -> None:
        self.runlog = runlog
        self.env = dict(os.environ, RUNLOG=str(runlog), DVC_NO_ANALYTICS="1",
                        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def __call__(self, cwd: Path, *cmd: str) -> str:
        proc = subprocess.run(list(cmd), cwd=cwd, env=self.env, capture_output=True, text=True, timeout=300,
                              check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}"
        return out

    def runs(self) -> list[str]:
        """Stage commands that ran since the last call."""
        lines = self.runlog.read_text().split() if self.runlog.exists() else []
        self.runlog.write_text("")
        return lines


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Shell]:
    """(origin repo, remote directory, shell): n=3 run, committed and pushed, then n=5 the same way; the run
    cache pushed with each."""
    base = tmp_path_factory.mktemp("remote")
    origin, remote = base / "origin", base / "storage"
    origin.mkdir()
    sh = Shell(base / "runs.log")
    sh(origin, "git", "init", "-q")
    sh(origin, "git", "config", "user.email", "ci@example.com")
    sh(origin, "git", "config", "user.name", "CI")
    sh(origin, "dvc", "init", "-q")
    sh(origin, "dvc", "remote", "add", "-d", "local", str(remote))
    (origin / "dvc.yaml").write_text(DVC_YAML)
    (origin / "make.py").write_text(MAKE_PY)
    (origin / "total.py").write_text(TOTAL_PY)
    for n in (3, 5):
        (origin / "params.yaml").write_text(f"n: {n}\n")
        sh(origin, "dvc", "repro")
        sh(origin, "git", "add", "-A")
        sh(origin, "git", "commit", "-qm", f"n={n}")
        sh(origin, "dvc", "push", "--run-cache")  # the outputs of this commit, and the run records
    assert sh.runs() == ["make", "total", "make", "total"]
    assert (remote / "files" / "md5").is_dir() and (remote / "runs").is_dir()
    return origin, remote, sh


def _clone(origin: Path, sh: Shell, name: str) -> Path:
    clone = origin.parent / name
    sh.runs()  # clear the log
    sh(origin.parent, "git", "clone", "-q", str(origin), str(clone))
    assert not (clone / "data" / "numbers.txt").exists() and not (clone / ".dvc" / "cache").exists()
    return clone


def test_fresh_clone_pulls_and_is_up_to_date(shared: tuple[Path, Path, Shell]) -> None:
    origin, _, sh = shared
    clone = _clone(origin, sh, "clone")
    sh(clone, "dvc", "pull")
    assert (clone / "data" / "total.txt").read_text() == "10"  # n=5: 0+1+2+3+4
    assert UP_TO_DATE in sh(clone, "dvc", "status")
    out = sh(clone, "dvc", "repro")
    assert "Stage 'make' didn't change, skipping" in out and "Stage 'total' didn't change, skipping" in out
    assert sh.runs() == []


def test_run_cache_from_the_remote_restores_a_previous_param_value(shared: tuple[Path, Path, Shell]) -> None:
    origin, _, sh = shared
    clone = _clone(origin, sh, "clone_run_cache")
    sh(clone, "dvc", "pull", "--run-cache")
    assert any((clone / ".dvc" / "cache" / "runs").iterdir())
    (clone / "params.yaml").write_text("n: 3\n")  # the value run (and pushed) in the first commit
    out = sh(clone, "dvc", "repro", "--pull")
    assert _cached("make") in out
    assert (clone / "data" / "numbers.txt").read_text() == "0\n1\n2\n"
    # total's metrics.json is `cache: false`: its object never reaches the remote, so total runs again
    assert _cached("total") not in out and "Running stage 'total'" in out
    assert sh.runs() == ["total"]
    assert (clone / "metrics.json").read_text() == '{"total": 3}'
    assert UP_TO_DATE in sh(clone, "dvc", "status")


def test_shared_cache_directory_restores_every_stage(shared: tuple[Path, Path, Shell]) -> None:
    origin, remote, sh = shared
    cache = remote.parent / "shared_cache"
    first, second = _clone(origin, sh, "first"), _clone(origin, sh, "second")
    for clone in (first, second):
        sh(clone, "dvc", "cache", "dir", "--local", str(cache))
        (clone / "params.yaml").write_text("n: 7\n")  # a value nobody has run yet
    sh(first, "dvc", "repro")
    assert sh.runs() == ["make", "total"]
    out = sh(second, "dvc", "repro")
    assert _cached("make") in out and _cached("total") in out
    assert sh.runs() == []
    assert (second / "metrics.json").read_text() == '{"total": 21}'
