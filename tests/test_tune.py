"""`wakeword tune`: the search space file, the objective with size constraints, the Optuna loop (fast, with a
fake experiment runner), then end to end on the tiny profile (slow, `integration`): a 3-trial search over DVC
experiments, its resumption, and a queued two-experiment sweep (`dvc exp run --queue` + `--run-all`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from _support import copy_repo, run

from wakeword import tune as t
from wakeword.params import Params

ROOT = Path(__file__).resolve().parents[1]


def parse(space: dict[str, Any], base: dict[str, Any] | None = None, **top: Any) -> t.TuneConfig:
    return t.parse_space({"space": space, **top}, "tune.yaml", base)


def error_of(space: dict[str, Any], **top: Any) -> str:
    with pytest.raises(t.TuneError) as exc:
        parse(space, **top)
    return str(exc.value)


# ------------------------------------------------------------------------------------------------ the space


def test_example_space_file_is_valid() -> None:
    cfg = t.load_space(ROOT / "tune.yaml", ROOT / "params.yaml")
    dims = {d.key: d for d in cfg.space}
    assert dims["train.lr"].distribution == "log_uniform" and dims["train.lr"].low == pytest.approx(3.0e-4)
    assert dims["model.tcn.channels"].choices == (16, 24, 32)
    assert dims["augment.noise_prob"].distribution == "uniform"
    assert cfg.metric == t.DEFAULT_METRIC and cfg.direction == "maximize"


def test_distributions_parse() -> None:
    cfg = parse({
        "train.lr": {"distribution": "log_uniform", "low": "3e-4", "high": 1.0e-2},  # "3e-4": a YAML 1.1 string
        "train.epochs": {"distribution": "int", "low": 1, "high": 2},
        "model.ds_tcn.kernel_size": {"distribution": "int", "low": 3, "high": 7, "step": 2},
        "augment.noise_prob": {"distribution": "uniform", "low": 0.3, "high": 0.9, "step": 0.1},
        "train.warmup_epochs": {"distribution": "int", "low": 1, "high": 4, "log": True},
        "features.type": {"distribution": "categorical", "choices": ["log_mel", "mfcc"]},
    })
    lr, epochs, kernel, noise, warmup, ftype = cfg.space
    assert lr.low == pytest.approx(3e-4) and lr.log
    assert (epochs.low, epochs.high, epochs.distribution) == (1, 2, "int")
    assert kernel.step == 2 and noise.step == pytest.approx(0.1) and warmup.log
    assert ftype.choices == ("log_mel", "mfcc")


@pytest.mark.parametrize(("space", "expected"), [
    ({"train.lerning_rate": {"distribution": "uniform", "low": 0.1, "high": 0.2}},
     ["train.lerning_rate", "unknown params key 'lerning_rate' in section 'train'", "allowed keys", "lr"]),
    ({"trian.lr": {"distribution": "uniform", "low": 0.1, "high": 0.2}},
     ["trian.lr", "unknown params key 'trian' in the top level"]),
    ({"train": {"distribution": "uniform", "low": 0.1, "high": 0.2}},
     ["train is a section, not a parameter", "train.lr"]),
    ({"train.lr.x": {"distribution": "uniform", "low": 0.1, "high": 0.2}}, ["'train.lr' is a parameter"]),
    ({"train.lr": {"distribution": "normal", "low": 0.1, "high": 0.2}},
     ["space.train.lr.distribution", "unknown distribution 'normal'", "log_uniform"]),
    ({"train.lr": {"low": 0.1, "high": 0.2}}, ["space.train.lr.distribution", "unknown distribution None"]),
    ({"train.lr": {"distribution": "uniform", "low": 0.2, "high": 0.1}}, ["space.train.lr", "low (0.2) > high (0.1)"]),
    ({"train.epochs": {"distribution": "int", "low": 1.5, "high": 3}}, ["space.train.epochs.low", "an integer"]),
    ({"train.lr": {"distribution": "log_uniform", "low": 0.0, "high": 0.1}}, ["train.lr", "needs low > 0"]),
    ({"train.lr": {"distribution": "uniform", "high": 0.1}}, ["space.train.lr.low is missing"]),
    ({"train.lr": {"distribution": "uniform", "low": "a", "high": 0.1}}, ["space.train.lr.low", "a number"]),
    ({"train.lr": {"distribution": "uniform", "low": 0.1, "high": 0.2, "choices": [1]}},
     ["space.train.lr", "unknown key(s) choices"]),
    ({"model.ds_tcn.channels": {"distribution": "categorical", "choices": []}}, ["space.model.ds_tcn.channels.choices"]),
    ({"model.ds_tcn.channels": {"distribution": "categorical", "choices": [32, 32]}}, ["duplicates"]),
    ({"augment.snr_db": {"distribution": "categorical", "choices": [[0, 10]]}}, ["augment.snr_db", "not a scalar"]),
    # bounds and choices are checked against the parameter ranges of wakeword/params.py
    ({"train.lr": {"distribution": "log_uniform", "low": 1.0e-3, "high": 2.0}},
     ["space.train.lr", "value 2.0 is not allowed", "train.lr = 2.0", "less than or equal to 1"]),
    ({"model.ds_tcn.kernel_size": {"distribution": "categorical", "choices": [3, 4]}},
     ["space.model.ds_tcn.kernel_size", "value 4", "kernel_size must be odd"]),
    ({}, ["'space' must be a non-empty mapping"]),
])
def test_bad_spaces_name_the_key(space: dict[str, Any], expected: list[str]) -> None:
    message = error_of(space)
    for part in expected:
        assert part in message, message


def test_top_level_checks(tmp_path: Path) -> None:
    ok = {"train.lr": {"distribution": "uniform", "low": 0.001, "high": 0.01}}
    assert "unknown key(s) spaec" in error_of(ok, spaec=1)
    assert "direction must be maximize or minimize" in error_of(ok, direction="max")
    assert "metric must be FILE:KEY" in error_of(ok, metric="recall_at_target")
    assert "max_flash_kb must be >= 0" in error_of(ok, max_flash_kb=-1)
    cfg = parse(ok, metric="metrics/float.json:eer", direction="minimize", max_flash_kb=32, max_ram_kb=0)
    assert (cfg.metric, cfg.direction, cfg.max_flash_kb, cfg.max_ram_kb) == ("metrics/float.json:eer", "minimize",
                                                                             32.0, 0.0)
    (tmp_path / "bad.yaml").write_text("space: [")
    with pytest.raises(t.TuneError, match="bad.yaml: not valid YAML"):
        t.load_space(tmp_path / "bad.yaml", None)
    with pytest.raises(t.TuneError, match="cannot read the search space"):
        t.load_space(tmp_path / "missing.yaml", None)


def test_checks_use_the_repository_params_and_add_missing_keys() -> None:
    base = {"train": {"lr": 3.0e-3, "min_lr": 1.0e-3}}
    # min_lr 1e-3 in this params.yaml: an lr below it is refused, naming both
    with pytest.raises(t.TuneError, match="min_lr"):
        parse({"train.lr": {"distribution": "log_uniform", "low": 1.0e-4, "high": 1.0e-2}}, base)
    cfg = parse({"train.lr": {"distribution": "uniform", "low": 2.0e-3, "high": 1.0e-2},
                 "train.epochs": {"distribution": "int", "low": 1, "high": 2}}, base)
    lr, epochs = cfg.space
    assert lr.override(0.005) == "train.lr=0.005"
    assert epochs.override(2) == "+train.epochs=2"  # not in that params.yaml: -S +key=value


def test_format_value_keeps_yaml_floats() -> None:
    assert t.format_value(1e-05) == "1.0e-05" and t.format_value(1.5e-06) == "1.5e-06"
    assert t.format_value(0.001) == "0.001" and t.format_value(32) == "32"
    assert t.format_value(True) == "true" and t.format_value("log_mel") == "log_mel"


# -------------------------------------------------------------------------------------------- the objective


def metrics(recall: float | None, flash: float = 40.0, ram: float = 26.0) -> dict[str, Any]:
    return {"metrics/int8.json": {"recall_at_target": recall, "heldout": {"recall_at_target": 0.2}},
            "metrics/size.json": {"flash_kb": flash, "ram_kb": ram}}


def test_objective_and_size_constraints() -> None:
    limited = t.Objective(max_flash_kb=64, max_ram_kb=48)
    ok = t.evaluate(metrics(0.8), limited)
    assert ok.value == 0.8 and ok.feasible and ok.constraints == {"flash_kb": -24.0, "ram_kb": -22.0}
    big = t.evaluate(metrics(0.9, flash=70.5, ram=50.0), limited)
    assert big.value == 0.9 and not big.feasible and big.error is None
    assert big.violations() == ["flash 70.5 > 64 KB", "RAM 50.0 > 48 KB"]
    assert t.evaluate(metrics(0.9, flash=70.5), t.Objective()).feasible  # no limits
    missing = t.evaluate(metrics(None), limited)
    assert missing.value is None and "missing" in (missing.error or "")
    assert "not a finite number" in (t.evaluate(metrics(float("nan")), limited).error or "")
    nosize = t.evaluate({"metrics/int8.json": {"recall_at_target": 0.5}}, limited)
    assert "flash_kb missing" in (nosize.error or "")
    held = t.evaluate(metrics(0.8), t.Objective(metric="metrics/int8.json:heldout.recall_at_target"))
    assert held.value == 0.2


def test_default_limits_are_the_smallest_platform_targets() -> None:
    assert t.platform_limits(Params()) == (64.0, 48.0)
    data = {"deploy": {"platforms": {
        "a": {"name": "A", "flash_kb": 1024, "ram_kb": 256, "max_flash_kb": 100, "max_ram_kb": 0},
        "b": {"name": "B", "flash_kb": 1024, "ram_kb": 256, "max_flash_kb": 80, "max_ram_kb": 0}}}}
    assert t.platform_limits(Params.model_validate(data)) == (80.0, None)


# ----------------------------------------------------------------------------- the loop, with a fake runner

SPACE = parse({"train.lr": {"distribution": "log_uniform", "low": 1.0e-3, "high": 1.0e-2},
               "model.ds_tcn.channels": {"distribution": "categorical", "choices": [32, 64]}}).space
LIMITED = t.Objective(max_flash_kb=48)


class FakeDvc:
    """Experiments whose recall grows with lr and whose flash is the channel count; lr above `fail_above`
    makes `dvc exp run` fail."""

    def __init__(self, fail_above: float = 1.0) -> None:
        self.ran: list[tuple[str, dict[str, str]]] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.fail_above = fail_above

    def run(self, name: str, overrides: list[str], log: Path) -> t.RunResult:
        values = dict(o.lstrip("+").split("=", 1) for o in overrides)
        self.ran.append((name, values))
        if float(values["train.lr"]) > self.fail_above:
            return t.RunResult(1, "ERROR: failed to reproduce 'train'")
        self.results[name] = metrics(float(values["train.lr"]) * 50, flash=float(values["model.ds_tcn.channels"]))
        return t.RunResult(0)

    def read(self, name: str) -> dict[str, Any] | None:
        return self.results.get(name)


def search(tmp_path: Path, dvc: FakeDvc, trials: int, study: str = "s", **kw: Any) -> Any:
    lines: list[str] = []
    found = t.run_search(study, kw.pop("space", SPACE), kw.pop("objective", LIMITED), trials,
                         f"sqlite:///{tmp_path / 'tune.db'}", tmp_path / "s.lock", tmp_path / "logs", dvc.run,
                         dvc.read, echo=lines.append, **kw)
    found.lines = lines
    return found


def test_search_runs_scores_and_resumes(tmp_path: Path) -> None:
    dvc = FakeDvc()
    study = search(tmp_path, dvc, 4, seed=7)
    assert [name for name, _ in dvc.ran] == [f"tune-s-{i}" for i in range(4)]
    trials = study.get_trials()
    assert all(tr.state.name == "COMPLETE" for tr in trials)
    for tr in trials:  # the values passed to -S are the trial's params; flash 64 > 48 KB is infeasible
        assert tr.user_attrs["feasible"] == (tr.params["model.ds_tcn.channels"] == 32)
        assert tr.constraints["flash_kb"] == tr.params["model.ds_tcn.channels"] - 48
    text = t.summary(study, SPACE, LIMITED)
    assert "tune-s-0" in text and "flash <= 48 KB" in text
    feasible = [tr for tr in trials if tr.params["model.ds_tcn.channels"] == 32]
    if feasible:
        best = max(feasible, key=lambda tr: tr.value)
        assert f"best: trial {best.number}, experiment tune-s-{best.number}" in text
        assert f"dvc exp apply tune-s-{best.number}" in text and f"dvc exp branch tune-s-{best.number}" in text
    if len(feasible) < 4:
        assert "NO: flash 64.0 > 48 KB" in text
    # resumed: complete already, nothing runs; asked for more, only the missing ones run
    again = search(tmp_path, dvc, 4)
    assert len(dvc.ran) == 4 and "nothing to run" in again.lines[-1]
    search(tmp_path, dvc, 6)
    assert [name for name, _ in dvc.ran[4:]] == ["tune-s-4", "tune-s-5"]


def test_search_is_reproducible_in_one_go_or_resumed(tmp_path: Path) -> None:
    one, two = FakeDvc(), FakeDvc()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    search(tmp_path / "a", one, 12, seed=3)
    search(tmp_path / "b", two, 5, seed=3)
    search(tmp_path / "b", two, 12)  # resumed with the stored seed
    assert [v for _, v in one.ran] == [v for _, v in two.ran]
    assert len({v["train.lr"] for _, v in one.ran}) == 12


def test_failed_experiments_are_failed_trials(tmp_path: Path) -> None:
    dvc = FakeDvc(fail_above=5.0e-3)
    study = search(tmp_path, dvc, 4, seed=1, max_failures=50)
    states = [tr.state.name for tr in study.get_trials()]
    assert states.count("COMPLETE") == 4 and "FAIL" in states
    failed = next(tr for tr in study.get_trials() if tr.state.name == "FAIL")
    assert "exited 1" in failed.user_attrs["error"]
    assert "- (dvc exp run exited 1: ERROR: failed to reproduce 'train')" in t.trials_table(study, SPACE, LIMITED)
    assert t.best_trial(study).state.name == "COMPLETE"
    # every experiment failing: stops after --max-failures, with the study kept
    with pytest.raises(t.TuneError, match="stopped after 2 failed trial"):
        search(tmp_path, FakeDvc(fail_above=0.0), 10, max_failures=2)


def test_resume_refuses_another_space_or_objective(tmp_path: Path) -> None:
    search(tmp_path, FakeDvc(), 1)
    with pytest.raises(t.TuneError, match="another space"):
        search(tmp_path, FakeDvc(), 2, space=SPACE[:1])
    with pytest.raises(t.TuneError, match="another objective"):
        search(tmp_path, FakeDvc(), 2, objective=t.Objective(max_flash_kb=64))
    with pytest.raises(t.TuneError, match="--seed 0, not 5"):
        search(tmp_path, FakeDvc(), 2, seed=5)
    with pytest.raises(t.TuneError, match="study name"):
        search(tmp_path, FakeDvc(), 2, study="a b")


def test_interrupted_trial_is_recovered_or_failed(tmp_path: Path) -> None:
    import optuna

    dvc = FakeDvc()
    search(tmp_path, dvc, 1)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'tune.db'}")
    for number in (1, 2):  # two trials left RUNNING by a killed search; the first one's experiment finished
        trial = study.ask()
        trial.set_user_attr("experiment", f"tune-s-{number}")
        for d in SPACE:
            d.suggest(trial)
    dvc.results["tune-s-1"] = metrics(0.5, flash=32)
    study = search(tmp_path, dvc, 2)
    states = {tr.number: tr.state.name for tr in study.get_trials()}
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "FAIL"} and len(dvc.ran) == 1
    assert study.get_trials()[1].value == 0.5


def test_cli_refuses_bad_space_and_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from wakeword.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["tune"])
    assert result.exit_code == 1 and "root of a DVC repository" in result.output
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "tune.yaml").write_text("space:\n  train.lerning_rate: {distribution: uniform, low: 0.1, high: 0.2}\n")
    result = CliRunner().invoke(main, ["tune"])
    assert result.exit_code == 1 and "train.lerning_rate: unknown params key 'lerning_rate'" in result.output
    (tmp_path / "tune.yaml").write_text("space:\n  train.lr: {distribution: uniform, low: 0.001, high: 0.01}\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "int8.json").write_text(json.dumps({"recall_at_target": 0.8}))
    result = CliRunner().invoke(main, ["tune", "--metric", "metrics/int8.json:recall_at_taget"])
    assert result.exit_code == 1 and "no key 'recall_at_taget'" in result.output, result.output
    result = CliRunner().invoke(main, ["tune", "--study", "a/b"])
    assert result.exit_code == 1 and "study name 'a/b'" in result.output
    result = CliRunner().invoke(main, ["tune", "--trials", "0"])  # an empty study: only the table
    assert result.exit_code == 0 and "nothing to run" in result.output and "no complete feasible trial" in result.output
    assert "size limits: none" in result.output  # no params.yaml here: no platform targets, no limits
    (tmp_path / "params.yaml").write_text("train:\n  lr: 3.0e-3\n")  # the deploy.platforms defaults apply
    result = CliRunner().invoke(main, ["tune", "--trials", "0", "--study", "b"])
    assert result.exit_code == 0 and "size limits: flash <= 64 KB, RAM <= 48 KB" in result.output
    result = CliRunner().invoke(main, ["tune", "--trials", "0", "--study", "c", "--max-ram-kb", "0"])
    assert result.exit_code == 0 and "size limits: flash <= 64 KB\n" in result.output


# ------------------------------------------------------------------------------- end to end (tiny profile)


@pytest.fixture(scope="module")
def repo(tiny_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny-profile pipeline, run once and committed (tests/conftest.py)."""
    return copy_repo(tiny_template, tmp_path_factory.mktemp("tune"))


