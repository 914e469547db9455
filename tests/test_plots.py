"""wakeword.plots: plot rows against hand-computed values, offline PNG/SVG rendering, the offline DVC HTML
template (in a throw-away DVC repo, and in a headless browser when one is installed), and the report."""

from __future__ import annotations

import copy
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from wakeword import plots
from wakeword.metrics import expected_calibration_error

vl_convert = pytest.importorskip("vl_convert")


# ------------------------------------------------------------------------------------------- helpers


def png_info(path: Path) -> tuple[int, int, bytes]:
    """(width, height, decompressed pixel stream) of a PNG, checking its structure."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height, zlib.decompress(idat)


def ranked(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.4).astype(np.int64)
    return y, rng.normal(size=n) + 1.5 * y


# ---------------------------------------------------------------------------------------------- rows


def test_roc_rows_four_clips_by_hand():
    # negatives 0.1, 0.4; positives 0.35, 0.8. Thresholds high to low: (inf) 0.8 0.4 0.35 0.1
    rows = plots.roc_rows([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert [(r["fpr"], r["tpr"]) for r in rows] == [(0, 0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1)]
    assert [r["threshold"] for r in rows] == [1.8, 0.8, 0.4, 0.35, 0.1]  # first: max score + 1, not inf
    json.dumps(rows, allow_nan=False)


def test_roc_rows_decimated_keeps_ends_and_order():
    y, s = ranked(20000, 0)
    rows = plots.roc_rows(y, s)
    assert 400 < len(rows) <= 500
    assert (rows[0]["fpr"], rows[0]["tpr"]) == (0, 0) and (rows[-1]["fpr"], rows[-1]["tpr"]) == (1, 1)
    fpr, tpr = np.array([r["fpr"] for r in rows]), np.array([r["tpr"] for r in rows])
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert len(plots.roc_rows(y, s, max_points=50)) <= 50


def test_det_rows_are_roc_with_fnr_and_probits():
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    det = plots.det_rows(y, s)
    roc = plots.roc_rows(y, s)
    assert [d["fnr"] for d in det] == [round(1 - r["tpr"], 6) for r in roc]
    assert [d["fpr"] for d in det] == [r["fpr"] for r in roc]
    mid = det[2]  # fpr 0.5, fnr 0.5 -> probit 0
    assert mid["fpr_probit"] == 0.0 and mid["fnr_probit"] == 0.0
    assert det[0]["fpr_probit"] == pytest.approx(norm.ppf(plots.DET_EPS), abs=1e-6)  # fpr 0 clipped
    assert det[0]["fnr_probit"] == pytest.approx(norm.ppf(1 - plots.DET_EPS), abs=1e-6)  # fnr 1 clipped


@pytest.mark.parametrize("labels, scores, msg", [
    ([1, 1], [0.1, 0.2], "both positive and negative"),
    ([0, 1], [0.1, float("nan")], "NaN"),
    ([0, 1, 1], [0.1, 0.2], "has 2 values"),
    ([0, 2], [0.1, 0.2], "0 or 1"),
])
def test_roc_rows_reject_bad_input(labels, scores, msg):
    with pytest.raises(ValueError, match=msg):
        plots.roc_rows(labels, scores)


def test_score_histogram_rows_by_hand():
    scores = [0.05, 0.15, 0.15, 0.95, 1.0, 0.5]
    kinds = ["negative", "negative", "positive", "positive", "background", "hard_negative"]
    rows = plots.score_histogram_rows(scores, kinds, bins=2)
    got = {(r["kind"], r["bin_start"], r["bin_end"]): (r["count"], r["fraction"]) for r in rows}
    assert got == {
        ("positive", 0.0, 0.5): (1, 0.5), ("positive", 0.5, 1.0): (1, 0.5),
        ("negative", 0.0, 0.5): (2, 1.0), ("negative", 0.5, 1.0): (0, 0.0),
        ("hard_negative", 0.0, 0.5): (0, 0.0), ("hard_negative", 0.5, 1.0): (1, 1.0),  # 0.5 opens bin 2
        ("background", 0.0, 0.5): (0, 0.0), ("background", 0.5, 1.0): (1, 1.0),  # 1.0: last bin is closed
    }
    assert [r["kind"] for r in rows[::2]] == ["positive", "negative", "hard_negative", "background"]


def test_score_histogram_rows_codes_range_and_totals():
    rng = np.random.default_rng(1)
    s = rng.uniform(size=1000)
    codes = rng.integers(0, 4, size=1000)  # KIND_CODES: 0 positive, 1 negative, 2 hard_negative, 3 background
    rows = plots.score_histogram_rows(s, codes, bins=50)
    assert len(rows) == 4 * 50
    for code, name in enumerate(["positive", "negative", "hard_negative", "background"]):
        mine = [r for r in rows if r["kind"] == name]
        assert sum(r["count"] for r in mine) == int((codes == code).sum())
        assert [r["count"] for r in mine] == np.histogram(s[codes == code], bins=50, range=(0, 1))[0].tolist()
    # logits: range from the data; values outside an explicit range land in the end bins
    assert plots.score_histogram_rows([-3.0, 2.0], ["a", "a"], bins=5)[0]["bin_start"] == -3.0
    clipped = plots.score_histogram_rows([-1.0, 0.2, 7.0], ["a", "a", "a"], bins=2, value_range=(0, 1))
    assert [r["count"] for r in clipped] == [2, 1]
    with pytest.raises(ValueError, match="one entry per score"):
        plots.score_histogram_rows([0.1, 0.2], ["positive"])


def _reliability_brute(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[int, tuple]:
    out = {}
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        conf, acc = [], []
        for p, y in zip(probs, labels):
            pred = 1 if p >= 0.5 else 0
            c = p if pred == 1 else 1 - p
            if (lo < c <= hi) or (b == 0 and c == 0):
                conf.append(c)
                acc.append(1.0 if pred == y else 0.0)
        if conf:
            out[b] = (float(np.mean(conf)), float(np.mean(acc)), len(conf))
    return out


def test_reliability_rows_match_brute_force_and_ece():
    rng = np.random.default_rng(2)
    p = rng.uniform(size=600)
    y = (rng.uniform(size=600) < p ** 2).astype(np.int64)
    rows = plots.reliability_rows(p, y, n_bins=15)
    brute = _reliability_brute(p, y, 15)
    assert {r["bin"] for r in rows} == set(brute)
    for r in rows:
        conf, acc, n = brute[r["bin"]]
        assert r["count"] == n
        assert r["confidence"] == pytest.approx(conf, abs=1e-6)
        assert r["accuracy"] == pytest.approx(acc, abs=1e-6)
        assert r["bin_lower"] < r["confidence"] <= r["bin_upper"]
    ece = sum(r["count"] / 600 * abs(r["accuracy"] - r["confidence"]) for r in rows)
    assert ece == pytest.approx(expected_calibration_error(p, y, 15), abs=1e-5)
    # 2-D class probabilities bin the same way as 1-D positive-class probabilities
    assert plots.reliability_rows(np.stack([1 - p, p], axis=1), y) == rows
    assert {r["series"] for r in plots.reliability_rows(p, y, series="after")} == {"after"}
    with pytest.raises(ValueError, match="probabilities"):
        plots.reliability_rows([0.2, 1.5], [0, 1])


def test_reliability_rows_bin_edges_by_hand():
    # 4 bins (0, .25] (.25, .5] (.5, .75] (.75, 1]; confidence of the predicted class sits exactly on edges
    p = np.array([0.5, 0.75, 0.25, 1.0, 0.0, 0.6])  # conf 0.5 0.75 0.75 1.0 1.0 0.6 (pred 1 1 0 1 0 1)
    y = np.array([1, 0, 0, 1, 1, 1])
    rows = plots.reliability_rows(p, y, n_bins=4)
    got = {r["bin"]: (r["confidence"], r["accuracy"], r["count"]) for r in rows}
    assert got == {1: (0.5, 1.0, 1), 2: (0.7, 0.666667, 3), 3: (1.0, 0.5, 2)}  # 0.5 is in (.25, .5]
    assert set(got) == set(_reliability_brute(p, y, 4))


# --------------------------------------------------------------------------------------- rendering


def test_render_png_valid_and_data_dependent(tmp_path):
    a = plots.roc_spec({"float": plots.roc_rows(*ranked(400, 3))})
    b = plots.roc_spec({"float": plots.roc_rows(*ranked(400, 4))})
    pa = plots.render(a, tmp_path / "a.png")
    pb = plots.render(b, tmp_path / "b.png")
    wa, ha, pix_a = png_info(pa)
    wb, hb, pix_b = png_info(pb)
    assert wa > 300 and ha > 300 and pa.stat().st_size > 10_000
    assert (wa, ha) == (wb, hb) and pix_a != pix_b
    svg = plots.render(a, tmp_path / "a.svg").read_text()
    assert svg.startswith("<svg") and "<path" in svg
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves nothing behind


def test_render_refuses_urls(tmp_path):
    spec = {"data": {"url": "https://example.com/data.json"}, "mark": "point",
            "encoding": {"x": {"field": "a", "type": "quantitative"}}}
    with pytest.raises(ValueError, match="not allowed"):  # never a network fetch while rendering
        plots.render(spec, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _metrics_dir(root: Path) -> Path:
    m = root / "metrics"
    (m / "plots").mkdir(parents=True)
    (m / "train" / "plots" / "metrics").mkdir(parents=True)
    curve = [{"threshold": t, "fah": f, "recall": r, "miss_rate": 1 - r}
             for t, f, r in [(0.3, 12.0, 0.99), (0.5, 3.0, 0.95), (0.7, 1.0, 0.9), (0.9, 0.0, 0.6)]]
    plots.write_rows(m / "plots" / "float_curve.json", curve)
    plots.write_rows(m / "plots" / "float_heldout_curve.json", curve[1:])
    y, s = ranked(300, 5)
    prob = 1 / (1 + np.exp(-s))
    plots.write_rows(m / "plots" / "float_roc.json", plots.roc_rows(y, prob))
    plots.write_rows(m / "plots" / "float_det.json", plots.det_rows(y, prob))
    kinds = np.where(y == 1, "positive", "negative")
    plots.write_rows(m / "plots" / "float_hist.json", plots.score_histogram_rows(prob, kinds))
    plots.write_rows(m / "plots" / "calibration_reliability.json",
                     plots.reliability_rows(prob, y, series="before") + plots.reliability_rows(prob ** 2, y,
                                                                                            series="after"))
    for name, values in {"train_loss": [0.7, 0.4, 0.3], "val_loss": [0.6, 0.5, 0.45]}.items():
        rows = "".join(f"{i}\t{v}\n" for i, v in enumerate(values))
        (m / "train" / "plots" / "metrics" / f"{name}.tsv").write_text(f"step\t{name}\n{rows}")
    (m / "calibration.json").write_text(json.dumps({"target_fah": 1.0, "threshold": 0.7}))
    return m


def test_render_all_every_plot_and_report(tmp_path):
    m = _metrics_dir(tmp_path)
    out = plots.render_all(m, m / "images")
    assert [p.name for p in out] == ["fah_recall.png", "roc.png", "det.png", "reliability.png",
                                     "float_hist.png", "training.png"]
    pixels = set()
    for p in out:
        _, _, pix = png_info(p)
        pixels.add(pix)
    assert len(pixels) == len(out)
    images = plots.report_images(out)
    assert list(images)[:3] == ["Recall vs false alarms per hour", "DET", "ROC"]
    plots.write_report(m / "report.md", plots.load_metrics(m), images)
    text = (m / "report.md").read_text()
    assert "![DET](images/det.png)" in text and "![Scores by kind (float)](images/float_hist.png)" in text
    # an empty metrics dir renders nothing and is not an error
    assert plots.render_all(tmp_path / "nothing", tmp_path / "img") == []


def test_render_all_skips_empty_plot_files(tmp_path):
    """A run without a held-out set writes its held-out plot files empty (in a subdirectory, as the stages do):
    they render nothing, the others render as before."""
    m = _metrics_dir(tmp_path)
    (m / "plots" / "int8").mkdir()
    for kind in ("curve", "roc", "det", "hist"):
        plots.write_rows(m / "plots" / "int8" / f"int8_heldout_{kind}.json", [])
    plots.write_rows(m / "plots" / "int8" / "int8_curve.json", json.loads((m / "plots" / "float_curve.json").read_text()))
    out = plots.render_all(m, m / "images")
    assert [p.name for p in out] == ["fah_recall.png", "roc.png", "det.png", "reliability.png",
                                     "float_hist.png", "training.png"]


def test_render_all_names_bad_rows_file(tmp_path):
    m = _metrics_dir(tmp_path)
    (m / "plots" / "float_roc.json").write_text('{"fpr": 1}')
    with pytest.raises(ValueError, match="float_roc.json"):
        plots.render_all(m, tmp_path / "img")


def test_specs_carry_what_the_charts_need():
    fah = plots.fah_recall_spec({"float": [{"threshold": 0.5, "fah": 0.0, "recall": 0.5}]}, target_fah=1.0)
    line = fah["layer"][0]["encoding"]
    assert line["x"]["scale"]["type"] == "symlog" and line["x"]["field"] == "fah"
    assert fah["layer"][1]["data"]["values"][0]["fah"] == 1.0
    det = plots.det_spec({"a": plots.det_rows([0, 1, 0, 1], [0.1, 0.9, 0.6, 0.4])})
    enc = det["layer"][1]["encoding"]
    assert enc["x"]["field"] == "fpr_probit" and "cumulativeNormal" in enc["x"]["axis"]["labelExpr"]
    rel = plots.reliability_spec(plots.reliability_rows([0.9, 0.8, 0.3], [1, 0, 0]))
    diagonal = rel["layer"][0]["data"]["values"]
    assert [d["confidence"] for d in diagonal] == [d["accuracy"] for d in diagonal]


# ------------------------------------------------------------------------------------ offline HTML


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return plots.write_offline_template(tmp_path_factory.mktemp("tpl") / "offline.html")


def _external_scripts(html: str) -> list[str]:
    return re.findall(r"<script[^>]*\bsrc\s*=[^>]*>", html, flags=re.IGNORECASE)


def test_offline_template_inlines_vega(template):
    html = template.read_text(encoding="utf8")
    assert "{plot_divs}" in html and "{scripts}" not in html
    assert _external_scripts(html) == []
    assert len(html) > 300_000  # vega + vega-lite + vega-embed are in the page
    assert "window.vegaEmbed=" in html.replace(" ", "")
    assert html.count("</script>") == 1  # nothing inside the bundle closes the tag early


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path_factory.mktemp("dvcrepo")
    _run(["git", "init", "-q"], repo)
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    (repo / "plots").mkdir()
    curve = [{"threshold": 0.9, "fah": 0.0, "recall": 0.6}, {"threshold": 0.5, "fah": 2.0, "recall": 0.9}]
    plots.write_rows(repo / "plots" / "float_curve.json", curve)
    (repo / "metrics.json").write_text('{"fah": 1.0}')
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics.json\nplots:\n  - plots/float_curve.json:\n"
                                   "      x: fah\n      y: recall\n")
    return repo


def test_dvc_plots_show_with_offline_template(dvc_repo, template):
    _run([sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(template), "-o", "out"],
         dvc_repo)
    html = (dvc_repo / "out" / "index.html").read_text(encoding="utf8")
    assert _external_scripts(html) == []
    assert "cdn.jsdelivr" not in html
    assert "vegaEmbed('#" in html and '"recall"' in html  # DVC's plot div with its inline spec
    browser = next((b for b in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser installed: the page was checked for inline scripts only")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
           (dvc_repo / "out" / "index.html").as_uri()]
    dom = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120).stdout
    assert 'class="marks"' in dom  # vega-embed ran and drew the chart, offline


def test_render_dvc_plots_json(dvc_repo, tmp_path):
    proc = _run([sys.executable, "-m", "dvc", "plots", "show", "--json"], dvc_repo)
    out = plots.render_dvc_plots_json(json.loads(proc.stdout), tmp_path)
    assert [p.name for p in out] == ["plots_float_curve.png"]
    assert png_info(out[0])[0] > 200


# ------------------------------------------------------------------------------------------- report

SMALL = {
    "float": {
        "fah": 0.5, "fah_ci_low": 0.0127, "fah_ci_high": 2.786, "false_alarms": 1, "negative_hours": 2.0,
        "recall_at_target": 0.8123, "recall_at_0p5_fah": 0.7011, "recall_at_1p0_fah": 0.8456, "eer": 0.0571,
        "pauc_std_fpr10": 0.9484, "pauc_norm_fpr10": 0.9021, "confusable_false_accept_rate": 0.25,
        "counts": {"confusable_clips": 8}, "target_fah": 1.0, "threshold": 0.89,
        "heldout": {"fah": 0.0, "fah_ci_low": 0.0, "fah_ci_high": 3.689, "negative_hours": 1.0,
                    "recall_at_target": 0.1967, "eer": 0.1633},
    },
    "int8": {"fah": 1.5, "fah_ci_low": 0.3, "fah_ci_high": 4.4, "recall_at_target": 0.8099,
             "fidelity_vs_float": {"decision_agreement": 0.996, "recall_drop": 0.0024}},
    "size": {"flash_kb": 39.11, "arena_kb": 18.88, "ram_kb": 25.66, "macs_per_second": 8428800,
             "float": {"flash_kb": 90.55}},
    "calibration": {"temperature": 0.831314, "threshold": 0.89, "ece_before": 0.011914, "ece_after": 0.005382,
                    "val_fah": 1.0, "target_fah": 1.0},
    "train": {"best_epoch": 16, "epochs": 20},
}


def test_report_contains_the_numbers(tmp_path):
    img = tmp_path / "metrics" / "images" / "roc.png"
    img.parent.mkdir(parents=True)
    img.write_bytes(b"x")
    out = tmp_path / "metrics" / "report.md"
    plots.write_report(out, SMALL, {"ROC": img})
    text = out.read_text(encoding="utf8")
    table = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "0.50 [0.01, 2.79] (1 FA)" in table["float / test"] and "81.2%" in table["float / test"]
    row = table["float / test"]
    assert "70.1%" in row and "84.6%" in row and "5.7%" in row
    assert "0.948" in row and "0.902" in row
    assert "25.0% (2/8)" in table["float / test"] and "2.00" in table["float / test"]
    assert "0.00 [0.00, 3.69]" in table["float / heldout"] and "19.7%" in table["float / heldout"]
    assert "1.50 [0.30, 4.40]" in table["int8 / test"] and "int8 / heldout" not in table
    assert "39.11" in table["int8 (deployed)"] and "25.66" in table["int8 (deployed)"]
    assert "8,428,800" in table["int8 (deployed)"] and "90.55" in table["float"]
    assert "0.8313" in text and "0.0119" in text and "0.0054" in text
    assert "decision agreement 99.6%" in text and "best epoch 16 of 20" in text
    assert "![ROC](images/roc.png)" in text
    assert "–" in table["int8 / test"]  # missing keys shown as a dash, not an error
    assert "left out" not in text  # no without_confusables figures: no line
    with_wo = copy.deepcopy(SMALL)
    with_wo["float"]["heldout"]["without_confusables"] = {
        "negative_hours": 4.912, "recall_at_0p5_fah": 0.85, "recall_at_1p0_fah": 0.9, "recall_at_2p0_fah": 0.9167}
    plots.write_report(out, with_wo, {})
    assert ("left out (they are measured per clip, as confusable FA): float / heldout 85.0% / 90.0% / 91.7% "
            "(4.91 h).") in out.read_text(encoding="utf8")
    with_wo["float"]["heldout"]["without_confusables"]["confusable_false_accept_rate_at_0p5_fah"] = 0.1367
    plots.write_report(out, with_wo, {})
    assert "float / heldout 85.0% / 90.0% / 91.7% (4.91 h; at 0.5 FA/h 13.7% confusable FA)." in out.read_text(
        encoding="utf8")


def test_report_lists_the_strongest_false_alarms(tmp_path):
    fas = [{"score": 0.9712, "step": 9, "recording": "streams/heldout.wav", "time_s": 3725.25, "type": "confusable",
            "text": "hey | charvis", "voice": "pico:en-GB"},
           {"score": 0.6, "step": 3, "recording": "streams/heldout.wav", "time_s": 12.0, "type": "background"}]
    m = {"int8": {"threshold": 0.9, "strongest_false_alarms": [], "heldout": {"threshold": 0.9,
                                                                          "strongest_false_alarms": fas}},
         "float": {"strongest_false_alarms": [{"score": 0.99}]}}
    out = tmp_path / "report.md"
    plots.write_report(out, m, {})
    text = out.read_text(encoding="utf8")
    section = text[text.index("## Strongest false alarms"):]
    assert "### int8 / test\n\nNone: the detector fires nowhere on this stream" in section
    assert ("| 0.9712 | yes | streams/heldout.wav @ 1:02:05.2 | confusable | hey \\| charvis | pico:en-GB |"
            in section)  # a pipe in the text would split the cell
    assert "| 0.6000 | no | streams/heldout.wav @ 0:00:12.0 | background | – | – |" in section
    assert "float" not in section  # the deployed (int8) model's only
    plots.write_report(out, {"int8": {"fah": 1.0}}, {})
    assert "## Strongest false alarms" not in out.read_text(encoding="utf8")  # older metrics: no section


def test_report_with_parts_missing(tmp_path):
    out = tmp_path / "report.md"
    plots.write_report(out, {"size": {"flash_kb": 12.5}}, {})
    text = out.read_text(encoding="utf8")
    assert "## Size" in text and "12.50" in text
    assert "## Detection" not in text and "## Calibration" not in text and "## Plots" not in text


def test_load_metrics_reads_present_files(tmp_path):
    (tmp_path / "float.json").write_text('{"fah": 1.0}')
    (tmp_path / "size.json").write_text("{not json")
    with pytest.raises(ValueError, match="size.json"):
        plots.load_metrics(tmp_path)
    (tmp_path / "size.json").write_text('{"flash_kb": 3}')
    assert plots.load_metrics(tmp_path) == {"float": {"fah": 1.0}, "size": {"flash_kb": 3}}
