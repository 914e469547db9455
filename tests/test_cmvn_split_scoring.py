from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wakeword.cmvn import CMVNError, compute_cmvn, load_cmvn, save_cmvn
from wakeword.manifest import Item, ManifestError, read_manifest, resolve, write_manifest
from wakeword.params import SplitParams
from wakeword.scoring import clip_logits, probabilities, sliding_windows, stream_logits, window_labels
from wakeword.split import SplitError, assign_group, check_disjoint_groups, merge_sources, split_items


def test_cmvn_matches_numpy_and_round_trips(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(3, 2, size=(50, 20, 8)).astype(np.float32)
    c = compute_cmvn(x, "log_mel")
    flat = x.reshape(-1, 8)
    np.testing.assert_allclose(c.mean, flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(c.std, flat.std(0), rtol=1e-5)
    assert c.num_frames_used == 1000
    normed = c.apply(x).reshape(-1, 8)
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(normed.std(0), 1, atol=1e-4)
    save_cmvn(tmp_path / "c.json", c)
    back = load_cmvn(tmp_path / "c.json")
    np.testing.assert_array_equal(back.mean, c.mean)
    (tmp_path / "bad.json").write_text(json.dumps({"mean": [0, 1], "std": [1], "feature_type": "x", "num_frames_used": 1}))
    with pytest.raises(CMVNError, match="bad.json"):
        load_cmvn(tmp_path / "bad.json")


def _items(n_groups: int) -> list[Item]:
    items = []
    for g in range(n_groups):
        for kind in ("positive", "negative"):
            items.append(Item(f"{kind}{g}", f"clips/{kind}/{g}.wav", kind, f"espeak:v{g}", 1.0))
    items.append(Item("piper1", "clips/positive/p.wav", "positive", "piper:joe", 1.0))
    items += [Item("sv", "streams/val.wav", "stream", "stream-val", 60.0, role="val"),
              Item("st", "streams/test.wav", "stream", "stream-test", 60.0, role="test")]
    return items


def test_split_groups_never_cross_and_are_stable() -> None:
    p = SplitParams()
    items = _items(200)
    splits = split_items(items, p, seed=7)
    check_disjoint_groups(splits)
    where = {i.id: s for s, its in splits.items() for i in its}
    assert where["piper1"] == "train" and where["sv"] == "val" and where["st"] == "test"
    for g in range(200):
        assert where[f"positive{g}"] == where[f"negative{g}"]
    share = sum(1 for g in range(200) if where[f"positive{g}"] == "train") / 200
    assert 0.6 < share < 0.8
    # adding groups moves no existing item
    more = split_items(_items(300), p, seed=7)
    where2 = {i.id: s for s, its in more.items() for i in its}
    assert all(where2[k] == v for k, v in where.items())
    assert assign_group(7, "espeak:v1", p) == assign_group(7, "espeak:v1", p)


def test_heldout_rir_and_sources() -> None:
    """Held-out engine items form their own split, RIRs always train, sources are tagged and ids unique."""
    held = [Item(f"h{i}", f"clips/heldout/positive/{i}.wav", "positive", f"pico:v{i % 2}", 1.0, role="heldout")
            for i in range(6)]
    held += [Item("hn", "clips/heldout/negative/0.wav", "negative", "pico:v0", 1.0, role="heldout"),
             Item("hs", "streams/heldout.wav", "stream", "stream-heldout", 60.0, role="heldout")]
    own = [Item(f"own-rir-{i}", f"clips/rir/{i}.wav", "rir", f"own:room{i}", 0.5) for i in range(20)]
    items = merge_sources({"synth": _items(50) + held, "own": own})
    assert {i.extra["root"] for i in items if i.id.startswith("own-")} == {"own"}
    assert {i.extra["root"] for i in items if i.id.startswith("h")} == {"synth"}
    splits = split_items(items, SplitParams(), seed=3)
    check_disjoint_groups(splits)
    assert sorted(i.id for i in splits["heldout"]) == sorted(i.id for i in held)
    assert all(i.kind == "rir" or not i.id.startswith("own-") for s in ("val", "test") for i in splits[s])
    assert sum(i.kind == "rir" for i in splits["train"]) == 20
    assert "heldout" not in split_items(_items(50), SplitParams(), seed=3)
    with pytest.raises(SplitError, match="appears in both"):
        merge_sources({"synth": _items(3), "own": _items(3)})
    with pytest.raises(SplitError, match="held-out split has no positive"):
        split_items(_items(50) + held[-2:], SplitParams(), seed=3)
    with pytest.raises(SplitError, match="'heldout' has no long negative stream"):
        split_items(_items(50) + held[:-1], SplitParams(), seed=3)


def test_split_refuses_empty_split() -> None:
    with pytest.raises(SplitError, match="needs both"):
        split_items(_items(1), SplitParams(), seed=0)


def test_manifest_round_trip_and_refusals(tmp_path: Path) -> None:
    items = _items(2)
    write_manifest(tmp_path / "m.jsonl", items)
    assert read_manifest(tmp_path / "m.jsonl") == items
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "path": "../x.wav", "kind": "positive", "group": "g", "duration_s": 1}\n')
    with pytest.raises(ManifestError, match=r"bad.jsonl:1: .*inside the data root"):
        read_manifest(tmp_path / "bad.jsonl")
    (tmp_path / "kind.jsonl").write_text('{"id": "a", "path": "x.wav", "kind": "speech", "group": "g", "duration_s": 1}\n')
    with pytest.raises(ManifestError, match="kind 'speech'"):
        read_manifest(tmp_path / "kind.jsonl")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.wav").symlink_to(tmp_path / "m.jsonl")
    with pytest.raises(ManifestError, match="outside the data root"):
        resolve(root, Item("l", "link.wav", "positive", "g", 1.0))


def test_sliding_windows_and_logits_match_a_loop() -> None:
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((95, 4)).astype(np.float32)
    w = sliding_windows(feats, 30, 7)
    assert w.shape == (10, 30, 4)
    for i in range(10):
        np.testing.assert_array_equal(w[i], feats[7 * i : 7 * i + 30])
    fn = lambda x: np.stack([x.sum((1, 2)), x[:, -1, 0]], axis=1)
    clips = rng.standard_normal((3, 95, 4)).astype(np.float32)
    cl = clip_logits(fn, clips, 30, 7, batch=4)
    for c in range(3):
        np.testing.assert_allclose(cl[c], stream_logits(fn, clips[c], 30, 7, batch=3), rtol=1e-6)


def test_probabilities_and_window_labels() -> None:
    assert probabilities(np.array([0.0, 0.0])) == pytest.approx(0.5)
    assert probabilities(np.array([0.0, 2.0]), 2.0) == pytest.approx(1 / (1 + np.exp(-1)))
    lab = window_labels(np.array([20, -1]), np.array([40, -1]), 100, 30, 10)
    # windows start at 0,10,...,70 and cover [s, s+29]
    assert lab[0].tolist() == [-1, -1, 1, -1, -1, 0, 0, 0]
    assert lab[1].tolist() == [0] * 8


def test_split_stage_data_source(tmp_path: Path) -> None:
    """data.source picks demo, own or both; the demo set's held-out engine clips are used with every source."""
    import yaml
    from click.testing import CliRunner

    from stages.split import main as split_main

    held = [Item(f"h{i}", f"clips/heldout/positive/{i}.wav", "positive", "pico:en-US", 1.0, role="heldout")
            for i in range(3)] + [Item("hs", "streams/heldout.wav", "stream", "stream-heldout", 60.0, role="heldout")]
    demo = _items(40) + held
    own = [Item(f"own-{i.id}", i.path, i.kind, f"own:{i.group}", i.duration_s, role=i.role) for i in _items(40)]
    write_manifest(tmp_path / "synth" / "manifest.jsonl", demo)
    write_manifest(tmp_path / "own" / "manifest.jsonl", own)
    ids = {}
    for source in ("demo", "own", "both"):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"source": source}}))
        out = tmp_path / f"split-{source}"
        args = [str(tmp_path / "synth"), str(tmp_path / "own"), str(out), str(tmp_path / f"{source}.json"),
                "--params", str(tmp_path / "params.yaml")]
        result = CliRunner().invoke(split_main, args)
        assert result.exit_code == 0, result.output
        ids[source] = {s: {i.id for i in read_manifest(out / f"{s}.jsonl")} for s in ("train", "val", "test")}
        assert {i.id for i in read_manifest(out / "heldout.jsonl")} == {i.id for i in held}
    everything = {s: set().union(*ids[s].values()) for s in ids}
    assert all(not i.startswith("own-") for i in everything["demo"])
    assert all(i.startswith("own-") for i in everything["own"])
    assert everything["both"] == everything["demo"] | everything["own"]
    # an own source with nothing ingested is a clear error
    write_manifest(tmp_path / "own" / "manifest.jsonl", [])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "own"}}))
    result = CliRunner().invoke(split_main, [str(tmp_path / "synth"), str(tmp_path / "own"), str(tmp_path / "x"),
                                             str(tmp_path / "x.json"), "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code != 0 and "holds no usable own audio" in result.output
