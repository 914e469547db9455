"""Typed parameters: ``params.yaml`` -> one frozen pydantic model per section.

Every stage validates the *whole* file through :class:`Params` before doing any work, so a bad value
anywhere (``dvc exp run -S train.lr=-1``) or a typo'd key (``-S train.lerning_rate=1``) stops the first
stage that runs with a message naming the key, the value and what is allowed. Library functions take the
narrow section they need, never the whole tree.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ParamsError(ValueError):
    """params.yaml is missing, unreadable, or holds a value that is not allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Range = Annotated[tuple[float, float], Field(description="[low, high], low <= high")]


def _check_range(name: str, value: tuple[float, float]) -> None:
    lo, hi = value
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} must be [low, high] with finite low <= high, got {list(value)}")


class AudioParams(_Section):
    sample_rate_hz: Literal[16000] = 16000
    clip_s: float = Field(1.5, ge=1.0, le=2.0)
    eval_clip_s: float = Field(3.0, ge=1.5, le=10.0)
    step_ms: int = Field(100, ge=10, le=500)

    @model_validator(mode="after")
    def _eval_longer(self) -> AudioParams:
        if self.eval_clip_s < self.clip_s + 0.5:
            raise ValueError(
                f"eval_clip_s ({self.eval_clip_s}) must be at least clip_s + 0.5 ({self.clip_s + 0.5}) "
                "so the sliding window has several steps over each evaluation clip"
            )
        return self

    @property
    def clip_samples(self) -> int:
        return round(self.clip_s * self.sample_rate_hz)

    @property
    def eval_clip_samples(self) -> int:
        return round(self.eval_clip_s * self.sample_rate_hz)