def experiments(repo: Path) -> dict[str, dict[str, Any]]:
    """{name: {"params": params.yaml, "metrics": {file: data}}} of HEAD's experiments."""
    out = {}
    for baseline in json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout):
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                out[rev["name"]] = {"params": data["params"]["params.yaml"]["data"],
                                    "metrics": {f: m.get("data") for f, m in data["metrics"].items()}}
    return out


# calibration knobs: each trial re-runs calibrate and what follows, not training (the sweep test below trains)
TINY_SPACE = """\
space:
  calibrate.target_fah: {distribution: categorical, choices: [0.5, 1.0, 2.0]}
  calibrate.threshold_step: {distribution: uniform, low: 0.01, high: 0.05, step: 0.01}
"""


@pytest.mark.integration
def test_tune_runs_dvc_experiments_and_resumes(repo: Path) -> None:
    (repo / "tune-test.yaml").write_text(TINY_SPACE)
    cmd = [sys.executable, "-m", "wakeword.cli", "tune", "--space", "tune-test.yaml", "--study", "tiny",
           "--trials", "3", "--seed", "0"]
    start = time.monotonic()
    out = run(cmd, repo).stdout
    print(f"3 trials: {time.monotonic() - start:.0f} s")
    shown = experiments(repo)
    names = sorted(n for n in shown if n.startswith("tune-tiny-"))
    assert names == ["tune-tiny-0", "tune-tiny-1", "tune-tiny-2"], (sorted(shown), out)
    for name in names:
        assert shown[name]["params"]["calibrate"]["target_fah"] in (0.5, 1.0, 2.0)
        assert 0.01 <= shown[name]["params"]["calibrate"]["threshold_step"] <= 0.05
        assert 0 <= shown[name]["metrics"]["metrics/int8.json"]["recall_at_target"] <= 1
    # the table, the size limits from params.yaml's platforms, the best trial and how to keep it
    assert "flash <= 64 KB, RAM <= 48 KB" in out and "best: trial" in out and "dvc exp apply tune-tiny-" in out
    assert out.count(" COMPLETE ") == 3 and "feasible" in out
    # temp experiments: the workspace's params and outputs are untouched
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], repo).stdout == ""
    assert (repo / ".dvc" / "tmp" / "tune" / "tiny.db").exists()
    # resumed: 3 trials complete, nothing more runs
    again = run(cmd, repo).stdout
    assert "3 trial(s) complete, 3 asked for: nothing to run" in again, again
    assert sorted(n for n in experiments(repo) if n.startswith("tune-")) == names


