"""Markdown report of what changed between a git revision and the workspace: metrics, params and plot files.

``wakeword report --diff REV`` (and the pull-request CI workflow) use :func:`build_report`. The tables are built
from ``dvc metrics diff --json``, ``dvc params diff --json``, ``git diff`` and ``dvc diff --json``, so the order
and the number formatting are ours: the headline metrics (recall at the target FAH, FAH and its upper bound,
EER, pAUC, confusable false accepts, their held-out engine equivalents, flash/arena/RAM) come first, always
shown even when unchanged; every other metric follows only when it changed.

No DVC import: DVC and git run as subprocesses (``python -m dvc`` of this interpreter), so this module works
wherever the ``dvc`` command does.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKSPACE = "workspace"

# (metric key, True when higher is better); first the test-set figures, then the held-out engine's, then size.
_QUALITY: tuple[tuple[str, bool], ...] = (
    ("recall_at_target", True),
    ("fah", False),
    ("fah_ci_high", False),
    ("recall_at_0p5_fah", True),
    ("eer", False),
    ("pauc", True),
    ("confusable_false_accept_rate", False),
)
_SIZE: tuple[tuple[str, bool], ...] = (("flash_kb", False), ("arena_kb", False), ("ram_kb", False))
HEADLINE: tuple[tuple[str, bool], ...] = (
    _QUALITY + tuple((f"heldout.{key}", better) for key, better in _QUALITY) + _SIZE
)
PLOTS_DIRS: tuple[str, ...] = ("metrics/plots", "metrics/images")

_ABSENT = "—"


class ReportError(Exception):
    """The report cannot be made (not a DVC repository, unknown revision, a failing dvc/git command)."""


@dataclass(frozen=True)
class Change:
    """One metric or parameter in one file: its value at the old and the new revision (None: absent there)."""

    path: str
    key: str
    old: Any
    new: Any

    @property
    def changed(self) -> bool:
        return self.old != self.new


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt(value: Any) -> str:
    """A cell: ints as they are, floats to 4 decimals (4 significant digits when tiny or huge), rest as JSON."""
    if value is None:
        return _ABSENT
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.4g}"
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text.replace("|", "\\|").replace("\n", " ")


def fmt_change(old: Any, new: Any) -> str:
    """The Change cell: signed difference (and relative change) of two numbers, or new / removed / changed."""
    if old is None and new is None:
        return ""
    if old is None:
        return "new"
    if new is None:
        return "removed"
    if _is_number(old) and _is_number(new):
        diff = new - old
        if diff == 0:
            return "0"
        text = ("+" if diff > 0 else "-") + fmt(abs(diff))
        if old != 0 and math.isfinite(diff):
            text += f" ({diff / abs(old) * 100:+.1f}%)"
        return text
    return "changed" if old != new else "0"


def _direction(change: Change, higher_is_better: bool) -> str:
    if not (_is_number(change.old) and _is_number(change.new)) or change.old == change.new:
        return ""
    return "better" if (change.new > change.old) == higher_is_better else "worse"


def _changes(diff: dict[str, dict[str, dict[str, Any]]]) -> list[Change]:
    """Flatten dvc's ``{path: {key: {old, new, diff}}}`` JSON."""
    return [Change(path, key, entry.get("old"), entry.get("new"))
            for path, entries in diff.items() if isinstance(entries, dict)
            for key, entry in entries.items() if isinstance(entry, dict)]


