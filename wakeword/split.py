"""Train/val/test split grouped by voice: every item of a group (one synthetic voice, one speaker, one
source recording) lands in the same split, so no voice is both learned and tested.

A group's split comes from a hash of (seed, group name) alone, so adding items or groups never moves an
existing group. Groups matching a ``pin_to_train`` pattern (single-speaker engines whose only voice the
model needs to learn from) always go to train; long streams go to the split their ``role`` names.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections import Counter, defaultdict
from dataclasses import replace

from wakeword.manifest import Item
from wakeword.params import SplitParams

SPLITS = ("train", "val", "test")


class SplitError(ValueError):
    """The split cannot give every split the data it needs."""


def group_unit(seed: int, group: str) -> float:
    """A stable pseudo-random number in [0, 1) for a group name."""
    digest = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_group(seed: int, group: str, params: SplitParams) -> str:
    if any(fnmatch.fnmatchcase(group, pat) for pat in params.pin_to_train):
        return "train"
    u = group_unit(seed, group)
    if u < params.train:
        return "train"
    if u < params.train + params.val:
        return "val"
    return "test"


def split_items(items: list[Item], params: SplitParams, seed: int) -> dict[str, list[Item]]:
    """train/val/test by group hash, plus ``heldout`` when items carry ``role = "heldout"`` (the held-out
    engines' clips and stream, never trained or calibrated on). Room impulse responses (kind ``rir``) are
    augmentation material and always go to train."""
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for item in items:
        if item.role == "heldout":
            out.setdefault("heldout", []).append(item)
        elif item.kind == "stream":
            if item.role not in ("train", "val", "test"):
                raise SplitError(f"stream {item.path}: role must be 'train', 'val' or 'test', got {item.role!r}")
            out[item.role].append(item)
        elif item.kind == "rir":
            out["train"].append(item)
        else:
            out[assign_group(seed, item.group, params)].append(item)
    for name in SPLITS:
        kinds = Counter(i.kind for i in out[name])
        if kinds["positive"] == 0 or (kinds["negative"] + kinds["hard_negative"]) == 0:
            raise SplitError(
                f"split '{name}' got {kinds['positive']} positive and "
                f"{kinds['negative'] + kinds['hard_negative']} negative clips: it needs both. "
                "Add voices (synth.espeak_variants_per_accent) or change the split ratios/seed."
            )
    for name in ("val", "test", "heldout"):
        if name in out and not any(i.kind == "stream" for i in out[name]):
            raise SplitError(f"split '{name}' has no long negative stream: false alarms per hour need one")
    if "heldout" in out and not any(i.kind == "positive" for i in out["heldout"]):
        raise SplitError("the held-out split has no positive clips: recall cannot be measured on it")
    return out


def merge_sources(sources: dict[str, list[Item]]) -> list[Item]:
    """One list from several data roots, each item tagged with ``extra["root"]`` (the root's name) so
    later stages resolve its path against the right root; ids must be unique across sources."""
    merged: list[Item] = []
    seen: dict[str, str] = {}
    for name, items in sources.items():
        for item in items:
            if item.id in seen:
                raise SplitError(f"item id {item.id!r} appears in both '{seen[item.id]}' and '{name}' data")
            seen[item.id] = name
            merged.append(replace(item, extra={**item.extra, "root": name}))
    return merged


def check_disjoint_groups(splits: dict[str, list[Item]]) -> None:
    seen: dict[str, str] = {}
    for name, items in splits.items():
        for item in items:
            if item.kind in ("stream", "rir"):
                continue
            other = seen.setdefault(item.group, name)
            if other != name:
                raise SplitError(f"group {item.group!r} is in both '{other}' and '{name}'")


def summarize(splits: dict[str, list[Item]]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name, items in splits.items():
        counts: dict[str, float] = defaultdict(float)
        for item in items:
            counts[f"{item.kind}_clips"] += 1
            counts[f"{item.kind}_hours"] += item.duration_s / 3600.0
        counts["groups"] = len({i.group for i in items if i.kind != "stream"})
        summary[name] = {k: round(v, 4) for k, v in sorted(counts.items())}
    return summary
