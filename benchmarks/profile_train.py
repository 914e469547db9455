"""Profile: where the train stage spends its time. Runs :func:`wakeword.train.train_model` exactly as
``stages/train.py`` builds it (same params, features, CMVN; ``epochs`` overridden) with every output (the
checkpoint, the per-epoch training state) under a temporary directory, and reports per epoch:

* the wall time of the epoch (from one ``on_epoch`` call to the next),
* time inside the training-step loop's parts that are library functions (SpecAugment, balanced batch
  drawing, the EMA update), measured by wrapping those functions in place,
* validation (:func:`wakeword.train.validate`) split into scoring the validation clips, scoring the validation
  stream and the operating curve (detector over the threshold grid), the evaluation copy of the model and the
  training-state save;

and with ``--cprofile`` the top functions by own and cumulative time (cProfile, which slows the many small
torch calls of the training steps by some 10-30 %: the wall split above is taken without it unless asked).

Run: python -m benchmarks.profile_train [--epochs 1] [--features data/features] [--cprofile] [--top 25]
Reads the inputs only; writes nothing outside a temporary directory.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import itertools
import json
import os
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: (module, attribute) of the functions timed in place: the names ``train_model`` / ``validate`` /
#: ``score_set`` look up at call time, so replacing the module attribute times every call.
TIMED = (
    ("wakeword.train", "validate"),
    ("wakeword.train", "_eval_copy"),
    ("wakeword.train", "_atomic_torch_save"),
    ("wakeword.train", "fingerprint"),
    ("wakeword.train", "epoch_batches"),
    ("wakeword.train", "spec_augment"),
    ("wakeword.train", "score_set"),
    ("wakeword.train", "labeled_windows"),
    ("wakeword.train", "operating_curve"),
    ("wakeword.evaluation", "clip_logits"),
    ("wakeword.evaluation", "stream_logits"),
)


class Timers:
    """Seconds and calls per name; :meth:`wrap` replaces a module attribute with a timed version."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        return inner

    def replace(self, owner: Any, attr: str, value: Any) -> None:
        """Set ``owner.attr`` to ``value`` until :meth:`restore`."""
        orig = getattr(owner, attr)
        setattr(owner, attr, value)
        self._undo.append(lambda: setattr(owner, attr, orig))

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        self.replace(owner, attr, self.timed(name, getattr(owner, attr)))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def snapshot(self) -> dict[str, float]:
        return dict(self.seconds)


def install(timers: Timers) -> None:
    import importlib

    from wakeword.ema import EMA

    for mod, attr in TIMED:
        timers.wrap(importlib.import_module(mod), attr, attr)
    timers.wrap(EMA, "update", "ema_update")


def load_inputs(features_dir: Path, cmvn_path: Path, params_path: Path) -> tuple[Any, Any]:
    """(TrainData, TrainSetup) as stages/train.py builds them (precomputed augmentation; no teacher)."""
    from wakeword.cmvn import load_cmvn
    from wakeword.featureset import load_split, load_stream, read_index
    from wakeword.params import load_params
    from wakeword.train import TrainData, TrainSetup

    p = load_params(params_path)
    if p.augment.mode != "precomputed" or p.train.distill.teacher:
        raise SystemExit("profile_train covers augment.mode precomputed without a distillation teacher")
    index = read_index(features_dir)
    stream, hours = load_stream(features_dir, "val")
    data = TrainData(load_split(features_dir, "train"), load_split(features_dir, "val"), stream, hours,
                     load_cmvn(cmvn_path), index)
    setup = TrainSetup(p.model, p.train, p.detector, p.calibrate, p.audio, p.seed, p.augment, p.features)
    return data, setup


