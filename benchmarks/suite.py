"""The performance benchmark of issue 6 (``python -m benchmarks``): pipeline wall time and peak memory per
stage, no-op ``dvc repro``, and the throughputs of featurize, train, streaming evaluation and the deployed
int8 model, each printed with its target.

Pipeline (unless ``--skip-pipeline``): the project (stages/, wakeword/, dvc.yaml, params.yaml, merged with
``profiles/<profile>.yaml`` for any profile but ``default``, and the few tracked placeholders) is copied into a
new git + DVC repository in a temporary directory, the recipe of ``tests/_support.py``; then every stage runs
on its own, ``dvc repro -s <stage>``, in the topological order of dvc.yaml (:func:`stage_order`; ties keep the
file order). Per stage:

* wall time of the ``dvc repro -s`` process (dvc start-up and output hashing included);
* peak memory: the peak resident set of the largest single process of the stage's tree (dvc itself or the
  stage command it runs; not their sum): ``dvc repro -s`` runs under a small Python wrapper process
  (:data:`RSS_WRAPPER`) that reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after it ends. The wrapper is
  needed because Linux charges a child with the resident set of the process it was forked from (the old
  address space's high-water mark at ``exec``): measured straight from this process (``os.wait4``), every
  stage would show at least this process's own few hundred MB. The wrapper's own ~10 MB is the floor instead
  (GNU ``time -v`` measures the same way). dvc itself peaks at ~50-60 MB for a no-op.

Then a no-op ``dvc repro`` (median of ``--noop-repeats``). The from-scratch total is the sum of the stage
times; since each ``dvc repro -s`` pays dvc's start-up and pipeline loading once more than one
``dvc repro`` does, that overhead is measured too (median of no-op ``dvc repro -s <last stage>``) and the
estimated single-run total ``sum - (stages - 1) * overhead`` is reported beside it. The target is checked on
the measured sum (an upper bound).

Throughputs (from the temporary repository's outputs, or with ``--skip-pipeline`` from an existing run's,
``--project``, default this checkout, read only):

* featurize: hours of audio featurized (training windows x ``audio.clip_s`` + evaluation clips x
  ``audio.eval_clip_s`` + every stream's hours, from ``data/features/index.json``) per minute of the featurize
  stage. With ``--skip-pipeline`` the stage command itself (``python -m stages.featurize``, no dvc) is rerun
  on the project's data/synth, data/own and data/split into a temporary directory (``--no-featurize`` skips
  it);
* train: training windows x epochs per second of the train stage (``metrics/train.json``: epochs and
  ``train_wall_s``, the library's own wall time, reported too: with ``--skip-pipeline`` it is the only one);
* streaming evaluation: the float model (``models/model.pt``, CMVN) scoring 1 h of the test stream features
  with the evaluate stage's functions (:func:`wakeword.train.torch_logit_fn`,
  :func:`wakeword.scoring.stream_logits`, :func:`wakeword.scoring.probabilities`,
  :func:`wakeword.detector.detect` at the calibrated threshold); a stream shorter than 1 h is repeated to
  1 h. torch keeps its default thread count, as the evaluate stage does;
* the deployed int8 model (``models/deploy``) on the first 10 minutes of ``data/synth/streams/test.wav``:
  :mod:`benchmarks.runtime_speed` in a subprocess pinned to one CPU with one BLAS thread; the real-time
  factor of the whole runtime (features + int8 model + detector; the target applies to it) and of the model
  alone;
* MACs per second of audio, from ``metrics/size.json``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: files a pipeline copy needs besides stages/, wakeword/, dvc.yaml and params.yaml (tracked placeholders)
KEEP = ("data/raw/README.md", "teachers/README.md", "models/.gitignore")
STREAM_EVAL_AUDIO_S = 3600.0

# targets of issue 6 (this 2-core machine): (comparison, limit)
TARGET_PIPELINE_S = 15 * 60.0
TARGET_NOOP_S = 3.0
TARGET_STREAM_EVAL_S = 60.0  # per hour of audio
TARGET_INT8_RTF = 0.002


# ------------------------------------------------------------------------------------------------ results


@dataclass
class Measure:
    """One row of the table. ``target``: (``"<"`` or ``">"``, limit) or None; ``met`` is derived."""

    name: str
    value: float | None
    unit: str
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        return target_met(self.value, self.target)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = list(self.target) if self.target else None
        d["met"] = self.met
        return d


def target_met(value: float | None, target: tuple[str, float] | None) -> bool | None:
    """True/False against ``(op, limit)`` with op ``<`` or ``>``; None without a value or a target."""
    if target is None or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    op, limit = target
    if op == "<":
        return value < limit
    if op == ">":
        return value > limit
    raise ValueError(f"unknown target comparison {op!r}")


def format_value(value: float | None) -> str:
    """Compact number: 4 significant digits, thousands separators for large values, '-' for None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    v = float(value)
    if v != 0 and (abs(v) < 1e-3):
        return f"{v:.3e}"
    if abs(v) >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def format_table(rows: list[Measure]) -> str:
    """Plain-text table: measure, value, unit, target, met (yes/no/-) and a note."""
    head = ("measure", "value", "unit", "target", "met", "note")
    body = []
    for m in rows:
        tgt = f"{m.target[0]} {format_value(m.target[1])}" if m.target else "-"
        met = {True: "yes", False: "NO", None: "-"}[m.met]
        body.append((m.name, format_value(m.value), m.unit, tgt, met, m.note))
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    align = ["<", ">", "<", "<", "<", "<"]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(r) for r in body)])


