"""`wakeword report --diff REV` on a throw-away git + DVC repository whose two commits hold different metrics,
params and plot files (no pipeline run: dvc.yaml only declares the metrics), plus the formatting helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wakeword.cli import main
from wakeword.prdiff import Change, fmt, fmt_change, order_metrics

DVC_YAML = """\
stages:
  evaluate:
    cmd: python -c "print('not run in this test')"
    metrics:
      - metrics/float.json:
          cache: false
metrics:
  - metrics/size.json
plots:
  - metrics/plots/float_curve.json:
      x: fah
      y: recall
"""


def _float_metrics(recall: float, fah: float, eer: float, heldout_recall: float, f1: float) -> dict:
    return {"recall_at_target": recall, "fah": fah, "fah_ci_high": fah * 5, "eer": eer, "pauc": 0.9,
            "confusable_false_accept_rate": 0.07, "clip": {"f1": f1},
            "heldout": {"recall_at_target": heldout_recall, "fah": 0.0, "eer": 0.16}}


def _commit(repo: Path, message: str, float_json: dict, size_json: dict, params: str, curve: list) -> None:
    (repo / "metrics" / "float.json").write_text(json.dumps(float_json, indent=2))
    (repo / "metrics" / "size.json").write_text(json.dumps(size_json, indent=2))
    (repo / "metrics" / "plots" / "float_curve.json").write_text(json.dumps(curve))
    (repo / "params.yaml").write_text(params)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("prdiff")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "ci@example.com")
    _git(repo, "config", "user.name", "CI")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True,
                   env=dict(os.environ, DVC_NO_ANALYTICS="1"))
    (repo / "metrics" / "plots").mkdir(parents=True)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _commit(repo, "baseline", _float_metrics(0.80, 1.0, 0.057, 0.20, 0.88),
            {"flash_kb": 39.11, "arena_kb": 18.88, "ram_kb": 25.66, "parameters": 16946},
            "train:\n  epochs: 20\n  lr: 0.001\nseed: 1\n", [{"fah": 0.0, "recall": 0.1}, {"fah": 1.0, "recall": 0.8}])
    _commit(repo, "wider model", _float_metrics(0.85, 0.5, 0.041, 0.35, 0.90),
            {"flash_kb": 52.5, "arena_kb": 18.88, "ram_kb": 31.2, "parameters": 24000},
            "train:\n  epochs: 30\n  weight_decay: 0.01\nseed: 1\n",
            [{"fah": 0.0, "recall": 0.2}, {"fah": 1.0, "recall": 0.85}])
    (repo / "metrics" / "plots" / "int8_curve.json").write_text("[]")  # untracked: a new plot file
    return repo


def _row(markdown: str, metric: str) -> list[str]:
    """Cells of the first table row naming `metric`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 1 and cells[1] == f"`{metric}`":
            return cells
    raise AssertionError(f"no row for {metric} in:\n{markdown}")


def test_report_diff_tables(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    out = repo.parent / "report.md"
    result = CliRunner().invoke(main, ["report", "--diff", "HEAD~1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = out.read_text()

    header = next(line for line in md.splitlines() if line.startswith("| File | Metric"))
    assert "HEAD~1" in header and "workspace" in header and "Change" in header
    assert _row(md, "recall_at_target")[2:6] == ["0.8", "0.85", "+0.05 (+6.2%)", "better"]
    assert _row(md, "fah")[2:6] == ["1", "0.5", "-0.5 (-50.0%)", "better"]
    assert _row(md, "eer")[2:5] == ["0.057", "0.041", "-0.016 (-28.1%)"]
    assert _row(md, "heldout.recall_at_target")[2:5] == ["0.2", "0.35", "+0.15 (+75.0%)"]
    assert _row(md, "flash_kb")[2:6] == ["39.11", "52.5", "+13.39 (+34.2%)", "worse"]
    assert _row(md, "ram_kb")[2:6] == ["25.66", "31.2", "+5.54 (+21.6%)", "worse"]
    assert _row(md, "arena_kb")[2:5] == ["18.88", "18.88", "0"]  # headline rows show even unchanged

    # headline order: test-set quality, then held-out engine, then size; the rest after it
    pos = {m: md.index(f"| `{m}` |") for m in ("recall_at_target", "fah", "eer", "heldout.recall_at_target",
                                                "flash_kb", "ram_kb", "clip.f1", "parameters")}
    assert pos["recall_at_target"] < pos["fah"] < pos["eer"] < pos["heldout.recall_at_target"]
    assert pos["heldout.recall_at_target"] < pos["flash_kb"] < pos["ram_kb"] < pos["clip.f1"]
    assert _row(md, "parameters")[2:5] == ["16946", "24000", "+7054 (+41.6%)"]

    params = md[md.index("### Params"):md.index("### Plot files")]
    assert "| `train.epochs` | 20 | 30 | +10 (+50.0%) |" in params
    assert "| `train.lr` | 0.001 | — | removed |" in params
    assert "| `train.weight_decay` | — | 0.01 | new |" in params
    assert "seed" not in params

    plots = md[md.index("### Plot files"):]
    assert "`metrics/plots/float_curve.json` (changed)" in plots
    assert "`metrics/plots/int8_curve.json` (new)" in plots


def test_report_between_two_revisions_to_stdout(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo / "metrics")  # any directory inside the repository
    result = CliRunner().invoke(main, ["report", "--diff", "HEAD~1", "--to", "HEAD", "--title", "PR 7"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("## PR 7\n")
    assert _row(result.output, "recall_at_target")[2:5] == ["0.8", "0.85", "+0.05 (+6.2%)"]
    assert "int8_curve.json" not in result.output  # untracked workspace files are not in HEAD


def test_report_refuses_unknown_revision(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(main, ["report", "--diff", "origin/no-such-branch"])
    assert result.exit_code == 1
    assert "unknown revision 'origin/no-such-branch'" in result.output and "git fetch" in result.output


def test_report_refuses_outside_a_dvc_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report", "--diff", "HEAD"])
    assert result.exit_code == 1 and "not in a DVC repository" in result.output


def test_formatting() -> None:
    assert fmt(None) == "—" and fmt(3) == "3" and fmt(0.8142857) == "0.8143" and fmt(1.0) == "1"
    assert fmt(2.5e-5) == "2.5e-05" and fmt(True) == "true" and fmt([1, "a|b"]) == '[1,"a\\|b"]'
    assert fmt_change(None, 1) == "new" and fmt_change(1, None) == "removed"
    assert fmt_change(0.0, 0.25) == "+0.25" and fmt_change(2, 2) == "0" and fmt_change("a", "b") == "changed"
    assert fmt_change(0.2, 0.1) == "-0.1 (-50.0%)"


def test_headline_order() -> None:
    rows = [Change("metrics/size.json", "ram_kb", 1, 2), Change("metrics/int8.json", "eer", 0.1, 0.2),
            Change("metrics/float.json", "heldout.fah", 1, 2), Change("metrics/float.json", "eer", 0.1, 0.2),
            Change("metrics/float.json", "roc_auc", 0.9, 0.9), Change("metrics/float.json", "fah", 1, 1)]
    head, rest = order_metrics(rows)
    assert [(c.path[8:], c.key) for c in head] == [("float.json", "fah"), ("float.json", "eer"),
                                                   ("int8.json", "eer"), ("float.json", "heldout.fah"),
                                                   ("size.json", "ram_kb")]
    assert [c.key for c in rest] == ["roc_auc"]