class SynthParams(_Section):
    phrase: str = Field("hey jarvis", min_length=2, max_length=60, pattern=r"^[A-Za-z][A-Za-z' ]*[A-Za-z]$")
    espeak_accents: list[str] = Field(
        default_factory=lambda: ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                                 "en-gb-x-gbcwmd", "en-us-nyc"],
        min_length=1,
    )
    espeak_variants_per_accent: int = Field(104, ge=1, le=150)
    n_positive: int = Field(3000, ge=20, le=200000)
    n_negative: int = Field(3000, ge=20, le=200000)
    n_confusable: int = Field(1200, ge=10, le=100000)
    confusable_pairs: float = Field(0.0, ge=0.0, le=1.0)  # share of confusables voiced exactly like a positive
    n_background: int = Field(200, ge=10, le=20000)
    background_s: float = Field(6.0, ge=2.0, le=60.0)
    piper_fraction: float = Field(0.5, ge=0.0, le=1.0)
    speed_wpm: Range = (120.0, 200.0)
    espeak_word_gap: tuple[int, int] = (0, 3)
    uniform_kinds: bool = True
    pitch: Range = (30.0, 95.0)
    piper_length_scale: Range = (0.8, 1.35)
    piper_noise_scale: Range = (0.4, 0.9)
    piper_revoice_prob: float = Field(0.8, ge=0.0, le=1.0)
    piper_revoice_semitones: Range = (-4.0, 12.0)
    piper_accents: list[str] = Field(default_factory=lambda: ["en-us"], min_length=1)
    stream_voice_fraction: float = Field(0.2, gt=0.0, lt=0.8)
    stream_val_h: float = Field(1.0, gt=0.0, le=100.0)
    stream_test_h: float = Field(1.0, gt=0.0, le=100.0)
    stream_train_h: float = Field(6.0, ge=0.0, le=100.0)  # hard-negative mining material; 0 = none
    context_word_prob: float = Field(0.25, ge=0.0, le=1.0)
    vtlp_prob: float = Field(0.5, ge=0.0, le=1.0)
    vtlp_alpha: Range = (0.88, 1.14)
    heldout_engines: list[Literal["pico", "dectalk"]] = Field(default_factory=lambda: ["pico", "dectalk"])
    n_heldout_positive: int = Field(300, ge=0, le=100000)
    n_heldout_negative: int = Field(300, ge=0, le=100000)
    n_heldout_confusable: int = Field(300, ge=0, le=100000)
    stream_heldout_h: float = Field(5.0, ge=0.0, le=100.0)
    heldout_uniform_kinds: bool = True  # held-out confusables (clips and stream) spelled like its positives
    heldout_rate: Range = (80.0, 130.0)
    heldout_pitch: Range = (75.0, 135.0)

    @model_validator(mode="after")
    def _ranges(self) -> SynthParams:
        _check_range("speed_wpm", self.speed_wpm)
        lo, hi = self.espeak_word_gap
        if not 0 <= lo <= hi <= 20:
            raise ValueError(f"espeak_word_gap must be [low, high] with 0 <= low <= high <= 20 (x 10 ms), "
                             f"got {list(self.espeak_word_gap)}")
        for name in ("vtlp_alpha", "heldout_rate", "heldout_pitch"):
            _check_range(name, getattr(self, name))
        if not (0.7 <= self.vtlp_alpha[0] and self.vtlp_alpha[1] <= 1.4):
            raise ValueError(f"vtlp_alpha must lie within [0.7, 1.4], got {list(self.vtlp_alpha)}")
        if not (20 <= self.heldout_rate[0] and self.heldout_rate[1] <= 500):
            raise ValueError(f"heldout_rate must lie within [20, 500] (percent), got {list(self.heldout_rate)}")
        if not (50 <= self.heldout_pitch[0] and self.heldout_pitch[1] <= 200):
            raise ValueError(f"heldout_pitch must lie within [50, 200] (percent), got {list(self.heldout_pitch)}")
        if len(set(self.heldout_engines)) != len(self.heldout_engines):
            raise ValueError(f"heldout_engines lists an engine twice: {self.heldout_engines}")
        if self.heldout_engines and (self.n_heldout_positive < 10 or self.stream_heldout_h <= 0):
            raise ValueError(
                "a held-out evaluation (heldout_engines set) needs n_heldout_positive >= 10 and stream_heldout_h > 0; "
                "set heldout_engines: [] to switch it off"
            )
        _check_range("pitch", self.pitch)
        _check_range("piper_length_scale", self.piper_length_scale)
        _check_range("piper_noise_scale", self.piper_noise_scale)
        _check_range("piper_revoice_semitones", self.piper_revoice_semitones)
        if not (-12.0 <= self.piper_revoice_semitones[0] and self.piper_revoice_semitones[1] <= 12.0):
            raise ValueError(f"piper_revoice_semitones must lie within [-12, 12], got {list(self.piper_revoice_semitones)}")
        if not (80 <= self.speed_wpm[0] and self.speed_wpm[1] <= 450):
            raise ValueError(f"speed_wpm must lie within [80, 450], got {list(self.speed_wpm)}")
        if not (0 <= self.pitch[0] and self.pitch[1] <= 99):
            raise ValueError(f"pitch must lie within [0, 99], got {list(self.pitch)}")
        for accent in self.piper_accents:
            if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]+)*", accent):
                raise ValueError(f"piper_accents: {accent!r} is not an espeak-ng voice name (like en-gb-x-rp)")
        if self.piper_length_scale[0] <= 0 or self.piper_noise_scale[0] < 0:
            raise ValueError("piper_length_scale must be > 0 and piper_noise_scale >= 0")
        return self


class DataParams(_Section):
    source: Literal["demo", "own", "both"] = "demo"
    min_clip_s: float = Field(0.2, ge=0.05, le=10.0)
    max_clip_s: float = Field(4.0, ge=0.5, le=60.0)
    silence_dbfs: float = Field(-60.0, ge=-120.0, le=-10.0)
    clipped_fraction: float = Field(0.001, gt=0.0, le=1.0)
    drop_flagged: bool = False
    min_stream_s: float = Field(60.0, ge=1.0, le=36000.0)
    max_file_h: float = Field(12.0, gt=0.0, le=1000.0)

    @model_validator(mode="after")
    def _order(self) -> DataParams:
        if self.min_clip_s >= self.max_clip_s:
            raise ValueError(f"min_clip_s ({self.min_clip_s}) must be below max_clip_s ({self.max_clip_s})")
        return self


class SplitParams(_Section):
    train: float = Field(0.7, gt=0.0, lt=1.0)
    val: float = Field(0.15, gt=0.0, lt=1.0)
    test: float = Field(0.15, gt=0.0, lt=1.0)
    pin_to_train: list[str] = Field(default_factory=lambda: ["piper:*"])

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:.6g}")
        return self