# ------------------------------------------------------------------------------------------- stage order


def _paths(entries: list[Any] | None) -> list[str]:
    """Paths of a dvc.yaml deps/outs/metrics/plots list (strings or one-key dicts)."""
    out = []
    for e in entries or []:
        if isinstance(e, str):
            out.append(e)
        elif isinstance(e, dict):
            out.extend(str(k) for k in e)
    return out


def _overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def stage_order(dvc_yaml: dict[str, Any]) -> list[str]:
    """Topological order of the stages of a parsed dvc.yaml: a stage comes after every stage whose outs,
    metrics or plots overlap its deps (same path, or one inside the other); among stages that are ready,
    the one listed first in the file goes first. Raises ValueError on a cycle."""
    stages = dvc_yaml.get("stages", {})
    names = list(stages)
    produced = {n: _paths(stages[n].get("outs")) + _paths(stages[n].get("metrics")) + _paths(stages[n].get("plots"))
                for n in names}
    needs: dict[str, set[str]] = {}
    for n in names:
        deps = _paths(stages[n].get("deps"))
        needs[n] = {m for m in names if m != n and any(_overlaps(d, o) for d in deps for o in produced[m])}
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and needs[n] <= set(order)]
        if not ready:
            raise ValueError(f"dvc.yaml: dependency cycle among {sorted(set(names) - set(order))}")
        order.append(ready[0])
    return order


# ------------------------------------------------------------------------------------------------ pipeline


