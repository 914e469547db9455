"""``kill -9`` during the train stage, then the same command again: it resumes from the last finished epoch
and writes the same model and metrics as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from tests._support import ROOT
from wakeword.cmvn import CMVN, save_cmvn
from wakeword.featureset import KIND_CODES
from wakeword.manifest import Item, write_manifest

WINDOW, EVAL, F = 60, 120, 16


def _features(root: Path) -> Path:
    rng = np.random.default_rng(0)
    feats = root / "features"
    feats.mkdir(parents=True)

    def shard(name: str, n: int, frames: int, spans: bool) -> str:
        y = (np.arange(n) % 2).astype(np.int8)
        kind = np.where(y == 1, KIND_CODES["positive"], KIND_CODES["negative"]).astype(np.int8)
        start = np.where(y == 1, 10, -1).astype(np.int32) if spans else np.full(n, -1, np.int32)
        end = np.where(y == 1, 45, -1).astype(np.int32) if spans else np.full(n, -1, np.int32)
        x = rng.standard_normal((n, frames, F)).astype(np.float32) + y[:, None, None]
        clip = np.where(y == 1, 0, 1 + np.arange(n) % 3).astype(np.int32)  # rows of the manifest below
        np.savez(feats / name, x=x, y=y, kind=kind, phrase_start_frame=start, phrase_end_frame=end, clip=clip)
        return name

    # the train split's manifest: the clip texts of the word loss (on in the default params)
    write_manifest(root / "split" / "train.jsonl", [
        Item("p", "p.wav", "positive", "a", 0.9, text="hey jarvis"),
        *(Item(f"n{i}", f"n{i}.wav", "negative", "b", 0.9, text=t)
          for i, t in enumerate(("hey there", "jarvis", "good morning")))])

    np.save(feats / "val_stream.npy", rng.standard_normal((1500, F)).astype(np.float32))
    index = {"window_frames": WINDOW, "step_frames": 10, "n_features": F,
             "splits": {"train": {"shards": [shard("train.npz", 96, WINDOW, False)]},
                        "val": {"shards": [shard("val.npz", 12, EVAL, True)]}},
             "streams": {"val": {"path": "val_stream.npy", "hours": 0.01}}}
    (feats / "index.json").write_text(json.dumps(index))
    save_cmvn(root / "cmvn.json", CMVN(np.zeros(F, np.float32), np.ones(F, np.float32), "log_mel", 1))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["arch"] = "ds_tcn"
    params["model"]["ds_tcn"] = {"channels": 8, "blocks": 1, "kernel_size": 3}
    params["train"].update({"epochs": 6, "batch_size": 16, "warmup_epochs": 0})
    params["augment"]["mode"] = "precomputed"
    params["features"].update({"n_mels": F, "n_mfcc": F})  # the random EQ maps dB per mel bin onto F log-mel bins
    assert params["augment"]["warp_prob"] > 0  # the frequency warp's generator is part of the saved state too
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return feats


def _cmd(root: Path, out: str) -> list[str]:
    return [sys.executable, "-m", "stages.train", str(root / "features"), str(root / "cmvn.json"),
            str(root / out / "model.pt"), str(root / out / "live"), str(root / out / "train.json"),
            "--state-dir", str(root / out / "state"), "--split-dir", str(root / "split"),
            "--params", str(root / "params.yaml")]


def _env() -> dict[str, str]:
    return dict(os.environ, WAKEWORD_LOG="WARNING", PYTHONPATH=str(ROOT), DVCLIVE_OPEN="false")


def test_kill_9_then_rerun_resumes_and_matches(tmp_path: Path) -> None:
    _features(tmp_path)
    subprocess.run(_cmd(tmp_path, "full"), cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(_cmd(tmp_path, "killed"), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "state" / "last.pt"
    deadline = time.time() + 300
    epoch = -1
    while time.time() < deadline and proc.poll() is None:
        if state.exists():
            try:
                epoch = int(torch.load(state, weights_only=True)["epoch"])
            except Exception:  # noqa: BLE001 - being replaced right now
                epoch = -1
            if epoch >= 1:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 1 <= epoch < 5 and not (tmp_path / "killed" / "model.pt").exists()
    # The reported wall time covers every invocation: the resumed run adds its own time to the state's. A
    # saved time far above what this test takes (1000 s) tells the sum from the resumed run's time alone.
    saved = torch.load(state, weights_only=True)
    assert 0.0 < saved["wall_s"] < 300.0
    saved["wall_s"] = 1000.0
    torch.save(saved, state)

    t_resume = time.time()
    res = subprocess.run(_cmd(tmp_path, "killed"), cwd=ROOT, env=dict(_env(), WAKEWORD_LOG="INFO"),
                         capture_output=True, text=True, timeout=600, check=False)
    t_resume = time.time() - t_resume
    assert res.returncode == 0, res.stderr[-3000:]
    resumed_at = re.search(r"resuming after epoch (\d+) of 6", res.stderr)
    assert resumed_at and epoch + 1 <= int(resumed_at.group(1)) < 6, res.stderr[-2000:]
    full = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert all(torch.equal(full["state_dict"][k], resumed["state_dict"][k]) for k in full["state_dict"])
    a = json.loads((tmp_path / "full" / "train.json").read_text())
    b = json.loads((tmp_path / "killed" / "train.json").read_text())
    wall_full, wall_resumed = a.pop("train_wall_s"), b.pop("train_wall_s")
    assert 0.0 < wall_full < 600.0
    assert 1000.0 < wall_resumed < 1000.0 + t_resume
    assert a == b
    # the DVCLive curves hold every epoch once, the replayed ones included
    tsv = (tmp_path / "killed" / "live" / "plots" / "metrics" / "val_loss.tsv").read_text().strip().splitlines()
    ref = (tmp_path / "full" / "live" / "plots" / "metrics" / "val_loss.tsv").read_text().strip().splitlines()
    assert [r.split("\t")[1:] for r in tsv] == [r.split("\t")[1:] for r in ref]
