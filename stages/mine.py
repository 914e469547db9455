"""Stage mine: score the training split's long negative stream with the trained model and keep the windows it
mistakes for the wake phrase (hard negatives for the finetune stage).

Writes OUT_DIR/windows.npz (raw feature windows, label 0, kind hard_negative, their scores and stream start
frames) and a summary JSON. With ``mine.enabled: false`` nothing is scored: the windows file is empty and the
summary says so, and finetune keeps the trained model unchanged.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import click
import numpy as np

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import load_cmvn
from wakeword.detector import DetectorConfig
from wakeword.featureset import FeatureSetError, load_stream, read_index
from wakeword.mining import fah_at_report_thresholds, mine_stream, report_configs
from wakeword.train import torch_logit_fn

log = logging.getLogger("stages.mine")


def _write(out_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        np.savez(tmp / "windows.npz", **arrays)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("summary", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, out_dir: Path, summary: Path,
         params_path: Path) -> None:
    p = load(params_path)
    index = read_index(features_dir)
    window, step, n_feat = int(index["window_frames"]), int(index["step_frames"]), int(index["n_features"])
    empty = {"x": np.zeros((0, window, n_feat), np.float32), "y": np.zeros(0, np.int8), "kind": np.zeros(0, np.int8),
             "phrase_start_frame": np.zeros(0, np.int32), "phrase_end_frame": np.zeros(0, np.int32),
             "scores": np.zeros(0, np.float32), "starts": np.zeros(0, np.int64)}
    if not p.mine.enabled:
        _write(out_dir, empty)
        write_json(summary, {"enabled": False, "mined": 0})
        log.info("mine.enabled is false: nothing mined")
        return
    try:
        stream, hours = load_stream(features_dir, "train")
    except FeatureSetError:
        raise click.ClickException(
            f"{features_dir / 'index.json'}: the training split has no long negative stream to mine. Set "
            "synth.stream_train_h > 0 (demo data), add recordings under data/raw/stream/train/ (own data), or set "
            "mine.enabled: false") from None
    model, _ = load_checkpoint(checkpoint)
    cfg = DetectorConfig.from_params(p.detector, p.mine.threshold, p.audio.step_ms)
    gap = int(np.ceil(p.mine.min_gap_ms / p.audio.step_ms))
    mined = mine_stream(torch_logit_fn(model, load_cmvn(cmvn_path)), stream, window, step, p.mine.threshold, gap,
                        p.mine.max_windows, cfg, report_configs(p.detector, p.audio.step_ms))
    w = mined.windows
    _write(out_dir, {"x": w.x, "y": w.y, "kind": w.kind, "phrase_start_frame": w.phrase_start_frame,
                     "phrase_end_frame": w.phrase_end_frame, "scores": mined.scores, "starts": mined.starts})
    write_json(summary, round_floats({
        "enabled": True, "stream_hours": hours, "steps_scored": mined.steps, "threshold": p.mine.threshold,
        "steps_over_threshold": mined.candidates, "mined": int(w.x.shape[0]),
        "detections_before": mined.detections, "fah_before": mined.detections / hours,
        "fah_before_at": fah_at_report_thresholds(mined, hours),
        "mean_score": float(mined.scores.mean()) if mined.scores.size else 0.0,
    }))
    log.info("mined %d windows from %.2f h (%d steps over %.2f; FA/h before fine-tuning at threshold %s)",
             w.x.shape[0], hours, mined.candidates, p.mine.threshold, fah_at_report_thresholds(mined, hours))


if __name__ == "__main__":
    main()