class FeatureParams(_Section):
    type: Literal["log_mel", "mfcc", "micro"] = "log_mel"
    n_mels: int = Field(40, ge=8, le=128)
    n_mfcc: int = Field(20, ge=4, le=128)
    n_fft: int = Field(512, ge=256, le=2048)
    win_ms: float = Field(25.0, ge=10.0, le=32.0)
    hop_ms: float = Field(10.0, ge=5.0, le=20.0)
    f_min_hz: float = Field(20.0, ge=0.0, le=1000.0)
    f_max_hz: float = Field(7600.0, ge=2000.0, le=8000.0)
    log_floor: float = Field(1.0e-6, gt=0.0, le=1.0e-2)

    @model_validator(mode="after")
    def _consistent(self) -> FeatureParams:
        if self.win_samples > self.n_fft:
            raise ValueError(f"win_ms ({self.win_ms}) gives {self.win_samples} samples, more than n_fft ({self.n_fft})")
        if self.f_min_hz >= self.f_max_hz:
            raise ValueError(f"f_min_hz ({self.f_min_hz}) must be below f_max_hz ({self.f_max_hz})")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must not exceed n_mels ({self.n_mels}): MFCCs are a DCT of the log-mel")
        if self.type == "micro":
            # The TFLite-Micro front end (pymicro-features) fixes its window, step and channel count; the
            # pipeline's framing (frame spans, window lengths, the runtime) reads them from these keys.
            # n_fft, f_min_hz, f_max_hz, log_floor and n_mfcc are not used by it.
            fixed = (("hop_ms", self.hop_ms, 10.0, "step"), ("win_ms", self.win_ms, 30.0, "window"),
                     ("n_mels", self.n_mels, 40, "channel count"))
            for key, value, want, what in fixed:
                if value != want:
                    raise ValueError(f"features.{key} must be {want} when features.type is micro (the TFLite-Micro "
                                     f"front end's fixed {what}), got {value}")
        return self

    @property
    def win_samples(self) -> int:
        return round(self.win_ms * 16)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_ms * 16)


class AugmentParams(_Section):
    mode: Literal["precomputed", "on_the_fly"] = "precomputed"
    train_variants: int = Field(2, ge=1, le=20)
    negative_windows_per_clip: int = Field(2, ge=1, le=20)
    noise_prob: float = Field(0.6, ge=0.0, le=1.0)
    snr_db: Range = (5.0, 20.0)
    level_dbfs: Range = (-35.0, -12.0)
    noise_floor_dbfs: Range = (-70.0, -60.0)
    context_prob: float = Field(0.35, ge=0.0, le=1.0)
    background_windows: int = Field(600, ge=0, le=100000)
    eval_snr_db: Range = (5.0, 25.0)
    eval_noise_prob: float = Field(0.5, ge=0.0, le=1.0)
    stretch_prob: float = Field(0.3, ge=0.0, le=1.0)
    stretch_range: Range = (0.85, 1.15)
    pitch_prob: float = Field(0.6, ge=0.0, le=1.0)
    pitch_semitones: Range = (-4.0, 4.0)
    pause_prob: float = Field(0.0, ge=0.0, le=1.0)
    pause_s: Range = (0.1, 0.4)
    rir_prob: float = Field(0.25, ge=0.0, le=1.0)
    rir_wet: Range = (0.3, 0.7)
    rir_rt60_s: Range = (0.15, 0.9)
    rir_room_m: Range = (3.0, 10.0)
    n_rirs: int = Field(64, ge=1, le=10000)
    spec_prob: float = Field(0.5, ge=0.0, le=1.0)
    spec_time_masks: int = Field(1, ge=0, le=10)
    spec_time_mask_frames: int = Field(10, ge=1, le=100)
    spec_freq_masks: int = Field(1, ge=0, le=10)
    spec_freq_mask_bins: int = Field(5, ge=1, le=64)
    eq_prob: float = Field(0.5, ge=0.0, le=1.0)
    eq_tilt_db: float = Field(30.0, ge=0.0, le=40.0)
    eq_bands: int = Field(2, ge=0, le=8)
    eq_band_db: float = Field(6.0, ge=0.0, le=24.0)
    warp_prob: float = Field(0.5, ge=0.0, le=1.0)
    warp_range: Range = (0.84, 1.19)

    @model_validator(mode="after")
    def _ranges(self) -> AugmentParams:
        for name in ("snr_db", "level_dbfs", "noise_floor_dbfs", "eval_snr_db", "stretch_range", "pitch_semitones",
                     "pause_s", "rir_wet", "rir_rt60_s", "rir_room_m", "warp_range"):
            _check_range(name, getattr(self, name))
        if not (0.5 <= self.stretch_range[0] and self.stretch_range[1] <= 2.0):
            raise ValueError(f"stretch_range must lie within [0.5, 2.0], got {list(self.stretch_range)}")
        if not (-12.0 <= self.pitch_semitones[0] and self.pitch_semitones[1] <= 12.0):
            raise ValueError(f"pitch_semitones must lie within [-12, 12], got {list(self.pitch_semitones)}")
        if not (0.0 <= self.pause_s[0] and self.pause_s[1] <= 1.0):
            raise ValueError(f"pause_s must lie within [0, 1] s, got {list(self.pause_s)}")
        if not (0.7 <= self.warp_range[0] and self.warp_range[1] <= 1.4):
            raise ValueError(f"warp_range must lie within [0.7, 1.4], got {list(self.warp_range)}")
        if not (0.0 <= self.rir_wet[0] and self.rir_wet[1] <= 1.0):
            raise ValueError(f"rir_wet must lie within [0, 1], got {list(self.rir_wet)}")
        if not (0.05 <= self.rir_rt60_s[0] and self.rir_rt60_s[1] <= 3.0):
            raise ValueError(f"rir_rt60_s must lie within [0.05, 3.0] s, got {list(self.rir_rt60_s)}")
        if not (2.0 <= self.rir_room_m[0] and self.rir_room_m[1] <= 30.0):
            raise ValueError(f"rir_room_m must lie within [2, 30] m, got {list(self.rir_room_m)}")
        if self.level_dbfs[1] > 0 or self.noise_floor_dbfs[1] > 0:
            raise ValueError("level_dbfs and noise_floor_dbfs must be <= 0 dBFS")
        return self