def tool_env() -> dict[str, str]:
    """This venv's tools first on PATH; no DVC analytics."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                DVC_NO_ANALYTICS="1")


@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    rc: int
    cpu_s: float = 0.0  # user + system CPU of the whole process tree


#: Runs argv[2:] (stdout/stderr inherited), then writes {"rc", "maxrss", "cpu_s"} of its children to argv[1]
#: and exits with the command's code. Small on purpose: its resident set is the floor of what it measures.
RSS_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(json.dumps({'rc': rc, 'maxrss': ru.ru_maxrss, "
    "'cpu_s': ru.ru_utime + ru.ru_stime}))\n"
    "sys.exit(rc)\n"
)


def run_measured(cmd: list[str], cwd: Path, log: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run ``cmd`` under :data:`RSS_WRAPPER`: wall time (here), and peak RSS of the largest process of its tree
    and the tree's CPU time (from the wrapper; see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="wakeword-bench-rss-") as tmp, \
            open(log if log is not None else os.devnull, "ab") as out:
        res = Path(tmp) / "rusage.json"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, str(res), *cmd], cwd=cwd, env=env or tool_env(),
                              stdout=out, stderr=subprocess.STDOUT, check=False)
        wall = time.perf_counter() - t0
        if not res.exists():  # the wrapper itself failed (cannot start the command)
            return Run(wall, math.nan, proc.returncode or 1, math.nan)
        usage = json.loads(res.read_text())
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss_mb = usage["maxrss"] / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)
    return Run(wall, rss_mb, int(usage["rc"]), float(usage["cpu_s"]))


def _check(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def make_repo(repo: Path, profile: str, root: Path = ROOT) -> dict[str, Any]:
    """A fresh git + DVC repository at ``repo`` holding the pipeline with ``profile`` merged over params.yaml
    (``default``: params.yaml as is), committed. Returns the parsed dvc.yaml."""
    import yaml

    from wakeword.params import merge_overrides

    repo.mkdir(parents=True, exist_ok=True)
    for name in ("stages", "wakeword"):
        shutil.copytree(root / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "dvc.yaml", repo / "dvc.yaml")
    for keep in KEEP:
        (repo / keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / keep, repo / keep)
    params = yaml.safe_load((root / "params.yaml").read_text())
    if profile != "default":
        params = merge_overrides(params, yaml.safe_load((root / "profiles" / f"{profile}.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "bench@example.com"],
                ["git", "config", "user.name", "bench"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.autostage", "true"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "benchmark pipeline"]):
        _check(cmd, repo)
    return yaml.safe_load((repo / "dvc.yaml").read_text())


def run_pipeline(repo: Path, order: list[str], noop_repeats: int = 3, echo: bool = True) -> dict[str, Any]:
    """Each stage with ``dvc repro -s`` in ``order`` (logs under ``repo/.bench-logs``), then the no-op runs."""
    logs = repo / ".bench-logs"
    logs.mkdir(exist_ok=True)
    stages: list[dict[str, Any]] = []
    for name in order:
        r = run_measured(["dvc", "repro", "-s", name], repo, logs / f"{name}.log")
        stages.append({"stage": name, "wall_s": r.wall_s, "cpu_s": r.cpu_s, "peak_rss_mb": r.peak_rss_mb,
                       "rc": r.rc})
        if echo:
            print(f"  {name:10s} {r.wall_s:8.1f} s wall {r.cpu_s:8.1f} s CPU  peak RSS {r.peak_rss_mb:7.0f} MB",
                  flush=True)
        if r.rc != 0:
            tail = (logs / f"{name}.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"dvc repro -s {name} failed ({r.rc}); log {logs / (name + '.log')}:\n{tail}")
    noop = [run_measured(["dvc", "repro"], repo, logs / "noop.log") for _ in range(noop_repeats)]
    single = [run_measured(["dvc", "repro", "-s", order[-1]], repo, logs / "noop-single.log")
              for _ in range(noop_repeats)]
    for r in noop + single:
        if r.rc != 0:
            raise RuntimeError(f"no-op dvc repro failed ({r.rc}); see {logs}")
    total = sum(s["wall_s"] for s in stages)
    overhead = statistics.median(r.wall_s for r in single)
    return {
        "stages": stages, "total_s": total,
        "noop_s": statistics.median(r.wall_s for r in noop), "noop_runs_s": [r.wall_s for r in noop],
        "noop_peak_rss_mb": max(r.peak_rss_mb for r in noop),
        "per_invocation_overhead_s": overhead,
        "estimated_single_run_s": total - (len(stages) - 1) * overhead,
    }


# --------------------------------------------------------------------------------------------- throughput


def featurized_hours(index: dict[str, Any], clip_s: float, eval_clip_s: float) -> dict[str, float]:
    """Hours of audio the featurize stage turned into features: training windows of ``clip_s``, evaluation
    clips (every other split) of ``eval_clip_s``, and every split's stream."""
    splits = index.get("splits", {})
    train = float(splits.get("train", {}).get("examples", 0)) * clip_s / 3600.0
    clips = sum(float(v.get("examples", 0)) for k, v in splits.items() if k != "train") * eval_clip_s / 3600.0
    streams = sum(float(v.get("hours", 0.0)) for v in index.get("streams", {}).values())
    return {"train_windows_h": train, "eval_clips_h": clips, "streams_h": streams,
            "total_h": train + clips + streams}


