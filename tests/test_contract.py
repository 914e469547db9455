"""Contract between dvc.yaml, params.yaml, the pydantic models and each stage's imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from wakeword.params import Params

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC["stages"]


def imported_modules(path: Path) -> set[str]:
    """Project modules (``wakeword.*``, ``stages.*``) imported anywhere in a file, function bodies included."""
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
            mods.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in mods if m.split(".")[0] in ("wakeword", "stages") and (ROOT / module_file(m)).exists()}


def module_file(mod: str) -> Path:
    return Path(*mod.split(".")).with_suffix(".py")


def closure(path: Path) -> set[str]:
    """Files of the project modules a stage script needs, transitively."""
    seen: set[str] = set()
    todo = [path.relative_to(ROOT).as_posix()]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(module_file(m).as_posix() for m in imported_modules(ROOT / f))
    return {f for f in seen if f != "wakeword/__init__.py" and f != "stages/__init__.py"}


def dep_paths(stage: dict) -> set[str]:
    return {d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_imports(name: str) -> None:
    stage = STAGES[name]
    script = re.search(r"python -m stages\.(\w+)", stage["cmd"])
    assert script, f"stage {name}: cmd must be 'python -m stages.<name> ...'"
    needed = closure(ROOT / "stages" / f"{script.group(1)}.py")
    missing = needed - dep_paths(stage)
    assert not missing, f"stage {name}: dvc.yaml deps miss {sorted(missing)}"
    extra = {d for d in dep_paths(stage) if d.endswith(".py")} - needed
    assert not extra, f"stage {name}: dvc.yaml lists modules the stage does not import: {sorted(extra)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_are_fields(name: str) -> None:
    for key in STAGES[name].get("params", []):
        assert isinstance(key, str), f"stage {name}: params must name keys of params.yaml"
        model = Params
        for part in key.split("."):
            assert part in model.model_fields, f"stage {name}: params key {key!r} is not a field"
            model = model.model_fields[part].annotation  # type: ignore[assignment]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_paths_in_cmd_are_declared(name: str) -> None:
    stage = STAGES[name]
    declared = dep_paths(stage)
    for group in ("outs", "metrics", "plots"):
        declared |= {o if isinstance(o, str) else next(iter(o)) for o in stage.get(group, [])}
    args = [a for a in stage["cmd"].split()[3:] if not a.startswith("-")]
    for arg in args:
        assert arg in declared, f"stage {name}: path {arg} in cmd is not declared in deps/outs/metrics/plots"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_metrics_are_small_uncached_json(name: str) -> None:
    for entry in STAGES[name].get("metrics", []):
        path, opts = next(iter(entry.items()))
        assert path.endswith(".json") and opts.get("cache") is False, f"stage {name}: metric {path}"


def test_params_yaml_matches_models_exactly() -> None:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = Params.model_validate(data)
    assert set(data) == set(Params.model_fields), "params.yaml must hold every section, no more"
    for section, model in Params.model_fields.items():
        if isinstance(data[section], dict):
            assert set(data[section]) == set(model.annotation.model_fields), f"params.yaml section {section}"  # type: ignore[union-attr]
    assert params == Params(), "params.yaml defaults drift from the pydantic defaults"


def test_every_params_key_is_commented() -> None:
    for i, line in enumerate((ROOT / "params.yaml").read_text().splitlines(), 1):
        stripped = line.strip()
        if re.match(r"^[a-z_]+:\s*\S", stripped) and not stripped.startswith("-"):
            assert "#" in line, f"params.yaml:{i}: key without a comment: {line!r}"


def test_featurize_depends_on_every_augment_key_that_renders_a_window() -> None:
    """featurize renders the training windows (augment_utterance, render_window), so every augment key but the
    ones the train stage applies per batch (SpecAugment, the random EQ, the frequency warp) and ``mode`` must be
    in its params: a key missing there is silently ignored by ``dvc exp run -S`` (the stage is not re-run, or
    its output comes back from the run cache)."""
    from wakeword.params import AugmentParams

    train_only = {k for k in AugmentParams.model_fields if k.startswith(("spec_", "eq_", "warp_"))} | {"mode"}
    want = {f"augment.{k}" for k in AugmentParams.model_fields if k not in train_only}
    got = {p for p in STAGES["featurize"]["params"] if isinstance(p, str) and p.startswith("augment")}
    assert got == want, f"featurize's params miss {sorted(want - got)}, list extra {sorted(got - want)}"