ARCHS = ("ds_tcn", "tiny_conv", "ds_cnn", "mobilenetv3", "resnet", "tcn", "gru", "lstm", "stream_tcn")


def _odd(name: str, value: int) -> None:
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd, got {value}")


class DSTCNParams(_Section):
    """1-D depthwise-separable temporal CNN (mel bins are channels, time is the conv axis)."""

    channels: int = Field(48, ge=4, le=256)
    blocks: int = Field(4, ge=1, le=8)
    kernel_size: int = Field(5, ge=3, le=15)

    @model_validator(mode="after")
    def _check(self) -> DSTCNParams:
        _odd("kernel_size", self.kernel_size)
        return self


class TinyConvParams(_Section):
    """TensorFlow micro_speech ``tiny_conv``: one strided 2-D conv over (time, mel) and a linear layer."""

    filters: int = Field(8, ge=1, le=128)
    kernel_time: int = Field(10, ge=1, le=50)
    kernel_freq: int = Field(8, ge=1, le=40)
    stride: int = Field(2, ge=1, le=8)


class DSCNNParams(_Section):
    """2-D depthwise-separable CNN (Hello Edge DS-CNN): a strided full conv, then depthwise/pointwise blocks."""

    channels: int = Field(20, ge=4, le=512)
    blocks: int = Field(4, ge=1, le=10)
    first_kernel_time: int = Field(10, ge=1, le=30)
    first_kernel_freq: int = Field(4, ge=1, le=20)
    first_stride_time: int = Field(4, ge=1, le=8)
    first_stride_freq: int = Field(4, ge=1, le=8)


class MobileNetV3Params(_Section):
    """MobileNetV3-small (inverted residuals, squeeze-excite, hard-swish) on a 1-channel (time, mel) image."""

    width: float = Field(0.25, gt=0.0, le=2.0)


class ResNetParams(_Section):
    """Residual CNNs: ``res8`` (Tang & Lin: 3 residual blocks, pooled input) or ``resnet18`` (basic blocks
    [2, 2, 2, 2], widths w, 2w, 4w, 8w)."""

    variant: Literal["res8", "resnet18"] = "res8"
    channels: int = Field(12, ge=4, le=256)


class TCNParams(_Section):
    """Temporal convolutional network (Bai et al.): residual blocks of dilated convs, dilation 1, 2, 4, ..."""

    channels: int = Field(24, ge=4, le=256)
    levels: int = Field(4, ge=1, le=10)
    kernel_size: int = Field(3, ge=2, le=15)


class RNNParams(_Section):
    """``gru`` / ``lstm``: a strided conv stem over time, then the recurrent layers; the last step classifies."""

    hidden_size: int = Field(64, ge=4, le=1024)
    layers: int = Field(1, ge=1, le=4)
    bidirectional: bool = False
    stem_channels: int = Field(32, ge=4, le=256)
    stem_stride: int = Field(8, ge=1, le=8)