def per_minute(hours: float, seconds: float | None) -> float | None:
    return None if not seconds else hours / (seconds / 60.0)


def project_params(project: Path) -> Any:
    from wakeword.params import load_params

    return load_params(project / "params.yaml")


def rerun_featurize(project: Path, log: Path | None = None) -> Run:
    """The featurize stage's command (no dvc) on ``project``'s inputs, features into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="wakeword-bench-feat-") as tmp:
        cmd = [sys.executable, "-m", "stages.featurize", "data/synth", "data/own", "data/split",
               str(Path(tmp) / "features"), "--params", "params.yaml"]
        env = tool_env()
        env["PYTHONPATH"] = str(project)  # the project's stages/ and wakeword/, as dvc runs them
        return run_measured(cmd, project, log, env)


def stream_eval(project: Path, audio_s: float = STREAM_EVAL_AUDIO_S, repeat: int = 1,
                logit_batch: int | None = None) -> dict[str, Any]:
    """Seconds to score ``audio_s`` of the test stream's features with the float model and run the detector at
    the calibrated threshold (best of ``repeat``). ``logit_batch``: a batch size for
    :func:`wakeword.train.torch_logit_fn` other than its default (a what-if; None: as the evaluate stage)."""
    import numpy as np
    import torch

    from wakeword.checkpoint import load_checkpoint
    from wakeword.cmvn import load_cmvn
    from wakeword.detector import DetectorConfig, detect
    from wakeword.featureset import load_stream, read_index
    from wakeword.scoring import probabilities, stream_logits
    from wakeword.train import torch_logit_fn

    feats_dir = project / "data" / "features"
    index = read_index(feats_dir)
    window, step = int(index["window_frames"]), int(index["step_frames"])
    hop_s = float(index["streams"]["test"].get("hop_s", 0.01))
    stream, _ = load_stream(feats_dir, "test")
    frames = round(audio_s / hop_s)
    if stream.shape[0] < frames:
        stream = np.concatenate([stream] * math.ceil(frames / stream.shape[0]))
    stream = np.ascontiguousarray(stream[:frames])
    model, _ = load_checkpoint(project / "models" / "model.pt")
    cmvn = load_cmvn(project / "models" / "cmvn.json")
    fn = torch_logit_fn(model, cmvn) if logit_batch is None else torch_logit_fn(model, cmvn, batch=logit_batch)
    cal = json.loads((project / "metrics" / "calibration.json").read_text())
    cfg = DetectorConfig.from_dict(cal["detector"])
    stream_logits(fn, stream[: window + 50 * step], window, step)  # warm-up
    best = math.inf
    parts: dict[str, float] = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        logits = stream_logits(fn, stream, window, step)
        t1 = time.perf_counter()
        events = detect(probabilities(logits, float(cal["temperature"])), cfg)
        t2 = time.perf_counter()
        if t2 - t0 < best:
            best, parts = t2 - t0, {"scoring_s": t1 - t0, "detector_s": t2 - t1}
    return {"audio_s": frames * hop_s, "seconds": best, **parts, "windows": int(logits.shape[0]),
            "detections": int(events.shape[0]), "torch_threads": torch.get_num_threads(), "logit_batch": logit_batch,
            "audio_s_per_s": frames * hop_s / best}


def int8_runtime(project: Path, seconds: float = 600.0) -> dict[str, Any]:
    """:mod:`benchmarks.runtime_speed` on ``project``'s deployed model, in a subprocess on one CPU with one
    BLAS thread."""
    with tempfile.TemporaryDirectory(prefix="wakeword-bench-rt-") as tmp:
        out = Path(tmp) / "rt.json"
        cmd = [sys.executable, "-m", "benchmarks.runtime_speed", str(project / "models" / "deploy"),
               str(project / "data" / "synth" / "streams" / "test.wav"), "--size",
               str(project / "metrics" / "size.json"), "--seconds", str(seconds), "--one-core", "--json", str(out)]
        from benchmarks.runtime_speed import one_core_env

        env = one_core_env(tool_env())
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(project)])
        proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"runtime benchmark failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------- the suite


@dataclass
class Results:
    profile: str
    mode: str
    project: str
    machine: dict[str, Any]
    measures: list[Measure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "mode": self.mode, "project": self.project, "machine": self.machine,
                "measures": [m.to_dict() for m in self.measures], "details": self.details}


def machine_info() -> dict[str, Any]:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "loadavg_at_start": load}


def pipeline_measures(p: dict[str, Any]) -> list[Measure]:
    rows = [Measure("dvc repro from scratch (sum of stages)", p["total_s"], "s", ("<", TARGET_PIPELINE_S),
                    f"{len(p['stages'])} stages, each dvc repro -s"),
            Measure("  estimated as one dvc repro", p["estimated_single_run_s"], "s", None,
                    f"minus {len(p['stages']) - 1} x {p['per_invocation_overhead_s']:.2f} s dvc start-up"),
            Measure("no-op dvc repro (median)", p["noop_s"], "s", ("<", TARGET_NOOP_S),
                    "runs " + ", ".join(f"{s:.2f}" for s in p["noop_runs_s"]))]
    for s in p["stages"]:
        rows.append(Measure(f"stage {s['stage']}: wall", s["wall_s"], "s", None, f"CPU {s.get('cpu_s', 0):.1f} s"))
        rows.append(Measure(f"stage {s['stage']}: peak RSS", s["peak_rss_mb"], "MB", None, "largest process"))
    return rows


def throughput_measures(project: Path, stage_s: dict[str, float], *, featurize_rerun: bool,
                        details: dict[str, Any], echo: bool = True, logit_batch: int | None = None) -> list[Measure]:
    rows: list[Measure] = []
    p = project_params(project)
    index = json.loads((project / "data" / "features" / "index.json").read_text())
    hours = featurized_hours(index, p.audio.clip_s, p.audio.eval_clip_s)
    details["featurized_hours"] = hours
    feat_s, feat_note = stage_s.get("featurize"), "featurize stage (dvc repro -s)"
    if feat_s is None and featurize_rerun:
        if echo:
            print("  rerunning the featurize command into a temporary directory ...", flush=True)
        r = rerun_featurize(project)
        if r.rc != 0:
            raise RuntimeError(f"featurize rerun failed ({r.rc})")
        feat_s, feat_note = r.wall_s, "stage command rerun, no dvc"
        details["featurize_rerun"] = asdict(r)
    rows.append(Measure("featurize: hours of audio per minute", per_minute(hours["total_h"], feat_s), "h/min", None,
                        f"{hours['total_h']:.2f} h in {feat_s:.0f} s, {feat_note}" if feat_s else "no stage time"))

    train = json.loads((project / "metrics" / "train.json").read_text())
    windows = int(index["splits"]["train"]["examples"])
    epochs = int(train["epochs"])
    samples = windows * epochs
    details["train"] = {"windows": windows, "epochs": epochs, "train_wall_s": train.get("train_wall_s"),
                        "stage_s": stage_s.get("train")}
    if stage_s.get("train"):
        rows.append(Measure("train: samples per second (stage)", samples / stage_s["train"], "win/s", None,
                            f"{windows} windows x {epochs} epochs / train stage wall"))
    if train.get("train_wall_s"):
        rows.append(Measure("train: samples per second (train_model)", samples / float(train["train_wall_s"]),
                            "win/s", None, f"metrics/train.json train_wall_s {train['train_wall_s']} s, "
                            "validation included"))

    if echo:
        print("  streaming evaluation of 1 h ...", flush=True)
    se = stream_eval(project, logit_batch=logit_batch)
    details["stream_eval"] = se
    batch_note = f", torch_logit_fn batch {logit_batch} (what-if)" if logit_batch else ""
    rows.append(Measure("streaming evaluation of 1 h of audio", se["seconds"], "s", ("<", TARGET_STREAM_EVAL_S),
                        f"float model, torch {se['torch_threads']} threads, scoring + detector{batch_note}"))
    rows.append(Measure("  = seconds of audio per second", se["audio_s_per_s"], "s/s", (">", 3600.0 / TARGET_STREAM_EVAL_S)))

    if echo:
        print("  int8 runtime on one core ...", flush=True)
    rt = int8_runtime(project)
    details["int8_runtime"] = rt
    rows.append(Measure("int8 deployed model RTF, one core", rt["rtf_total"], "", ("<", TARGET_INT8_RTF),
                        f"features + int8 TFLite + detector over {rt['audio_s']:.0f} s"))
    rows.append(Measure("  int8 TFLite alone", rt["rtf_model"], "", None, f"{rt['windows_per_s']:.0f} windows/s"))
    rows.append(Measure("  features alone", rt["rtf_features"], "", None, rt["feature_type"]))
    size = json.loads((project / "metrics" / "size.json").read_text())
    rows.append(Measure("MACs per second of audio", float(size["macs_per_second"]), "MAC/s", None,
                        f"{size['macs_per_window']:,} per window"))
    return rows


def run_suite(profile: str = "default", skip_pipeline: bool = False, project: Path = ROOT,
              workdir: Path | None = None, keep: bool = False, noop_repeats: int = 3,
              featurize_rerun: bool = True, echo: bool = True, logit_batch: int | None = None) -> Results:
    import yaml

    res = Results(profile, "skip-pipeline" if skip_pipeline else "pipeline", str(project), machine_info())
    stage_s: dict[str, float] = {}
    if skip_pipeline:
        res.profile = "existing outputs"
        res.measures.append(Measure("dvc repro from scratch", None, "s", ("<", TARGET_PIPELINE_S), "not run (--skip-pipeline)"))
        res.measures.append(Measure("no-op dvc repro", None, "s", ("<", TARGET_NOOP_S), "not run (--skip-pipeline)"))
        res.measures += throughput_measures(project, stage_s, featurize_rerun=featurize_rerun, details=res.details,
                                            echo=echo, logit_batch=logit_batch)
        res.machine["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        return res
    tmp = Path(tempfile.mkdtemp(prefix="wakeword-bench-", dir=workdir))
    try:
        repo = tmp / "repo"
        order = stage_order(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
        if echo:
            print(f"pipeline ({profile} profile) in {repo}; stages: {' '.join(order)}", flush=True)
        make_repo(repo, profile)
        pipe = run_pipeline(repo, order, noop_repeats, echo)
        res.details["pipeline"] = pipe
        res.details["repo"] = str(repo)
        stage_s = {s["stage"]: s["wall_s"] for s in pipe["stages"]}
        res.measures += pipeline_measures(pipe)
        res.measures += throughput_measures(repo, stage_s, featurize_rerun=False, details=res.details, echo=echo,
                                            logit_batch=logit_batch)
        res.machine["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return res
