"""Accuracy, not speed: held-out recall per voice and spelling of the phrase, at the whole stream's thresholds.

The held-out positives are read from several spellings ("hey jarvis", "Hey, Jarvis!", "Ok hey jarvis please"):
a comma makes every engine pause after "hey", context words put speech around the phrase. Its confusables are
spelled the same way since session 22 (``synth.heldout_uniform_kinds``; plain phrases such as "hey starvis"
before). With ``synth.uniform_kinds: false`` (the default until session 22) the training data's confusables are
plain, and a model can take a pause between the words for "positive". This script shows how much of the
held-out recall comes from which spelling: each positive clip is grouped by voice and form (``plain``,
``comma``, ``context``), and recall at the thresholds reaching 0.1 / 0.5 / 1 / 2 FA/h on the whole held-out
stream is reported per group (the same event-based evaluation as ``metrics/float.json``, the float model).

Run after `dvc repro`:  python -m benchmarks.heldout_spelling [REPO_DIR ...] [--json OUT]
(default: the current directory). Each REPO_DIR needs params.yaml, data/split, data/features,
metrics/calibration.json and models/model.pt (a finished run, or an experiment's copy of one).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def spelling_form(text: str, phrase: str = "hey jarvis") -> str:
    """``context`` when words other than the phrase's are in ``text``, else ``comma`` when a comma parts the
    words, else ``plain``."""
    from wakeword.text import tokens

    if len(tokens(text)) > len(tokens(phrase)):
        return "context"
    return "comma" if "," in text else "plain"


def clip_groups(rows: list[dict[str, Any]], phrase: str) -> list[str]:
    """Per manifest row: ``<voice>:<form>`` for positives, ``<voice>:other`` for the other kinds."""
    def form(r: dict[str, Any]) -> str:
        return spelling_form(str(r.get("text", "")), phrase) if r["kind"] == "positive" else "other"

    return [f"{r.get('voice', '?')}:{form(r)}" for r in rows]


def measure(repo: Path) -> dict[str, Any]:
    """Held-out figures of ``repo``'s float model, overall and per voice x spelling form."""
    from wakeword.calibration import threshold_grid
    from wakeword.checkpoint import load_checkpoint
    from wakeword.cmvn import load_cmvn
    from wakeword.evaluation import evaluate_split, load_calibration
    from wakeword.params import load_params
    from wakeword.train import torch_logit_fn

    p = load_params(repo / "params.yaml")
    manifest = repo / "data/split/heldout.jsonl"
    if not manifest.is_file():
        raise SystemExit(f"{manifest}: no held-out split (run `dvc repro` with synth.heldout_engines set)")
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    model, _ = load_checkpoint(repo / "models/model.pt")
    fn = torch_logit_fn(model, load_cmvn(repo / "models/cmvn.json"))
    calibration = load_calibration(repo / "metrics/calibration.json")
    res, _, _ = evaluate_split(fn, repo / "data/features", "heldout", calibration, p.detector, p.audio.step_ms,
                               threshold_grid(p.calibrate.threshold_step), p.calibrate.max_stream_on_fraction,
                               p.calibrate.tta_shifts, clip_groups(rows, p.synth.phrase))
    keys = ("recall_at_0p1_fah", "recall_at_0p5_fah", "recall_at_1p0_fah", "recall_at_2p0_fah")
    groups = {g: {"positives": v["positive_clips"], **{k: v[k] for k in keys}}
              for g, v in sorted(res["by_voice"].items()) if not g.endswith(":other")}
    return {"repo": str(repo), "all": {k: res[k] for k in keys}, "groups": groups}


def fmt(d: dict[str, Any]) -> str:
    """Recall at 0.5 / 1 / 2 FA/h as "a / b / c"."""
    return " / ".join(f"{d[k]:.2f}" for k in ("recall_at_0p5_fah", "recall_at_1p0_fah", "recall_at_2p0_fah"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repos", nargs="*", type=Path, default=[Path(".")])
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = ap.parse_args()
    out = []
    for repo in args.repos:
        r = measure(repo)
        out.append(r)
        print(f"{repo}: held-out recall at 0.5 / 1 / 2 FA/h, all positives: {fmt(r['all'])}")
        for g, v in r["groups"].items():
            print(f"  {g:<16} {v['positives']:>4} positives  {fmt(v)}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
