"""Hyperparameter search over DVC experiments with Optuna (``wakeword tune``).

The search space is a YAML file (``tune.yaml`` at the repository root by default)::

    metric: metrics/int8.json:recall_at_target   # optional: what to optimise, FILE:KEY (dotted key)
    direction: maximize                           # optional: maximize | minimize
    max_flash_kb: 64                              # optional: size limits (default: deploy.platforms targets)
    max_ram_kb: 48
    space:
      train.lr:           {distribution: log_uniform, low: 3.0e-4, high: 1.0e-2}
      model.ds_tcn.channels:     {distribution: categorical, choices: [32, 48, 64]}
      augment.noise_prob: {distribution: uniform, low: 0.3, high: 0.9}
      train.epochs:       {distribution: int, low: 10, high: 30, step: 5}

Every key of ``space`` is a params.yaml key (checked against :class:`wakeword.params.Params`), and every bound
and choice is checked with the repository's params.yaml before any trial runs.

Each trial is one ``dvc exp run --temp -n tune-<study>-<trial> -S key=value ...``. ``--temp`` makes the trials
independent: each starts from the same baseline (HEAD plus the workspace's uncommitted changes to tracked
files) in its own directory, so a trial never inherits the params or half-written outputs of the one before,
a failed trial leaves the workspace as it was, and the workspace stays usable while the search runs. The
unchanged stages are not re-run: their outputs come from the DVC cache. Untracked files are not copied, so
commit the pipeline code first.

The objective is read from the experiment's metrics (``dvc exp show --json``); the size limits are Optuna
constraints (``flash_kb``/``ram_kb`` of metrics/size.json minus the limit; > 0 is infeasible), which the TPE
sampler takes into account and which keep an infeasible trial from being reported as the best. A non-zero
exit of ``dvc exp run`` is a failed trial (its log stays in ``.dvc/tmp/tune/<study>/``), not a crash.

The study lives in a SQLite file (``.dvc/tmp/tune/<study>.db``): running the command again with the same
``--study`` continues until ``--trials`` trials are complete in total. The sampler is TPE, seeded per trial
with ``seed + trial number``, so a search gives the same suggestions whether it ran in one go or was resumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel

from wakeword.params import Params, ParamsError, merge_overrides, parse_params

DEFAULT_METRIC = "metrics/int8.json:recall_at_target"
SIZE_FILE = "metrics/size.json"
TUNE_DIR = Path(".dvc") / "tmp" / "tune"
DISTRIBUTIONS = {
    "uniform": "uniform",
    "float": "uniform",
    "log_uniform": "log_uniform",
    "loguniform": "log_uniform",
    "log-uniform": "log_uniform",
    "int": "int",
    "categorical": "categorical",
}
_KEYS = {
    "uniform": {"distribution", "low", "high", "step"},
    "log_uniform": {"distribution", "low", "high"},
    "int": {"distribution", "low", "high", "step", "log"},
    "categorical": {"distribution", "choices"},
}
_TOP_KEYS = {"space", "metric", "direction", "max_flash_kb", "max_ram_kb"}
_STUDY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# PyYAML (YAML 1.1) reads 1e-3 as a string: accept such strings as numbers in the space file.
_EXP_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+")


class TuneError(ValueError):
    """The search space, the objective or the study cannot be used; the message names the key."""


# ---------------------------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: a params.yaml key and its distribution."""

    key: str
    distribution: Literal["uniform", "log_uniform", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    add: bool = False  # the key is not in params.yaml: set it with -S +key=value

    def suggest(self, trial: Any) -> Any:
        if self.distribution == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.distribution == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step,
                                   log=self.distribution == "log_uniform")

    def override(self, value: Any) -> str:
        """The ``-S`` argument that sets this parameter to ``value``."""
        return f"{'+' if self.add else ''}{self.key}={format_value(value)}"

    def describe(self) -> str:
        if self.distribution == "categorical":
            return f"{self.key}: categorical {list(self.choices)}"
        step = f" step {self.step}" if self.step else ""
        log = " log" if self.log and self.distribution == "int" else ""
        return f"{self.key}: {self.distribution}{log} {self.low}..{self.high}{step}"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "distribution": self.distribution, "low": self.low, "high": self.high,
                "step": self.step, "log": self.log, "choices": list(self.choices)}


