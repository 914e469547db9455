"""Benchmark: the vectorised detector grid used by calibration/evaluation (prints numbers; no targets
asserted). Run: python -m benchmarks.detector_speed"""

from __future__ import annotations

import time

import numpy as np

from wakeword.detector import DetectorConfig, clips_detected_over_thresholds, detections_over_thresholds


def main() -> None:
    rng = np.random.default_rng(0)
    cfg = DetectorConfig.preset("balanced", 100)
    thresholds = np.round(np.arange(1, 100) * 0.01, 6)
    stream = rng.random(36_000)  # 1 h at 100 ms steps; uniform noise is the worst case (most rising edges)
    clips = [rng.random(16) for _ in range(2_000)]
    t0 = time.perf_counter()
    detections_over_thresholds(stream, thresholds, cfg)
    t1 = time.perf_counter()
    clips_detected_over_thresholds(clips, thresholds, cfg)
    t2 = time.perf_counter()
    print(f"detections_over_thresholds: 99 thresholds x 36,000 frames (1 h): {t1 - t0:.3f} s")
    print(f"clips_detected_over_thresholds: 99 thresholds x 2,000 clips x 16 frames: {t2 - t1:.3f} s")


if __name__ == "__main__":
    main()