@pytest.mark.integration
def test_queued_sweep_runs_both_experiments(repo: Path) -> None:
    """A two-point sweep: queued with different params, run with the blocking `dvc exp run --run-all`. The
    first is queued from a dirty workspace (params.yaml edited by hand, not committed): as DVC documents, a
    queued experiment takes the workspace's uncommitted changes as they are when it is queued, and neither the
    commit nor the workspace changes."""
    head = run(["git", "rev-parse", "HEAD"], repo).stdout
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    assert params["train"]["lr"] == 3.0e-3
    params["train"]["lr"] = 1.0e-3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "exp", "run", "--queue", "-n", "sweep-lr-1e-3", "-S", "train.epochs=1"], repo)
    (repo / "params.yaml").write_text(original)  # later edits do not reach the queued experiment
    run(["dvc", "exp", "run", "--queue", "-n", "sweep-lr-3e-3", "-S", "train.lr=3.0e-3", "-S", "train.epochs=1"],
        repo)
    start = time.monotonic()
    run(["dvc", "exp", "run", "--run-all", "-j", "1"], repo)
    print(f"sweep of 2: {time.monotonic() - start:.0f} s")
    shown = experiments(repo)
    a, b = shown["sweep-lr-1e-3"], shown["sweep-lr-3e-3"]
    assert (a["params"]["train"]["lr"], b["params"]["train"]["lr"]) == (1.0e-3, 3.0e-3)
    for exp in (a, b):
        assert exp["metrics"]["metrics/int8.json"] and exp["metrics"]["metrics/size.json"]["flash_kb"] > 0
    assert a["metrics"]["metrics/train.json"] != b["metrics"]["metrics/train.json"]
    assert run(["dvc", "queue", "status"], repo).stdout.count("Success") >= 2
    assert run(["git", "rev-parse", "HEAD"], repo).stdout == head
    assert (repo / "params.yaml").read_text() == original