class StreamTCNParams(_Section):
    """Streaming-friendly causal TCN: unpadded dilated depthwise-separable convs; the window's last output frame
    classifies, so the model can also run frame by frame with a ring buffer per layer (internal state)."""

    channels: int = Field(48, ge=4, le=256)
    kernel_size: int = Field(3, ge=2, le=15)
    dilations: list[Annotated[int, Field(ge=1, le=64)]] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16], min_length=1, max_length=12)
    stem_stride: int = Field(2, ge=1, le=4)


class ModelParams(_Section):
    """``arch`` picks the architecture; each has its own section of size knobs (only the chosen one is used)."""

    arch: Literal["ds_tcn", "tiny_conv", "ds_cnn", "mobilenetv3", "resnet", "tcn", "gru", "lstm",
                  "stream_tcn"] = "tcn"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # subtract each window's per-bin mean over time before the first layer (static channel EQ out); not stream_tcn
    subtract_window_mean: bool = False
    ds_tcn: DSTCNParams = DSTCNParams()
    tiny_conv: TinyConvParams = TinyConvParams()
    ds_cnn: DSCNNParams = DSCNNParams()
    mobilenetv3: MobileNetV3Params = MobileNetV3Params()
    resnet: ResNetParams = ResNetParams()
    tcn: TCNParams = TCNParams()
    rnn: RNNParams = RNNParams()  # used by arch gru and lstm
    stream_tcn: StreamTCNParams = StreamTCNParams()


class LossParams(_Section):
    """Classification loss of the main phase (SPEC 5)."""

    type: Literal["cross_entropy", "focal"] = "cross_entropy"
    label_smoothing: float = Field(0.05, ge=0.0, lt=0.5)  # cross_entropy only
    focal_alpha: float = Field(0.25, ge=0.0, le=1.0)  # weight of the positive class in the focal loss
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0)
    class_weights: Literal["none", "balanced"] = "none"  # balanced: n / (2 * n_class) from the training labels
    hard_negative_weight: float = Field(3.0, gt=0.0, le=100.0)  # per-window weight of hard_negative windows
    # weight of the auxiliary word loss: one training-only head per word of synth.phrase on the embedding, binary
    # cross entropy on "was this word said" from the clip texts (wakeword/words.py); 0 = off
    word_weight: float = Field(3.0, ge=0.0, le=100.0)


class EMAParams(_Section):
    """Exponential moving average of the weights; validation, checkpoints and export use the EMA weights."""

    enabled: bool = True
    decay: float = Field(0.999, ge=0.0, lt=1.0)
    final_decay: float = Field(0.9995, ge=0.0, lt=1.0)  # decay during the last final_epochs epochs
    final_epochs: int = Field(10, ge=0, le=1000)


class QATParams(_Section):
    """Quantization-aware training: fake-quantized weights (int8 symmetric, per channel) and activations (int8)."""

    enabled: bool = False
    start_epoch: int = Field(10, ge=0, le=1000)  # 0-based epoch from which the fake-quant is on
    per_channel: bool = True


class TripletParams(_Section):
    """Triplet fine-tuning phase after the main phase: anchor/positive = wake phrase, negative = other windows."""

    epochs: int = Field(0, ge=0, le=100)  # 0 = no triplet phase
    margin: float = Field(1.0, gt=0.0, le=100.0)
    weight: float = Field(1.0, gt=0.0, le=100.0)  # triplet loss weight beside the classification loss
    lr: float = Field(3.0e-4, gt=0.0, le=1.0)


class DistillParams(_Section):
    """Knowledge distillation from a teacher: loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * loss."""

    teacher: str = ""  # "" = off; a path inside the repo: a checkpoint of this pipeline or a transformers model dir
    kind: Literal["checkpoint", "transformers"] = "checkpoint"
    temperature: float = Field(2.0, gt=0.0, le=100.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0)