def order_metrics(changes: Sequence[Change]) -> tuple[list[Change], list[Change]]:
    """Split into (headline rows in HEADLINE order, then by file; every other row, by file and key)."""
    rank = {key: i for i, (key, _) in enumerate(HEADLINE)}
    head = sorted((c for c in changes if c.key in rank), key=lambda c: (rank[c.key], c.path))
    rest = sorted((c for c in changes if c.key not in rank), key=lambda c: (c.path, c.key))
    return head, rest


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _code(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def metrics_section(changes: Sequence[Change], old_label: str, new_label: str, show_all: bool = False) -> list[str]:
    """Markdown for the metrics: a headline table (always every headline metric present) and the other changes."""
    head, rest = order_metrics(changes)
    better = dict(HEADLINE)
    lines = ["### Metrics", ""]
    if not head and not rest:
        return lines + ["No metrics found at either revision (no `metrics:` in dvc.yaml?).", ""]
    if head:
        rows = [[_code(c.path), _code(c.key), fmt(c.old), fmt(c.new), fmt_change(c.old, c.new),
                 _direction(c, better[c.key])] for c in head]
        lines += _table(["File", "Metric", old_label, new_label, "Change", ""], rows) + [""]
    shown = list(rest) if show_all else [c for c in rest if c.changed]
    if shown:
        rows = [[_code(c.path), _code(c.key), fmt(c.old), fmt(c.new), fmt_change(c.old, c.new)] for c in shown]
        table = _table(["File", "Metric", old_label, new_label, "Change"], rows) + [""]
        if not head:
            return lines + table
        what = "Other metrics" if show_all else "Other metrics that changed"
        lines += ["<details>", f"<summary>{what} ({len(shown)})</summary>", ""] + table + ["</details>", ""]
    elif rest:
        lines += [f"The other {len(rest)} metrics did not change." if head else f"No metric changed ({len(rest)})."]
        lines += [""]
    return lines


def params_section(changes: Sequence[Change], old_label: str, new_label: str) -> list[str]:
    lines = ["### Params", ""]
    shown = [c for c in changes if c.changed]
    if not shown:
        return lines + ["No parameter changed.", ""]
    shown.sort(key=lambda c: (c.path, c.key))
    several = len({c.path for c in shown}) > 1
    header = (["File"] if several else []) + ["Param", old_label, new_label, "Change"]
    rows = [([_code(c.path)] if several else []) + [_code(c.key), fmt(c.old), fmt(c.new), fmt_change(c.old, c.new)]
            for c in shown]
    return lines + _table(header, rows) + [""]


_GIT_STATUS = {"A": "new", "D": "removed", "M": "changed", "T": "changed", "R": "renamed", "C": "copied"}


def plots_section(files: Sequence[tuple[str, str]], dirs: Sequence[str]) -> list[str]:
    lines = ["### Plot files", ""]
    where = ", ".join(_code(d) for d in dirs)
    if not files:
        return lines + [f"No plot file changed under {where}.", ""]
    lines += [f"{len(files)} changed under {where}:", ""]
    return lines + [f"- {_code(path)} ({status})" for path, status in files] + [""]


def find_dvc_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding a ``.dvc`` directory."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    raise ReportError(f"not in a DVC repository: no .dvc directory in {start} or above (run `dvc init` first)")


def _run(cmd: Sequence[str], cwd: Path, shown: str | None = None) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ReportError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise ReportError(f"`{shown or ' '.join(cmd)}` failed ({proc.returncode}): {detail}")
    return proc.stdout


def _dvc_json(args: Sequence[str], cwd: Path) -> Any:
    shown = "dvc " + " ".join([*args, "--json"])
    out = _run([sys.executable, "-m", "dvc", *args, "--json"], cwd, shown).strip()
    try:
        return json.loads(out) if out else {}
    except json.JSONDecodeError as exc:
        raise ReportError(f"`dvc {' '.join(args)} --json` printed no JSON ({exc}): {out[:500]}") from None


def resolve_rev(root: Path, rev: str) -> str:
    """The short commit id of ``rev``; ReportError naming the revision when git does not know it."""
    try:
        _run(["git", "rev-parse", "--show-toplevel"], root)
    except ReportError:
        raise ReportError(f"{root} is a DVC repository but not inside a git repository") from None
    if rev.startswith("-"):
        raise ReportError(f"unknown revision {rev!r}")
    try:
        return _run(["git", "rev-parse", "--verify", "--quiet", "--short", f"{rev}^{{commit}}"], root).strip()
    except ReportError:
        shallow = _run(["git", "rev-parse", "--is-shallow-repository"], root).strip() == "true"
        hint = " (this clone is shallow: fetch with --unshallow or fetch-depth 0)" if shallow else ""
        raise ReportError(f"unknown revision {rev!r}: fetch it first, e.g. `git fetch origin <branch>`{hint}") from None


def changed_plot_files(root: Path, old: str, new: str | None, dirs: Sequence[str]) -> list[tuple[str, str]]:
    """(path, new|removed|changed|renamed) for files under ``dirs`` that differ between ``old`` and ``new``
    (None: the workspace). Files kept in git come from ``git diff`` (plus untracked ones in the workspace),
    files DVC caches from ``dvc diff``."""
    found: dict[str, str] = {}
    revs = [old] if new is None else [old, new]
    git_diff = ["git", "diff", "-z", "--name-status", "--no-renames", "--relative", *revs, "--", *dirs]
    fields = _run(git_diff, root).split("\0")
    for status, path in zip(fields[0::2], fields[1::2]):  # -z: status NUL path NUL ...
        found[path] = _GIT_STATUS.get(status[:1], status)
    if new is None:
        untracked = _run(["git", "ls-files", "-z", "--others", "--exclude-standard", "--", *dirs], root)
        found.update((path, "new") for path in untracked.split("\0") if path)
    prefixes = tuple(d.rstrip("/") + "/" for d in dirs)
    diff = _dvc_json(["diff", *revs], root)  # every DVC output (--targets refuses paths DVC does not track)
    kinds = (("added", "new"), ("deleted", "removed"), ("modified", "changed"), ("renamed", "renamed"))
    for kind, status in kinds:
        for entry in diff.get(kind, []):
            path = entry["path"]["new"] if isinstance(entry.get("path"), dict) else entry.get("path", "")
            if path.startswith(prefixes) and not path.endswith("/"):
                found[path] = status
    return sorted(found.items())


def build_report(cwd: Path, rev: str, new_rev: str | None = None, *, plots_dirs: Sequence[str] = PLOTS_DIRS,
                 show_all: bool = False, title: str | None = None) -> str:
    """Markdown comparing ``rev`` with ``new_rev`` (None: the workspace) in the DVC repository around ``cwd``."""
    root = find_dvc_root(cwd)
    old_sha = resolve_rev(root, rev)
    old_label = f"{rev} ({old_sha})" if old_sha and not old_sha.startswith(rev) else rev
    if new_rev is None:
        new_label = WORKSPACE
    else:
        new_sha = resolve_rev(root, new_rev)
        new_label = f"{new_rev} ({new_sha})" if not new_sha.startswith(new_rev) else new_rev
    revs = [rev] if new_rev is None else [rev, new_rev]
    metrics = _changes(_dvc_json(["metrics", "diff", *revs, "--all"], root))
    params = _changes(_dvc_json(["params", "diff", *revs], root))
    plots = changed_plot_files(root, rev, new_rev, plots_dirs)
    header = title or f"Experiment diff: {new_label} vs {old_label}"
    lines = [f"## {header}", ""]
    lines += metrics_section(metrics, old_label, new_label, show_all)
    lines += params_section(params, old_label, new_label)
    lines += plots_section(plots, plots_dirs)
    return "\n".join(lines).rstrip("\n") + "\n"