@dataclass(frozen=True)
class Objective:
    """What a trial is scored on: one metric (``FILE:KEY``) and the size limits (None = no limit)."""

    metric: str = DEFAULT_METRIC
    direction: Literal["maximize", "minimize"] = "maximize"
    max_flash_kb: float | None = None
    max_ram_kb: float | None = None

    @property
    def metric_file(self) -> str:
        return self.metric.rpartition(":")[0]

    @property
    def metric_key(self) -> str:
        return self.metric.rpartition(":")[2]

    @property
    def metric_label(self) -> str:
        return self.metric_key.rsplit(".", 1)[-1]

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "max_flash_kb": self.max_flash_kb,
                "max_ram_kb": self.max_ram_kb}


@dataclass(frozen=True)
class TuneConfig:
    """A parsed space file: the dimensions and the objective settings it gives (None = not given)."""

    space: tuple[Dimension, ...]
    metric: str | None = None
    direction: str | None = None
    max_flash_kb: float | None = None
    max_ram_kb: float | None = None


def format_value(value: Any) -> str:
    """A value as ``-S`` text. Floats keep a mantissa with a point (1.0e-05, not 1e-05) and full precision."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    return str(value)


def _number(value: Any, where: str, integer: bool = False) -> float | int:
    if isinstance(value, str) and _EXP_FLOAT.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TuneError(f"{where} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise TuneError(f"{where} must be finite, got {value!r}")
    if integer:
        if value != int(value):
            raise TuneError(f"{where} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _field_path(key: str, where: str) -> None:
    """Check that ``key`` (dotted) names one parameter of :class:`Params`, not a section, not a typo."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise TuneError(f"{where}: {key!r} is not a dotted params key such as train.lr")
    annotation: Any = Params
    done: list[str] = []
    for part in parts:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = annotation.model_fields
            if part not in fields:
                section = f"section '{'.'.join(done)}'" if done else "the top level of params.yaml"
                raise TuneError(f"{where}: {key}: unknown params key '{part}' in {section}; allowed keys: "
                                f"{', '.join(sorted(fields))}")
            annotation = fields[part].annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]  # e.g. deploy.platforms.<board>
        else:
            raise TuneError(f"{where}: {key}: '{'.'.join(done)}' is a parameter, not a section")
        done.append(part)
    if (isinstance(annotation, type) and issubclass(annotation, BaseModel)) or get_origin(annotation) is dict:
        sub = sorted(annotation.model_fields) if isinstance(annotation, type) else ["<name>"]
        raise TuneError(f"{where}: {key} is a section, not a parameter; search one of its keys: "
                        f"{', '.join(f'{key}.{s}' for s in sub)}")


def _has_key(data: Any, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _nested(key: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def _dimension(key: str, spec: Any, where: str, base: dict[str, Any]) -> Dimension:
    where = f"{where}: space.{key}"
    if not isinstance(spec, dict):
        raise TuneError(f"{where} must be a mapping with 'distribution' and its bounds or choices, got {spec!r}")
    name = spec.get("distribution")
    if name not in DISTRIBUTIONS:
        raise TuneError(f"{where}.distribution: unknown distribution {name!r}; allowed: "
                        "uniform, log_uniform, int, categorical")
    dist = DISTRIBUTIONS[name]
    extra = set(spec) - _KEYS[dist]
    if extra:
        raise TuneError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))} for a {dist} distribution; "
                        f"allowed: {', '.join(sorted(_KEYS[dist]))}")
    add = not _has_key(base, key)
    if dist == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise TuneError(f"{where}.choices must be a non-empty list, got {choices!r}")
        values = []
        for c in choices:
            if isinstance(c, str) and _EXP_FLOAT.fullmatch(c.strip()):
                c = float(c)
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise TuneError(f"{where}.choices: {c!r} is not a scalar (number, string, bool or null)")
            if isinstance(c, float) and not math.isfinite(c):
                raise TuneError(f"{where}.choices: {c!r} is not finite")
            values.append(c)
        if len({json.dumps(v) for v in values}) != len(values):
            raise TuneError(f"{where}.choices has duplicates: {choices!r}")
        dim = Dimension(key, "categorical", choices=tuple(values), add=add)
        _check_values(dim, values, where, base)
        return dim
    for bound in ("low", "high"):
        if bound not in spec:
            raise TuneError(f"{where}.{bound} is missing (a {dist} distribution needs low and high)")
    integer = dist == "int"
    low = _number(spec["low"], f"{where}.low", integer)
    high = _number(spec["high"], f"{where}.high", integer)
    if low > high:
        raise TuneError(f"{where}: low ({low}) > high ({high})")
    step = None
    if spec.get("step") is not None:
        step = _number(spec["step"], f"{where}.step", integer)
        if step <= 0:
            raise TuneError(f"{where}.step must be > 0, got {step}")
    log = dist == "log_uniform"
    if dist == "int":
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise TuneError(f"{where}.log must be true or false, got {log!r}")
        if log and (low < 1 or (step or 1) != 1):
            raise TuneError(f"{where}: an int distribution with log: true needs low >= 1 and no step other than 1")
    if dist == "log_uniform" and low <= 0:
        raise TuneError(f"{where}: a log_uniform distribution needs low > 0, got {low}")
    dim = Dimension(key, dist, low=low, high=high, step=step, log=log, add=add)
    _check_values(dim, [low, high], where, base)
    return dim