class TrainParams(_Section):
    epochs: int = Field(20, ge=1, le=1000)
    batch_size: int = Field(128, ge=4, le=8192)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(3.0e-3, gt=0.0, le=1.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd only
    weight_decay: float = Field(1.0e-4, ge=0.0, le=1.0)
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_epochs: int = Field(1, ge=0, le=100)
    min_lr: float = Field(1.0e-5, ge=0.0, le=1.0)
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0)
    plateau_patience: int = Field(2, ge=0, le=100)
    grad_clip: float = Field(1.0, ge=0.0, le=1000.0)  # max global gradient norm; 0 = off
    early_stopping: int = Field(0, ge=0, le=1000)  # stop after this many epochs without a better checkpoint; 0 = off
    balanced_batches: bool = False
    batch_ratio: tuple[float, float, float] = (1.0, 1.0, 1.0)  # positive : negative : hard_negative per batch
    lr_finder: Literal["none", "plot", "use"] = "none"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = True  # bf16/fp16 autocast when training on a GPU; ignored on CPU
    num_threads: int = Field(2, ge=1, le=256)
    # added to ``seed`` for what train and finetune draw (initial weights, batch order, training-time augmentation);
    # the data stages keep ``seed``, so models trained with several offsets share their data exactly
    seed_offset: int = Field(0, ge=0, le=1_000_000)
    loss: LossParams = LossParams()
    ema: EMAParams = EMAParams()
    qat: QATParams = QATParams()
    triplet: TripletParams = TripletParams()
    distill: DistillParams = DistillParams()

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if any(not math.isfinite(r) or r < 0 for r in self.batch_ratio) or sum(self.batch_ratio) <= 0:
            raise ValueError(f"batch_ratio must be three non-negative numbers with a positive sum, "
                             f"got {list(self.batch_ratio)}")
        if self.balanced_batches and self.batch_ratio[0] <= 0:
            raise ValueError("batch_ratio: the positive share must be > 0 when balanced_batches is on")
        if self.qat.enabled and self.qat.start_epoch >= self.epochs:
            raise ValueError(f"qat.start_epoch ({self.qat.start_epoch}) must be < epochs ({self.epochs}) "
                             "or QAT never starts")
        if self.distill.teacher:
            t = Path(self.distill.teacher)
            if t.is_absolute() or ".." in t.parts:
                raise ValueError(f"distill.teacher must be a relative path inside the repository, "
                                 f"got {self.distill.teacher!r}")
        return self


class MineParams(_Section):
    """Hard-negative mining: score the training stream, keep high-scoring windows, fine-tune with them."""

    enabled: bool = True
    threshold: float = Field(0.1, gt=0.0, lt=1.0)
    min_gap_ms: int = Field(500, ge=0, le=10000)
    max_windows: int = Field(4000, ge=1, le=1_000_000)
    epochs: int = Field(4, ge=1, le=100)
    lr: float = Field(5.0e-4, gt=0.0, le=1.0)


class DetectorParams(_Section):
    hysteresis: float = Field(0.1, ge=0.0, lt=1.0)
    vote_window: int = Field(5, ge=1, le=100)
    vote_threshold: int = Field(3, ge=1, le=100)
    lockout_ms: int = Field(1500, ge=0, le=60000)

    @model_validator(mode="after")
    def _votes(self) -> DetectorParams:
        if self.vote_threshold > self.vote_window:
            raise ValueError(
                f"vote_threshold ({self.vote_threshold}) must not exceed vote_window ({self.vote_window})"
            )
        return self


class CalibrateParams(_Section):
    target_fah: float = Field(1.0, gt=0.0, le=100.0)
    threshold_step: float = Field(0.01, ge=0.001, le=0.1)
    temperature_iters: int = Field(50, ge=1, le=1000)
    temperature_lr: float = Field(0.01, gt=0.0, le=1.0)
    max_stream_on_fraction: float = Field(0.02, gt=0.0, le=1.0)
    # evaluate/tflite: test-time augmentation of the clip metrics (clips also scored shifted by 1..k frames,
    # per-step probabilities averaged); 0 = off. Must be < the detector step in frames (Params check).
    tta_shifts: int = Field(0, ge=0, le=50)


class QuantizeParams(_Section):
    calibration_windows: int = Field(512, ge=16, le=100000)
    onnx_atol: float = Field(1.0e-4, gt=0.0, le=1.0)


class ExportParams(_Section):
    min_decision_agreement: float = Field(0.95, ge=0.0, le=1.0)
    max_recall_drop: float = Field(0.05, ge=0.0, le=1.0)
    max_arena_kb: int = Field(1024, ge=8, le=65536)