def weights_digest(checkpoint: Path) -> str:
    """sha256 over the saved state dict's names and tensor bytes (two runs with equal results: equal digest)."""
    import hashlib

    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def profile_train(features_dir: Path, cmvn_path: Path, params_path: Path, epochs: int = 1,
                  use_cprofile: bool = False, top: int = 25, logit_batch: int | None = None) -> dict[str, Any]:
    """Train ``epochs`` epochs and return the timing split (see the module docstring). ``logit_batch``: try
    another batch size for :func:`wakeword.train.torch_logit_fn` (validation scoring) without editing it."""
    import torch

    import wakeword.train as wt
    from wakeword.train import train_model

    data, setup = load_inputs(features_dir, cmvn_path, params_path)
    timers = Timers()
    if logit_batch is not None:
        timers.replace(wt, "torch_logit_fn", functools.partial(wt.torch_logit_fn, batch=logit_batch))
    install(timers)
    marks: list[tuple[float, dict[str, float]]] = []
    prof = cProfile.Profile() if use_cprofile else None
    try:
        with tempfile.TemporaryDirectory(prefix="wakeword-profile-") as tmp:
            t_start = time.perf_counter()
            marks.append((t_start, timers.snapshot()))
            if prof is not None:
                prof.enable()
            result = train_model(data, setup, Path(tmp) / "base.pt", state_dir=Path(tmp) / "state",
                                 on_epoch=lambda e, row: marks.append((time.perf_counter(), timers.snapshot())),
                                 epochs=epochs)
            if prof is not None:
                prof.disable()
            t_end = time.perf_counter()
            digest = weights_digest(Path(tmp) / "base.pt")
    finally:
        timers.restore()
    n_windows = int(data.train.x.shape[0])
    steps = max(1, n_windows // setup.train.batch_size)
    per_epoch = []
    for (t0, s0), (t1, s1) in itertools.pairwise(marks):
        d = {k: s1.get(k, 0.0) - s0.get(k, 0.0) for k in s1}
        # the first interval also holds the set-up (model, CMVN on the training set, fingerprint, LR finder)
        other_val = d.get("validate", 0.0) - d.get("score_set", 0.0) - d.get("labeled_windows", 0.0) \
            - d.get("operating_curve", 0.0)
        after = d.get("validate", 0.0) + d.get("_eval_copy", 0.0) + d.get("_atomic_torch_save", 0.0)
        per_epoch.append({
            "epoch_wall_s": t1 - t0,
            "train_steps_s": t1 - t0 - after - d.get("fingerprint", 0.0),
            "spec_augment_s": d.get("spec_augment", 0.0),
            "epoch_batches_s": d.get("epoch_batches", 0.0),
            "ema_update_s": d.get("ema_update", 0.0),
            "validate_s": d.get("validate", 0.0),
            "val_clip_scoring_s": d.get("clip_logits", 0.0),
            "val_stream_scoring_s": d.get("stream_logits", 0.0),
            "val_operating_curve_s": d.get("operating_curve", 0.0),
            "val_other_s": other_val + d.get("labeled_windows", 0.0),
            "eval_copy_s": d.get("_eval_copy", 0.0),
            "state_save_s": d.get("_atomic_torch_save", 0.0),
            "fingerprint_s": d.get("fingerprint", 0.0),
        })
    out: dict[str, Any] = {
        "arch": setup.model.arch, "epochs": epochs, "train_windows": n_windows, "steps_per_epoch": steps,
        "batch_size": setup.train.batch_size, "torch_threads": torch.get_num_threads(),
        "val_clips": int(data.val.x.shape[0]), "val_stream_hours": float(data.val_hours),
        "train_model_wall_s": t_end - t_start, "library_wall_s": result.wall_s, "per_epoch": per_epoch,
        "cprofile": use_cprofile, "logit_batch": logit_batch, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "history": result.history, "best_epoch": result.best_epoch, "weights_sha256": digest,
    }
    last = per_epoch[-1]
    out["train_samples_per_s_steps_only"] = steps * setup.train.batch_size / max(last["train_steps_s"], 1e-9)
    if prof is not None:
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
            out[f"top_{key}"] = buf.getvalue()
    return out


def format_report(r: dict[str, Any]) -> str:
    lines = [(f"{r['arch']}: {r['train_windows']} training windows, {r['steps_per_epoch']} steps of "
              f"{r['batch_size']} per epoch, torch threads {r['torch_threads']}; validation: {r['val_clips']} "
              f"clips + {r['val_stream_hours']:.2f} h stream; cProfile {'on' if r['cprofile'] else 'off'}"),
             (f"train_model wall {r['train_model_wall_s']:.1f} s for {r['epochs']} epoch(s); OMP_WAIT_POLICY "
              f"{r.get('omp_wait_policy')}, validation logit batch {r.get('logit_batch') or 'as in train.py'}"),
             f"best epoch {r.get('best_epoch', -1) + 1}, weights sha256 {r.get('weights_sha256', '?')[:16]}", ""]
    keys = list(r["per_epoch"][0])
    lines.append(f"{'seconds':24}" + "".join(f"{'epoch ' + str(i + 1):>10}" for i in range(len(r["per_epoch"]))))
    for k in keys:
        lines.append(f"{k:24}" + "".join(f"{e[k]:10.2f}" for e in r["per_epoch"]))
    lines.append("")
    lines.append(f"training-step throughput (last epoch, steps only): {r['train_samples_per_s_steps_only']:.0f} "
                 f"windows/s")
    for key in ("top_tottime", "top_cumulative"):
        if key in r:
            lines += ["", f"--- cProfile, sorted by {key[4:]} ---", r[key]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=Path("data/features"))
    ap.add_argument("--cmvn", type=Path, default=Path("models/cmvn.json"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--logit-batch", type=int, default=None,
                    help="validation scoring batch of torch_logit_fn (default: as wakeword/train.py has it)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    r = profile_train(args.features, args.cmvn, args.params, args.epochs, args.cprofile, args.top,
                      args.logit_batch)
    if args.json is not None:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    print(format_report(r))


if __name__ == "__main__":
    main()