def _check_values(dim: Dimension, values: Sequence[Any], where: str, base: dict[str, Any]) -> None:
    """Every bound and choice must give valid parameters (the ranges of wakeword.params) with params.yaml."""
    for value in values:
        try:
            parse_params(merge_overrides(base, _nested(dim.key, value)), f"params.yaml with {dim.key}={value!r}")
        except ParamsError as exc:
            raise TuneError(f"{where}: the value {value!r} is not allowed:\n{exc}") from None


def parse_space(data: Any, source: str = "tune.yaml", base_params: dict[str, Any] | None = None) -> TuneConfig:
    """Validate a loaded space file. ``base_params``: the repository's params.yaml (bounds are checked with it;
    None: the defaults of :class:`Params`)."""
    base = base_params or {}
    if not isinstance(data, dict):
        raise TuneError(f"{source}: top level must be a mapping with a 'space' section, got {type(data).__name__}")
    extra = set(data) - _TOP_KEYS
    if extra:
        raise TuneError(f"{source}: unknown key(s) {', '.join(sorted(map(str, extra)))}; allowed: "
                        f"{', '.join(sorted(_TOP_KEYS))}")
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise TuneError(f"{source}: 'space' must be a non-empty mapping of params keys to distributions")
    dims = []
    for key, spec in space.items():
        key = str(key)
        _field_path(key, f"{source}: space")
        dims.append(_dimension(key, spec, source, base))
    metric = data.get("metric")
    if metric is not None:
        check_metric(metric, f"{source}: metric")
    direction = data.get("direction")
    if direction is not None and direction not in ("maximize", "minimize"):
        raise TuneError(f"{source}: direction must be maximize or minimize, got {direction!r}")
    limits = []
    for key in ("max_flash_kb", "max_ram_kb"):
        value = data.get(key)
        if value is not None:
            value = _number(value, f"{source}: {key}")
            if value < 0:
                raise TuneError(f"{source}: {key} must be >= 0 (0 = no limit), got {value}")
        limits.append(value)
    return TuneConfig(tuple(dims), metric, direction, limits[0], limits[1])


def check_metric(metric: Any, where: str) -> None:
    if not isinstance(metric, str) or ":" not in metric or not all(metric.rpartition(":")[::2]):
        raise TuneError(f"{where} must be FILE:KEY such as {DEFAULT_METRIC}, got {metric!r}")