class PlatformProfile(_Section):
    """One target board (SPEC 4.7): its totals and the share of them the wake-word model may use."""

    name: str = Field(min_length=1, max_length=60)
    flash_kb: int = Field(ge=1, le=1 << 24)
    ram_kb: int = Field(ge=1, le=1 << 24)
    max_flash_kb: int = Field(0, ge=0, le=1 << 24)
    max_ram_kb: int = Field(0, ge=0, le=1 << 24)

    @model_validator(mode="after")
    def _within_device(self) -> PlatformProfile:
        for key, target, total in (("max_flash_kb", self.max_flash_kb, self.flash_kb),
                                   ("max_ram_kb", self.max_ram_kb, self.ram_kb)):
            if target > total:
                device_key = key.removeprefix("max_")
                raise ValueError(f"{key} ({target}) must not exceed the device's {device_key} ({total}); "
                                 "0 = no limit beyond the device")
        return self


def _default_platforms() -> dict[str, PlatformProfile]:
    return {
        "esp32_s3": PlatformProfile(name="ESP32-S3", flash_kb=4096, ram_kb=512, max_flash_kb=64, max_ram_kb=48),
        "rpi_pico": PlatformProfile(name="Raspberry Pi Pico", flash_kb=2048, ram_kb=264, max_flash_kb=64,
                                    max_ram_kb=48),
        "nano33_ble": PlatformProfile(name="Arduino Nano 33 BLE", flash_kb=1024, ram_kb=256, max_flash_kb=64,
                                      max_ram_kb=48),
    }


class DeployParams(_Section):
    """What the tflite stage checks and writes beside the model: per-platform size targets, the ESPHome-style
    manifest's metadata."""

    fail_on_exceed: bool = False
    author: str = Field("wakeword", min_length=1, max_length=100)
    website: str = Field("", max_length=300, pattern=r"^(|https?://\S+)$")
    trained_languages: list[Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]] = Field(
        default_factory=lambda: ["en"], min_length=1)
    platforms: dict[str, PlatformProfile] = Field(default_factory=_default_platforms)

    @model_validator(mode="after")
    def _platform_keys(self) -> DeployParams:
        for key in self.platforms:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", key):
                raise ValueError(f"platform key {key!r} must be lower-case letters, digits and underscores, starting "
                                 "with a letter (dvc exp run -S cannot address keys with dashes or dots)")
        return self


class Params(_Section):
    seed: int = Field(1234, ge=0, le=2**31 - 1)
    audio: AudioParams = AudioParams()
    synth: SynthParams = SynthParams()
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    features: FeatureParams = FeatureParams()
    augment: AugmentParams = AugmentParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    mine: MineParams = MineParams()
    detector: DetectorParams = DetectorParams()
    calibrate: CalibrateParams = CalibrateParams()
    quantize: QuantizeParams = QuantizeParams()
    export: ExportParams = ExportParams()
    deploy: DeployParams = DeployParams()

    @model_validator(mode="after")
    def _step_is_whole_frames(self) -> Params:
        frames = self.audio.step_ms / self.features.hop_ms
        if abs(frames - round(frames)) > 1e-9:
            raise ValueError(
                f"audio.step_ms ({self.audio.step_ms}) must be a whole number of feature hops "
                f"(features.hop_ms = {self.features.hop_ms})"
            )
        step_frames = round(frames)
        if self.calibrate.tta_shifts >= step_frames:
            raise ValueError(
                f"calibrate.tta_shifts ({self.calibrate.tta_shifts}) must be less than the detector step in "
                f"frames (audio.step_ms / features.hop_ms = {step_frames}); allowed 0-{step_frames - 1}"
            )
        return self


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return data


def format_validation_error(err: ValidationError, data: Any, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid parameter(s):"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p != "__root__")
        key = ".".join(str(p) for p in loc) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            section = ".".join(str(p) for p in loc[:-1])
            model: Any = Params
            for part in loc[:-1]:
                field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
                model = field.annotation if field is not None else None
            allowed = sorted(model.model_fields) if hasattr(model, "model_fields") else []
            where = f"section '{section}'" if section else "the top level"
            lines.append(f"  {key}: unknown key in {where}; allowed keys: {', '.join(allowed)}")
            continue
        value = _lookup(data, loc)
        lines.append(f"  {key} = {value!r}: {msg}")
    return "\n".join(lines)


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, data, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raise :class:`ParamsError` with a readable message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read params file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(data, str(path))


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` (e.g. a profile such as ``profiles/tiny.yaml``) onto ``base``; new dict."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out
