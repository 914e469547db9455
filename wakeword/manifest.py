"""Manifests: JSON lines, one object per audio item, paths relative to a data root.

Reading validates every row (required fields, kinds, and that the path stays inside the root) and names
the file and line of the first problem.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

KINDS = ("positive", "negative", "hard_negative", "background", "rir", "stream")


class ManifestError(ValueError):
    """A manifest row is malformed or points outside its data root."""


@dataclass(frozen=True)
class Item:
    id: str
    path: str
    kind: str
    group: str
    duration_s: float
    text: str = ""
    engine: str = ""
    voice: str = ""
    role: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_FIELDS = {"id", "path", "kind", "group", "duration_s", "text", "engine", "voice", "role"}


def _parse_row(row: Any, where: str) -> Item:
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("id", "path", "kind", "group", "duration_s") if k not in row]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
    if row["kind"] not in KINDS:
        raise ManifestError(f"{where}: kind {row['kind']!r} is not one of {', '.join(KINDS)}")
    rel = PurePosixPath(str(row["path"]))
    if rel.is_absolute() or ".." in rel.parts:
        raise ManifestError(f"{where}: path {row['path']!r} must be relative and stay inside the data root")
    try:
        duration = float(row["duration_s"])
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: duration_s {row['duration_s']!r} is not a number") from None
    extra = {k: v for k, v in row.items() if k not in _FIELDS}
    return Item(
        id=str(row["id"]), path=str(rel), kind=row["kind"], group=str(row["group"]), duration_s=duration,
        text=str(row.get("text", "")), engine=str(row.get("engine", "")), voice=str(row.get("voice", "")),
        role=str(row.get("role", "")), extra=extra,
    )


def read_manifest(path: str | Path) -> list[Item]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})") from None
    items = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
        items.append(_parse_row(row, f"{path}:{i}"))
    return items


def item_to_row(item: Item) -> dict[str, Any]:
    row = asdict(item)
    extra = row.pop("extra")
    row = {k: v for k, v in row.items() if v != "" or k in ("id", "path", "kind", "group")}
    row.update(extra)
    return row


def write_manifest(path: str | Path, items: Iterable[Item]) -> None:
    """Write atomically so a failure never leaves half a manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".jsonl", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item_to_row(item), sort_keys=True) + "\n")
    os.replace(tmp, path)


def resolve(root: str | Path, item: Item) -> Path:
    """Absolute path of an item, refusing anything (symlinks included) that leaves ``root``."""
    root = Path(root).resolve()
    full = (root / item.path).resolve()
    if not full.is_relative_to(root):
        raise ManifestError(f"{item.path}: resolves to {full}, outside the data root {root}")
    return full