def load_space(path: str | Path, params_path: str | Path | None = "params.yaml") -> TuneConfig:
    """Read and validate a space file (``yaml.safe_load``); bounds are checked with ``params_path``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TuneError(f"{path}: cannot read the search space ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise TuneError(f"{path}: not valid YAML: {exc}") from None
    base: dict[str, Any] = {}
    if params_path is not None and Path(params_path).exists():
        try:
            base = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
            parse_params(base, str(params_path))
        except (yaml.YAMLError, ParamsError) as exc:
            raise TuneError(f"{params_path} must be valid before a search: {exc}") from None
    return parse_space(data, str(path), base)


def platform_limits(params: Params) -> tuple[float | None, float | None]:
    """The smallest flash and RAM targets of ``deploy.platforms`` (0 there = no limit; None: no target)."""
    flash = [p.max_flash_kb for p in params.deploy.platforms.values() if p.max_flash_kb > 0]
    ram = [p.max_ram_kb for p in params.deploy.platforms.values() if p.max_ram_kb > 0]
    return (float(min(flash)) if flash else None, float(min(ram)) if ram else None)


# ------------------------------------------------------------------------------------------- the objective


@dataclass(frozen=True)
class Outcome:
    """A finished experiment scored: the metric, its size and the constraint values (> 0 = violated)."""

    value: float | None
    flash_kb: float | None = None
    ram_kb: float | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def feasible(self) -> bool:
        return self.error is None and all(v <= 0 for v in self.constraints.values())

    def violations(self) -> list[str]:
        out = []
        for name, size, excess in (("flash", self.flash_kb, self.constraints.get("flash_kb", 0.0)),
                                   ("RAM", self.ram_kb, self.constraints.get("ram_kb", 0.0))):
            if excess > 0 and size is not None:
                out.append(f"{name} {size:.1f} > {size - excess:g} KB")
        return out


def lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def evaluate(metrics: Mapping[str, Any], objective: Objective) -> Outcome:
    """Score one experiment from its metrics (``{file: parsed json}``)."""
    raw = lookup(metrics.get(objective.metric_file), objective.metric_key)
    value = _finite(raw)
    size = metrics.get(SIZE_FILE) or {}
    flash, ram = _finite(size.get("flash_kb")), _finite(size.get("ram_kb"))
    if value is None:
        what = "missing" if raw is None else f"not a finite number ({raw!r})"
        return Outcome(None, flash, ram, error=f"{objective.metric}: {what} in the experiment's metrics")
    constraints = {}
    for key, size_kb, limit in (("flash_kb", flash, objective.max_flash_kb), ("ram_kb", ram, objective.max_ram_kb)):
        if limit:
            if size_kb is None:
                return Outcome(value, flash, ram, error=f"{SIZE_FILE}:{key} missing, needed for the size limit")
            constraints[key] = size_kb - limit
    return Outcome(value, flash, ram, constraints)


# ---------------------------------------------------------------------------------------------------- DVC


@dataclass(frozen=True)
class RunResult:
    returncode: int
    log_tail: str = ""


#: runs one experiment: (name, -S overrides, log file) -> result
Runner = Callable[[str, list[str], Path], RunResult]
#: fetches an experiment's metrics ({file: data}) by name, None if it is not there
MetricsReader = Callable[[str], "dict[str, Any] | None"]


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def dvc_runner(repo: Path) -> Runner:
    def run(name: str, overrides: list[str], log: Path) -> RunResult:
        cmd = _dvc("exp", "run", "--temp", "-n", name)
        for o in overrides:
            cmd += ["-S", o]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(cmd[2:]) + "\n")
            fh.flush()
            proc = subprocess.Popen(cmd, cwd=repo, stdout=fh, stderr=subprocess.STDOUT)
            try:
                proc.wait()
            except KeyboardInterrupt:  # let DVC stop its stage and remove its temp directory
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        return RunResult(proc.returncode, "\n".join(line[-300:] for line in lines[-8:]))

    return run


def experiments_metrics(repo: Path, all_commits: bool = False) -> dict[str, dict[str, Any]]:
    """``{experiment name: {metrics file: data}}`` from ``dvc exp show --json`` (HEAD's experiments)."""
    cmd = _dvc("exp", "show", "--json", "--no-pager", *(["-A"] if all_commits else []))
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TuneError(f"dvc exp show failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
    out: dict[str, dict[str, Any]] = {}
    for baseline in json.loads(proc.stdout or "[]"):
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                if rev.get("name") and not rev.get("error"):
                    out[rev["name"]] = {f: (m or {}).get("data") or {} for f, m in (data.get("metrics") or {}).items()}
    return out


def dvc_metrics_reader(repo: Path, all_commits: bool = False) -> MetricsReader:
    return lambda name: experiments_metrics(repo, all_commits).get(name)


# ------------------------------------------------------------------------------------------------ the loop


def experiment_name(study: str, number: int) -> str:
    return f"tune-{study}-{number}"


def check_study_name(study: str) -> None:
    if not _STUDY_RE.fullmatch(study):
        raise TuneError(f"study name {study!r}: use letters, digits, '-' and '_' (it becomes part of the "
                        "experiment names, git refs), starting with a letter or digit, at most 64 characters")


@contextlib.contextmanager
def _study_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TuneError(f"another `wakeword tune` is running this study (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_study(study_name: str, storage: str, objective: Objective, space: Sequence[Dimension],
               seed: int | None) -> tuple[Any, int]:
    """Create or load the study; a loaded one must have been created with the same space and objective.
    Returns (study, seed)."""
    import optuna

    _quiet_optuna()
    study = optuna.create_study(study_name=study_name, storage=storage, direction=objective.direction,
                                load_if_exists=True)
    attrs = study.user_attrs
    wanted = {"space": [d.as_dict() for d in space], "objective": objective.as_dict()}
    if "space" not in attrs:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        study.set_user_attr("seed", 0 if seed is None else seed)
        return study, 0 if seed is None else seed
    for key, value in wanted.items():
        if json.dumps(attrs.get(key), sort_keys=True) != json.dumps(value, sort_keys=True):
            raise TuneError(f"study '{study_name}' was created with another {key}: {json.dumps(attrs.get(key))}; "
                            f"now {json.dumps(value)}. Use a new --study name (or the same space and options).")
    if seed is not None and seed != attrs["seed"]:
        raise TuneError(f"study '{study_name}' was created with --seed {attrs['seed']}, not {seed}")
    return study, int(attrs["seed"])


def _record(trial: Any, outcome: Outcome) -> None:
    """Write an outcome's sizes, constraints and feasibility on an (unfinished) trial."""
    trial.set_user_attr("flash_kb", outcome.flash_kb)
    trial.set_user_attr("ram_kb", outcome.ram_kb)
    trial.set_user_attr("feasible", outcome.feasible)
    trial.set_user_attr("violations", outcome.violations())
    for key, value in outcome.constraints.items():
        trial.set_constraint(key, value)


def _finish(study: Any, trial: Any, outcome: Outcome | None, error: str | None) -> bool:
    """Tell the study how a trial ended; True if it is complete."""
    from optuna.trial import TrialState

    if outcome is not None and outcome.error is None:
        _record(trial, outcome)
        study.tell(trial, outcome.value)
        return True
    trial.set_user_attr("error", error or (outcome.error if outcome else "failed"))
    study.tell(trial, state=TrialState.FAIL)
    return False


def _recover_stale(study: Any, objective: Objective, read_metrics: MetricsReader, echo: Callable[[str], None]) -> None:
    """Trials left RUNNING by an interrupted search (the lock says no one runs them now): an experiment that
    finished is scored, the others are marked failed."""
    import optuna
    from optuna.trial import TrialState

    for frozen in study.get_trials(deepcopy=False, states=[TrialState.RUNNING]):
        name = frozen.user_attrs.get("experiment", "")
        metrics = read_metrics(name) if name else None
        trial = optuna.Trial(study, frozen._trial_id)
        if metrics is not None:
            done = _finish(study, trial, evaluate(metrics, objective), None)
            echo(f"trial {frozen.number}: {name} finished before the search was interrupted: "
                 f"{'scored' if done else 'failed'}")
        else:
            _finish(study, trial, None, "interrupted before its experiment finished")
            echo(f"trial {frozen.number}: {name} was interrupted; marked failed")


def run_search(
    study_name: str,
    space: Sequence[Dimension],
    objective: Objective,
    trials: int,
    storage: str,
    lock_path: Path,
    log_dir: Path,
    runner: Runner,
    read_metrics: MetricsReader,
    seed: int | None = None,
    max_failures: int = 3,
    echo: Callable[[str], None] = print,
    stale_metrics: MetricsReader | None = None,
) -> Any:
    """Run trials until ``trials`` are complete in the study (resuming it); return the study.

    Stops with :class:`TuneError` after ``max_failures`` failed trials in this call."""
    from optuna.samplers import TPESampler
    from optuna.trial import TrialState

    check_study_name(study_name)
    with _study_lock(lock_path):
        study, seed = open_study(study_name, storage, objective, space, seed)
        _recover_stale(study, objective, stale_metrics or read_metrics, echo)
        complete = len(study.get_trials(deepcopy=False, states=[TrialState.COMPLETE]))
        if complete >= trials:
            echo(f"study '{study_name}': {complete} trial(s) complete, {trials} asked for: nothing to run")
            return study
        echo(f"study '{study_name}': {complete} of {trials} trial(s) complete; running {trials - complete} more "
             f"(seed {seed}, storage {storage})")
        failures = 0
        while complete < trials:
            study.sampler = TPESampler(seed=seed + len(study.trials))  # same suggestions resumed or not
            trial = study.ask()
            values = {d.key: d.suggest(trial) for d in space}
            name = experiment_name(study_name, trial.number)
            trial.set_user_attr("experiment", name)
            overrides = [d.override(values[d.key]) for d in space]
            echo(f"trial {trial.number}: dvc exp run --temp -n {name} " + " ".join(f"-S {o}" for o in overrides))
            log = log_dir / f"{name}.log"
            try:
                result = runner(name, overrides, log)
            except KeyboardInterrupt:
                _finish(study, trial, None, "interrupted (Ctrl-C or SIGTERM)")
                raise
            if result.returncode != 0:
                _finish(study, trial, None, f"dvc exp run exited {result.returncode}: "
                                            f"{result.log_tail.splitlines()[-1] if result.log_tail else ''}")
                echo(f"trial {trial.number}: FAILED (exit {result.returncode}, log {log}):\n{result.log_tail}")
                failures += 1
            else:
                metrics = read_metrics(name)
                outcome = evaluate(metrics, objective) if metrics is not None else None
                error = None if metrics is not None else f"experiment {name} not in `dvc exp show`"
                if _finish(study, trial, outcome, error):
                    complete += 1
                    assert outcome is not None
                    state = "feasible" if outcome.feasible else "INFEASIBLE: " + ", ".join(outcome.violations())
                    echo(f"trial {trial.number}: {objective.metric_label} = {outcome.value:.4g} ({state})")
                else:
                    failures += 1
                    echo(f"trial {trial.number}: FAILED: {error or (outcome.error if outcome else '')}")
            if failures >= max_failures and complete < trials:
                raise TuneError(f"stopped after {failures} failed trial(s) in this run (--max-failures); "
                                f"see the logs in {log_dir}")
        return study


# ------------------------------------------------------------------------------------------------ reporting


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def best_trial(study: Any) -> Any | None:
    """The best complete, feasible trial (None if there is none)."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])
            if t.user_attrs.get("feasible", True) and t.value is not None]
    if not done:
        return None
    sign = 1 if study.direction == StudyDirection.MAXIMIZE else -1
    return max(done, key=lambda t: (sign * t.value, -t.number))


def trials_table(study: Any, space: Sequence[Dimension], objective: Objective) -> str:
    """A plain-text table: one row per trial with its params, objective, size and feasibility."""
    header = ["trial", "state", "experiment", *(d.key for d in space), objective.metric_label, "flash_kb",
              "ram_kb", "feasible"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if t.state.name == "COMPLETE":
            feasible = "yes" if a.get("feasible", True) else "NO: " + ", ".join(a.get("violations", []))
        else:
            feasible = f"- ({a['error']})" if a.get("error") else "-"
        rows.append([str(t.number), t.state.name, a.get("experiment", "-"), *(_fmt(t.params.get(d.key))
                     for d in space), _fmt(t.value), _fmt(a.get("flash_kb")), _fmt(a.get("ram_kb")), feasible])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return "\n".join(lines)


def summary(study: Any, space: Sequence[Dimension], objective: Objective) -> str:
    """The trials table, then the best feasible trial and how to keep it."""
    limits = ", ".join(f"{k} <= {v:g} KB" for k, v in (("flash", objective.max_flash_kb),
                                                        ("RAM", objective.max_ram_kb)) if v) or "none"
    lines = [f"study '{study.study_name}': {objective.direction} {objective.metric}; size limits: {limits}", "",
             trials_table(study, space, objective), ""]
    best = best_trial(study)
    if best is None:
        lines.append("no complete feasible trial yet")
        return "\n".join(lines)
    name = best.user_attrs.get("experiment")
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    flash, ram = _fmt(best.user_attrs.get("flash_kb")), _fmt(best.user_attrs.get("ram_kb"))
    lines += [
        (f"best: trial {best.number}, experiment {name}: {objective.metric_label} = {_fmt(best.value)} "
         f"(flash {flash} KB, RAM {ram} KB; {params})"),
        "keep it:",
        f"  dvc exp apply {name}   # its params, metrics and outputs into the workspace, then git commit",
        f"  dvc exp branch {name} {name}-branch   # or as a git branch",
    ]
    return "\n".join(lines)


def default_storage(root: Path, study: str) -> str:
    return f"sqlite:///{(root / TUNE_DIR / f'{study}.db').resolve()}"
