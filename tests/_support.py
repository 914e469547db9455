"""Shared by the tests: a torch blocker for subprocesses, a subprocess runner, and the tiny-profile pipeline
built and run once in a throw-away git + DVC repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from wakeword.params import merge_overrides

ROOT = Path(__file__).resolve().parents[1]

#: Makes every ``import torch`` (and torch.*) fail in a subprocess. Setting sys.modules['torch'] = None instead
#: would break scipy, which probes sys.modules for array libraries.
TORCH_BLOCKER = (
    "import sys\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command with this venv's tools first on PATH; on failure (with ``check``) show its output."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", WAKEWORD_LOG="WARNING")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def tiny_pipeline_repo(repo: Path) -> Path:
    """The pipeline with profiles/tiny.yaml merged over params.yaml in a new git + DVC repo at ``repo``,
    committed, reproduced once and committed again."""
    for name in ("stages", "wakeword"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    for keep in ("data/raw/README.md", "teachers/README.md", "models/.gitignore"):
        (repo / keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / keep, repo / keep)
    params = merge_overrides(yaml.safe_load((ROOT / "params.yaml").read_text()),
                             yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "ci@example.com"], repo)
    run(["git", "config", "user.name", "CI"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.autostage", "true"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny pipeline"], repo)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first run"], repo)
    return repo


def copy_repo(src: Path, dest: Path) -> Path:
    """A working copy of the git + DVC repository ``src`` (with its DVC cache) at ``dest``, a new or empty
    directory. DVC re-hashes the copied outputs once (their inodes changed); nothing re-runs."""
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    return dest
