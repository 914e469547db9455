"""Model zoo. Input of every model: a window of CMVN-normalised features ``(batch, frames, n_features)``;
output: 2 logits (index 1 = the wake phrase). ``model.arch`` picks the architecture and its own section of
``params.yaml`` sizes it (:func:`build_model`).

Contract (the trainer, the triplet loss, QAT and the exporters rely on it): every model has ``n_features`` and
``window_frames``, ``embed(x) -> (batch, D)`` (the representation before the classifier), ``head:
nn.Linear(D, 2)``, and ``forward(x) == head(dropout(embed(x)))``. Only standard torch layers (Conv1d/Conv2d/
Linear/BatchNorm/ReLU/...), so QAT can hook every conv and linear weight; the GRU and LSTM are unrolled cells of
``nn.Linear`` gates (torch's ``nn.GRU``/``nn.LSTM`` do not convert through litert-torch at all). Every arch
exports to ONNX and to a full-int8 ``.tflite`` (int8 activations everywhere) of TFLite-Micro builtin ops.

- ``ds_tcn``: depthwise-separable temporal CNN, mel bins as channels (the default).
- ``tiny_conv``: TF micro_speech's tiny_conv: one unpadded strided 2-D conv, a linear layer on the flat map.
- ``ds_cnn``: Hello Edge DS-CNN: an unpadded strided 2-D conv, depthwise 3x3 / pointwise blocks, global mean.
- ``mobilenetv3``: MobileNetV3-small (inverted residuals, squeeze-excite, hard-swish), width multiplier.
- ``resnet``: ``res8`` (Tang & Lin; the input is average-pooled 4x3 *before* the first conv, not after it: the
  same resolution afterwards, 12x smaller activations) or ``resnet18`` (basic blocks 2-2-2-2, 7x7/2 conv and
  3x3/2 max pool first).
- ``tcn``: Bai et al.'s TCN (residual blocks of two dilated causal convs, dilation 1, 2, 4, ...; BatchNorm in
  place of weight norm) after a strided stem; mean over time.
- ``gru`` / ``lstm``: a strided stem conv (kernel = stride + 2), then unrolled recurrent layers; the last step
  (and, bidirectional, the backward pass's last step) is the embedding.
- ``stream_tcn``: causal, unpadded, dilated depthwise-separable residual blocks after a strided stem; the
  window's last output frame is classified, so the model reads only the last ``receptive_field_frames`` of the
  window and also runs ``stem_stride`` frames at a time (:meth:`StreamTCN.init_state` / :meth:`StreamTCN.step`).

The temporal models (tcn, gru, lstm, stream_tcn) run their convs as Conv2d with (k, 1) kernels on (B, F, T, 1)
(:func:`_bins_as_channels`): the same maths as Conv1d, but the int8 graph keeps one layout throughout.

``model.subtract_window_mean`` (every arch but stream_tcn): :meth:`WakeWordModel.embed` subtracts the window's
per-bin mean over time before the architecture's own ``_embed``, so a static gain per bin (microphone, room or
speech-engine EQ: an offset per bin of a log spectrum) cancels. Two int8 ops (MEAN, SUB), ~0.3 KB flash and
~0.4 KB arena for tcn.

CMVN: :func:`fold_cmvn` folds per-bin CMVN exactly into the stem where the first layer is an unpadded conv with
the bins as input channels (ds_tcn, tcn, gru, lstm, stream_tcn); the 2-D models see the bins as a spatial axis,
so they get a :class:`CMVNInput` wrapper (SUB and MUL in front of the int8 graph).

Default sizes (``params.yaml``) at 40 log-mel x 148 frames (1.5 s, 10 ms hop): random weights, CMVN folded in,
:func:`wakeword.export.convert_tflite_int8` (litert-torch 0.10); flash = ``.tflite`` bytes (in brackets: the same
file without tensor names, which litert fills with long module paths and TFLite-Micro never reads); arena =
smallest TFLite-Micro arena on a 64-bit host (:func:`wakeword.size.measure_arena_bytes`). KB = 1024 bytes.

============  ==========================================  =======  =========  ==============  =====
arch          default knobs                               params   MACs/win   flash KB        arena
============  ==========================================  =======  =========  ==============  =====
ds_tcn        48 ch, 4 blocks, kernel 5                    16,946    842,880   39.1  (33.1)    18.9
tiny_conv     8 filters, 10x8 kernel, stride 2             19,698    780,640   23.2  (22.0)    20.5
ds_cnn        20 ch, 4 blocks, 10x4 conv, stride 4x4        3,522  1,092,040   21.9  (13.4)    18.9
resnet res8   12 ch                                         8,078  3,792,228   23.5  (15.4)    27.2
tcn           24 ch, 4 levels, kernel 3                    17,186  1,741,296   38.2  (29.8)    18.4
stream_tcn    48 ch, kernel 3, dilations 1-16, stride 2    19,154    855,024   47.2  (40.5)    21.4
gru           hidden 64, 1 layer, stem 32 ch stride 8      31,618    550,016   98.5  (79.0)    80.5
lstm          hidden 64, 1 layer, stem 32 ch stride 8      37,826    656,512  103.6  (87.1)    86.6
mobilenetv3   width 0.25                                  117,642  1,098,352  281.1 (215.2)    71.2
resnet18      width 12 (12-24-48-96)                      394,838  9,700,512  442.3 (420.0)    52.5
============  ==========================================  =======  =========  ==============  =====

Why some miss the ~52 KB flash / ~20 KB arena target: every TFLite op costs ~0.3-1 KB of flash (tensor and op
records, names, quantisation parameters) and ~0.2-0.4 KB of arena on this host (TFLite-Micro's per-node structs,
per-channel requantisation data), whatever its size. The unrolled gru/lstm have ~14 ops per step (18 steps at
stride 8), MobileNetV3-small ~140 ops; res8 keeps three activation maps alive across each residual add;
resnet18 is the big reference.
About 8-10 KB of every arena figure is such per-op bookkeeping (less on a 32-bit MCU), and every model keeps
the int8 input window (5.9 KB) plus one copy of it alive at the start.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from wakeword.params import ModelParams

# --------------------------------------------------------------------------------------------------- base


class WakeWordModel(nn.Module):
    """Base of the zoo: ``forward(x) = head(drop(embed(x)))`` with ``head = nn.Linear(embed_dim, 2)``."""

    #: True when the first layer is an unpadded conv named ``stem`` with the feature bins as input channels (a
    #: Conv1d, or a Conv2d with (k, 1) kernels) that sees the input window unchanged (cropping in time allowed):
    #: CMVN then folds into it exactly (:func:`fold_cmvn`).
    cmvn_folds_into_stem: ClassVar[bool] = False

    def __init__(self, n_features: int, window_frames: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.window_frames = int(window_frames)
        self.embed_dim = int(embed_dim)
        self.drop: nn.Module = nn.Dropout(dropout)
        self.head = nn.Linear(self.embed_dim, 2)
        #: ``model.subtract_window_mean``: the first layer sees ``x - mean_over_time(x)`` (per bin, per window)
        self.subtract_window_mean = False

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation before the classifier, (batch, embed_dim): the architecture's :meth:`_embed` of
        the window, or of the window less its per-bin mean over time with ``subtract_window_mean``. That takes
        a static gain per bin out (a microphone's or a speech engine's EQ: a constant offset per bin of a log
        spectrum); it keeps every change in time. Under CMVN it subtracts the same for every mean, so
        :func:`fold_cmvn` folds only the scale."""
        if self.subtract_window_mean:
            x = x - x.mean(dim=1, keepdim=True)
        return self._embed(x)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(x)))


def _bins_as_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, T, F) -> (B, F, T, 1): feature bins as channels, time as height, for the temporal models' Conv2d
    layers with (k, 1) kernels. Written as unsqueeze + permute so that, converted to TFLite's NHWC layout
    ((B, T, 1, F), the input's own memory order), the two transposes cancel and the graph starts with one
    RESHAPE instead of transposing the whole window."""
    return x.unsqueeze(2).permute(0, 3, 1, 2)


def _global_mean(y: torch.Tensor) -> torch.Tensor:
    """Mean over the spatial axes of (B, C, H, W), taken channels-last so the int8 graph needs no transpose."""
    return y.permute(0, 2, 3, 1).mean(dim=(1, 2))


def _conv_bn2d(c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1,
               padding: int | tuple[int, int] = 0, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(c_out)]


# --------------------------------------------------------------------------------------------------- ds_tcn


class DSBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(
            channels, channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=channels, bias=False
        )
        self.bn1 = nn.BatchNorm1d(channels)
        self.pointwise = nn.Conv1d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.depthwise(x)))
        return self.drop(self.act(self.bn2(self.pointwise(x))))


class DSTCN(WakeWordModel):
    """1-D depthwise-separable temporal CNN. The dropout sits inside the blocks (its original structure), so
    the classifier dropout is off: ``forward == head(embed(x))``. The stem is unpadded so CMVN folds exactly."""

    cmvn_folds_into_stem = True

    def __init__(self, n_features: int, channels: int, blocks: int, kernel_size: int, dropout: float,
                 window_frames: int = 0) -> None:
        super().__init__(n_features, window_frames, channels, 0.0)
        self.drop = nn.Identity()  # keeps the exported graph exactly as it always was
        self.stem = nn.Conv1d(n_features, channels, 3, stride=2, padding=0, bias=True)
        self.stem_bn = nn.BatchNorm1d(channels)
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(
            *[DSBlock(channels, kernel_size, 2 if i % 2 == 1 else 1, dropout) for i in range(blocks)]
        )

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, F, T)
        x = self.act(self.stem_bn(self.stem(x)))
        return self.blocks(x).mean(dim=2)


# --------------------------------------------------------------------------------------------------- tiny_conv


class TinyConv(WakeWordModel):
    """One unpadded strided conv over (time, mel), BatchNorm, ReLU; the flattened map is the embedding.

    The map is flattened time-major with channels last (the order TFLite keeps it in), so the int8 model needs
    no transpose before the classifier."""

    def __init__(self, n_features: int, window_frames: int, filters: int, kernel_time: int, kernel_freq: int,
                 stride: int, dropout: float) -> None:
        t_out = (window_frames - kernel_time) // stride + 1
        f_out = (n_features - kernel_freq) // stride + 1
        super().__init__(n_features, window_frames, filters * t_out * f_out, dropout)
        self.conv = nn.Conv2d(1, filters, (kernel_time, kernel_freq), stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(filters)
        self.act = nn.ReLU()

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x.unsqueeze(1))))  # (B, C, T', F')
        return y.permute(0, 2, 3, 1).flatten(1)


# --------------------------------------------------------------------------------------------------- ds_cnn


class DSCNN(WakeWordModel):
    """Hello Edge DS-CNN: an unpadded strided full conv, depthwise 3x3 + pointwise blocks, global mean."""

    def __init__(self, n_features: int, window_frames: int, channels: int, blocks: int, kernel: tuple[int, int],
                 stride: tuple[int, int], dropout: float) -> None:
        super().__init__(n_features, window_frames, channels, dropout)
        self.first = nn.Sequential(*_conv_bn2d(1, channels, kernel, stride), nn.ReLU())
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers += [*_conv_bn2d(channels, channels, 3, padding=1, groups=channels), nn.ReLU(),
                       *_conv_bn2d(channels, channels, 1), nn.ReLU()]
        self.blocks = nn.Sequential(*layers)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return _global_mean(self.blocks(self.first(x.unsqueeze(1))))


# --------------------------------------------------------------------------------------------------- mobilenetv3


def _divisible(value: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to a multiple of 8, never more than 10% down."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class HardSigmoid(nn.Module):
    """``relu6(x + 3) / 6`` written out: TFLite has no hard-sigmoid op, and ``nn.Hardsigmoid`` stays float in
    the int8 conversion, while ADD, RELU6 and MUL all quantize."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu6(x + 3.0) * (1.0 / 6.0)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = HardSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, kernel: int, expanded: int, c_out: int, se: bool, hswish: bool,
                 stride: int) -> None:
        super().__init__()
        act: type[nn.Module] = nn.Hardswish if hswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers += [*_conv_bn2d(c_in, expanded, 1), act()]
        layers += [*_conv_bn2d(expanded, expanded, kernel, stride, kernel // 2, groups=expanded), act()]
        if se:
            layers.append(SqueezeExcite(expanded, _divisible(expanded // 4)))
        layers += _conv_bn2d(expanded, c_out, 1)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


#: MobileNetV3-small bneck table (Howard et al. 2019, table 2): kernel, expansion, out, SE, hard-swish, stride.
MOBILENETV3_SMALL = (
    (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
)


class MobileNetV3Small(WakeWordModel):
    """MobileNetV3-small with every width scaled by ``width`` (torchvision's rounding); the embedding is the
    hard-swish of the 1024*width linear layer after the global pool, as in the paper's classifier. ``table``
    (default: the paper's 11 bnecks) exists for tests that need a shorter network of the same blocks."""

    def __init__(self, n_features: int, window_frames: int, width: float, dropout: float,
                 table: tuple[tuple[int, int, int, bool, bool, int], ...] = MOBILENETV3_SMALL) -> None:
        last = _divisible(1024 * width)
        super().__init__(n_features, window_frames, last, dropout)
        c = _divisible(16 * width)
        layers: list[nn.Module] = [*_conv_bn2d(1, c, 3, 2, 1), nn.Hardswish()]
        for kernel, exp, out, se, hs, stride in table:
            c_out = _divisible(out * width)
            layers.append(InvertedResidual(c, kernel, _divisible(exp * width), c_out, se, hs, stride))
            c = c_out
        layers += [*_conv_bn2d(c, 6 * c, 1), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(6 * c, last)
        self.fc_act = nn.Hardswish()

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        y = _global_mean(self.features(x.unsqueeze(1)))
        return self.fc_act(self.fc(y))


# --------------------------------------------------------------------------------------------------- resnet


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn2d(c_in, c_out, 3, stride, 1), nn.ReLU(),
                                  *_conv_bn2d(c_out, c_out, 3, 1, 1))
        self.shortcut = (nn.Sequential(*_conv_bn2d(c_in, c_out, 1, stride)) if stride != 1 or c_in != c_out
                         else nn.Identity())
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Res8(WakeWordModel):
    """res8 (Tang & Lin 2018): 3x3 conv, three residual blocks, global mean. The 4x3 average pool is applied to
    the input rather than to the first conv's output (same resolution afterwards, 12x smaller activations)."""

    POOL = (4, 3)

    def __init__(self, n_features: int, window_frames: int, channels: int, dropout: float) -> None:
        super().__init__(n_features, window_frames, channels, dropout)
        self.pool = nn.AvgPool2d(self.POOL)
        self.conv0 = nn.Sequential(*_conv_bn2d(1, channels, 3, 1, 1), nn.ReLU())
        self.blocks = nn.Sequential(*[BasicBlock(channels, channels) for _ in range(3)])

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return _global_mean(self.blocks(self.conv0(self.pool(x.unsqueeze(1)))))


class ResNet18(WakeWordModel):
    """ResNet-18 (He et al. 2016) on the 1-channel (time, mel) image: 7x7/2 conv, 3x3/2 max pool, basic blocks
    [2, 2, 2, 2] of widths w, 2w, 4w, 8w (stride 2 from the second stage on), global mean."""

    def __init__(self, n_features: int, window_frames: int, width: int, dropout: float) -> None:
        super().__init__(n_features, window_frames, 8 * width, dropout)
        self.stem = nn.Sequential(*_conv_bn2d(1, width, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        c = width
        for i, mult in enumerate((1, 2, 4, 8)):
            stages += [BasicBlock(c, width * mult, 1 if i == 0 else 2), BasicBlock(width * mult, width * mult)]
            c = width * mult
        self.stages = nn.Sequential(*stages)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return _global_mean(self.stages(self.stem(x.unsqueeze(1))))


# --------------------------------------------------------------------------------------------------- tcn


class TemporalBlock(nn.Module):
    """Bai et al.'s residual block: two dilated convs (kernel k, dilation d), each BatchNorm, ReLU, dropout;
    residual; ReLU. Unpadded on (B, C, T, 1): the output is 2*(k-1)*d frames shorter than the input and the
    residual takes the input's last frames (the causal padding is applied once, in front of the stack)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.context = 2 * (kernel_size - 1) * dilation
        self.conv1 = nn.Conv2d(channels, channels, (kernel_size, 1), dilation=(dilation, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, (kernel_size, 1), dilation=(dilation, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.act(self.bn1(self.conv1(x))))
        y = self.drop(self.act(self.bn2(self.conv2(y))))
        return self.act(x[:, :, self.context :] + y)


class TCN(WakeWordModel):
    """Temporal convolutional network (Bai et al. 2018) with BatchNorm in place of weight norm. Stem: unpadded
    conv (kernel 3, stride 2) over the feature bins as channels, BN, ReLU; the stem's output is zero-padded on
    the left by the stack's context (sum of 2*(k-1)*d) once, then ``levels`` unpadded residual blocks with
    dilation 1, 2, 4, ... keep its length: causal, every output sees only the past. The embedding is the mean
    over time. Padding once (instead of per conv) keeps the int8 graph to one PAD op; near the window start the
    deeper layers see computed values instead of zeros. Convs are Conv2d with (k, 1) kernels on (B, C, T, 1)
    (see :func:`_bins_as_channels`): one TFLite layout for the whole graph, the same maths as Conv1d."""

    cmvn_folds_into_stem = True

    def __init__(self, n_features: int, window_frames: int, channels: int, levels: int, kernel_size: int,
                 dropout: float) -> None:
        super().__init__(n_features, window_frames, channels, dropout)
        self.stem = nn.Conv2d(n_features, channels, (3, 1), stride=(2, 1), bias=False)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(
            *[TemporalBlock(channels, kernel_size, 2**i, dropout) for i in range(levels)])
        self.pad = nn.ZeroPad2d((0, 0, sum(b.context for b in self.blocks), 0))

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.stem_bn(self.stem(_bins_as_channels(x))))
        return _global_mean(self.blocks(self.pad(y)))


# --------------------------------------------------------------------------------------------------- gru / lstm


class RecurrentDirection(nn.Module):
    """One direction of one GRU or LSTM layer, unrolled over the (few, strided) time steps.

    Gates as torch's ``nn.GRU`` (r, z, n with ``n = tanh(W_in x + b_in + r * (W_hn h))``) and ``nn.LSTM`` (i, f,
    g, o), with the bias on the input projection only (a recurrent bias would become one int8 bias tensor per
    step in the ``.tflite``). The first layer projects the whole stem sequence at once and slices one step at a
    time; a layer above projects each step of the states below (one projection per direction below; a
    concatenation of all steps would exceed TFLite-Micro's 10-input CONCATENATION). The hidden state stays
    ``(B, 1, H)`` and slices keep their dims, so the int8 graph is SLICE, FULLY_CONNECTED, ADD, SUB, MUL,
    LOGISTIC and TANH only: no reshapes, no multi-output ops.
    """

    def __init__(self, kind: str, in_sizes: list[int], hidden: int, reverse: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.kind, self.hidden, self.reverse = kind, hidden, reverse
        if kind == "gru":  # r and z share one projection; n has its own (r multiplies only W_hn h)
            self.x_rz = nn.ModuleList([nn.Linear(n, 2 * hidden, bias=i == 0) for i, n in enumerate(in_sizes)])
            self.x_n = nn.ModuleList([nn.Linear(n, hidden, bias=i == 0) for i, n in enumerate(in_sizes)])
            self.h_rz = nn.Linear(hidden, 2 * hidden, bias=False)
            self.h_n = nn.Linear(hidden, hidden, bias=False)
        else:
            self.x_g = nn.ModuleList([nn.Linear(n, 4 * hidden, bias=i == 0) for i, n in enumerate(in_sizes)])
            self.h_g = nn.Linear(hidden, 4 * hidden, bias=False)
        self.drop = nn.Dropout(dropout)  # on the states of the layer below (a layer above the first)

    def _inputs(self, projections: nn.ModuleList, xs: torch.Tensor | list[list[torch.Tensor]]
                ) -> list[torch.Tensor]:
        """Per-step input projections (B, 1, G*H): of the whole sequence at once (a tensor (B, T, C)), or of
        each step of each stream of the layer below (lists of (B, 1, H))."""
        if isinstance(xs, torch.Tensor):
            seq = projections[0](xs)
            return [seq[:, t : t + 1] for t in range(xs.shape[1])]
        steps = len(xs[0])
        out = []
        for t in range(steps):
            acc = projections[0](self.drop(xs[0][t]))
            for lin, stream in zip(list(projections)[1:], xs[1:]):
                acc = acc + lin(self.drop(stream[t]))
            out.append(acc)
        return out

    def forward(self, xs: torch.Tensor | list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Hidden states (B, 1, H) of every step, in time order."""
        size = self.hidden
        states: list[torch.Tensor] = []
        h: torch.Tensor | None = None
        if self.kind == "gru":
            a_rz, a_n = self._inputs(self.x_rz, xs), self._inputs(self.x_n, xs)
            order = range(len(a_rz) - 1, -1, -1) if self.reverse else range(len(a_rz))
            for t in order:
                if h is None:  # h0 = 0: r does not matter and h = (1 - z) * n
                    z = torch.sigmoid(a_rz[t][:, :, size:])
                    n = torch.tanh(a_n[t])
                    h = n - z * n
                else:
                    rz = torch.sigmoid(a_rz[t] + self.h_rz(h))
                    n = torch.tanh(a_n[t] + rz[:, :, :size] * self.h_n(h))
                    h = n + rz[:, :, size:] * (h - n)
                states.append(h)
        else:
            a_g = self._inputs(self.x_g, xs)
            order = range(len(a_g) - 1, -1, -1) if self.reverse else range(len(a_g))
            c: torch.Tensor | None = None
            for t in order:
                a = a_g[t]
                if h is None or c is None:  # h0 = c0 = 0
                    c = torch.sigmoid(a[:, :, :size]) * torch.tanh(a[:, :, 2 * size : 3 * size])
                    o = torch.sigmoid(a[:, :, 3 * size :])
                else:
                    a = a + self.h_g(h)
                    s = torch.sigmoid(a)
                    c = s[:, :, size : 2 * size] * c + s[:, :, :size] * torch.tanh(a[:, :, 2 * size : 3 * size])
                    o = s[:, :, 3 * size :]
                h = o * torch.tanh(c)
                states.append(h)
        return states[::-1] if self.reverse else states


class RNN(WakeWordModel):
    """``gru`` / ``lstm``: stem conv (kernel stride + 2, stride ``stem_stride``, unpadded, feature bins as
    channels; a Conv2d with a (k, 1) kernel, see :func:`_bins_as_channels`), BatchNorm, ReLU; then ``layers``
    unrolled recurrent layers (dropout between layers). The embedding is the last forward state, concatenated
    with the backward pass's final state (at t = 0) when bidirectional."""

    cmvn_folds_into_stem = True

    def __init__(self, kind: str, n_features: int, window_frames: int, hidden: int, layers: int,
                 bidirectional: bool, stem_channels: int, stem_stride: int, dropout: float) -> None:
        directions = 2 if bidirectional else 1
        super().__init__(n_features, window_frames, directions * hidden, dropout)
        self.kind = kind
        self.stem_kernel = stem_stride + 2
        self.steps = (window_frames - self.stem_kernel) // stem_stride + 1  # recurrent steps per window
        self.stem = nn.Conv2d(n_features, stem_channels, (self.stem_kernel, 1), stride=(stem_stride, 1),
                              bias=False)
        self.stem_bn = nn.BatchNorm2d(stem_channels)
        self.act = nn.ReLU()
        self.layers = nn.ModuleList()
        in_sizes = [stem_channels]
        for i in range(layers):
            self.layers.append(nn.ModuleList([
                RecurrentDirection(kind, in_sizes, hidden, reverse=d == 1, dropout=dropout if i > 0 else 0.0)
                for d in range(directions)]))
            in_sizes = [hidden] * directions

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.stem_bn(self.stem(_bins_as_channels(x))))  # (B, C, T', 1)
        xs: torch.Tensor | list[list[torch.Tensor]] = y.permute(0, 2, 3, 1).flatten(2)  # (B, T', C)
        for layer in self.layers:
            xs = [direction(xs) for direction in layer]
        assert isinstance(xs, list)
        last = xs[0][-1][:, 0]
        return torch.cat([last, xs[1][0][:, 0]], dim=1) if len(xs) > 1 else last


# --------------------------------------------------------------------------------------------------- stream_tcn


class CausalBlock(nn.Module):
    """Unpadded causal depthwise conv (kernel k, dilation d) + BN + ReLU, pointwise conv + BN, residual from the
    input's last frames, ReLU, on (B, C, T, 1). Output length = input length - (k-1)*d."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.context = (kernel_size - 1) * dilation
        self.depthwise = nn.Conv2d(channels, channels, (kernel_size, 1), dilation=(dilation, 1), groups=channels,
                                   bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.pointwise(self.act(self.bn1(self.depthwise(x)))))
        return self.drop(self.act(y + x[:, :, self.context :]))


class StreamTCN(WakeWordModel):
    """Causal streaming TCN: stem conv (kernel ``stem_stride + 1``, stride ``stem_stride``, unpadded, feature
    bins as channels), then one :class:`CausalBlock` per dilation. The window model crops the window to its last
    :attr:`receptive_field_frames` and classifies the single output frame; :meth:`step` computes the same logits
    ``stem_stride`` frames at a time, keeping a buffer of past activations per layer. Convs are Conv2d with
    (k, 1) kernels on (B, C, T, 1) (see :func:`_bins_as_channels`)."""

    cmvn_folds_into_stem = True

    def __init__(self, n_features: int, window_frames: int, channels: int, kernel_size: int,
                 dilations: list[int], stem_stride: int, dropout: float) -> None:
        super().__init__(n_features, window_frames, channels, dropout)
        self.stem_stride = stem_stride
        self.stem_kernel = stem_stride + 1
        self.stem = nn.Conv2d(n_features, channels, (self.stem_kernel, 1), stride=(stem_stride, 1), bias=False)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()
        self.blocks = nn.ModuleList([CausalBlock(channels, kernel_size, d, dropout) for d in dilations])

    @property
    def receptive_field_frames(self) -> int:
        """Feature frames the last output depends on: ``1 + sum((k-1)*d)`` stem steps, i.e.
        ``sum((k-1)*d) * stem_stride + stem_kernel`` frames."""
        return sum(b.context for b in self.blocks) * self.stem_stride + self.stem_kernel

    def _layers(self, y: torch.Tensor) -> torch.Tensor:
        return self.act(self.stem_bn(self.stem(y)))

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        y = _bins_as_channels(x)
        rf = self.receptive_field_frames
        if y.shape[2] != rf:
            y = y[:, :, y.shape[2] - rf :]
        y = self._layers(y)
        for block in self.blocks:
            y = block(y)
        return y[:, :, -1, 0]

    def init_state(self, batch: int) -> list[torch.Tensor]:
        """Zeroed buffers, one per layer: the stem's last ``stem_kernel - stem_stride`` input frames
        (B, n_features, ., 1) and each block's last (k-1)*d inputs (B, channels, ., 1). Outputs equal the window
        model's once :attr:`receptive_field_frames` frames have been fed."""
        p = next(self.parameters())
        state = [torch.zeros(batch, self.n_features, self.stem_kernel - self.stem_stride, 1, dtype=p.dtype,
                             device=p.device)]
        state += [torch.zeros(batch, b.depthwise.in_channels, b.context, 1, dtype=p.dtype, device=p.device)
                  for b in self.blocks]
        return state

    def step(self, frames: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Consume ``stem_stride`` new feature frames ``(B, stem_stride, n_features)``; return the logits of the
        window ending at the newest frame and the new state (the given ``state`` is not modified)."""
        if frames.ndim != 3 or frames.shape[1] != self.stem_stride or frames.shape[2] != self.n_features:
            raise ValueError(f"step takes (batch, {self.stem_stride}, {self.n_features}) frames, got "
                             f"{tuple(frames.shape)}")
        if len(state) != 1 + len(self.blocks):
            raise ValueError(f"state must hold {1 + len(self.blocks)} tensors (init_state), got {len(state)}")
        x = torch.cat([state[0], _bins_as_channels(frames)], dim=2)
        new_state = [x[:, :, self.stem_stride :]]
        y = self._layers(x)
        for block, buf in zip(self.blocks, state[1:]):
            inp = torch.cat([buf, y], dim=2)
            new_state.append(inp[:, :, 1:])
            y = block(inp)
        return self.head(self.drop(y[:, :, -1, 0])), new_state


# --------------------------------------------------------------------------------------------------- build


def _check_fits(key: str, what: str, need: int, have: int, have_what: str) -> None:
    if need > have:
        raise ValueError(f"{key}: {what} ({need}) exceeds the {have_what} ({have})")


def build_model(params: ModelParams, n_features: int, window_frames: int) -> nn.Module:
    """The ``params.arch`` model for windows of ``window_frames`` x ``n_features``; ValueError naming the
    params key when the knobs do not fit the window."""
    arch, drop = params.arch, params.dropout
    if n_features < 1 or window_frames < 1:
        raise ValueError(f"n_features ({n_features}) and window_frames ({window_frames}) must be positive")
    model: WakeWordModel
    if arch == "ds_tcn":
        d = params.ds_tcn
        model = DSTCN(n_features, d.channels, d.blocks, d.kernel_size, drop, window_frames)
    elif arch == "tiny_conv":
        t = params.tiny_conv
        _check_fits("model.tiny_conv.kernel_time", "kernel_time", t.kernel_time, window_frames,
                    "window in frames")
        _check_fits("model.tiny_conv.kernel_freq", "kernel_freq", t.kernel_freq, n_features, "feature bins")
        model = TinyConv(n_features, window_frames, t.filters, t.kernel_time, t.kernel_freq, t.stride, drop)
    elif arch == "ds_cnn":
        c = params.ds_cnn
        _check_fits("model.ds_cnn.first_kernel_time", "first_kernel_time", c.first_kernel_time, window_frames,
                    "window in frames")
        _check_fits("model.ds_cnn.first_kernel_freq", "first_kernel_freq", c.first_kernel_freq, n_features,
                    "feature bins")
        model = DSCNN(n_features, window_frames, c.channels, c.blocks,
                      (c.first_kernel_time, c.first_kernel_freq), (c.first_stride_time, c.first_stride_freq), drop)
    elif arch == "mobilenetv3":
        model = MobileNetV3Small(n_features, window_frames, params.mobilenetv3.width, drop)
    elif arch == "resnet":
        r = params.resnet
        if r.variant == "res8":
            key = "model.resnet (res8 pools the input 4x3)"
            _check_fits(key, "pool", Res8.POOL[0], window_frames, "window in frames")
            _check_fits(key, "pool", Res8.POOL[1], n_features, "feature bins")
            model = Res8(n_features, window_frames, r.channels, drop)
        else:
            model = ResNet18(n_features, window_frames, r.channels, drop)
    elif arch == "tcn":
        c2 = params.tcn
        _check_fits("model.tcn", "the stem kernel", 3, window_frames, "window in frames")
        model = TCN(n_features, window_frames, c2.channels, c2.levels, c2.kernel_size, drop)
    elif arch in ("gru", "lstm"):
        r2 = params.rnn
        _check_fits("model.rnn.stem_stride", "the stem kernel (stem_stride + 2)", r2.stem_stride + 2,
                    window_frames, "window in frames")
        model = RNN(arch, n_features, window_frames, r2.hidden_size, r2.layers, r2.bidirectional,
                    r2.stem_channels, r2.stem_stride, drop)
    elif arch == "stream_tcn":
        if params.subtract_window_mean:
            raise ValueError("model.subtract_window_mean: arch stream_tcn runs frame by frame with state and "
                             "never sees a whole window to take its mean; set it false or pick a windowed arch")
        s = params.stream_tcn
        model = StreamTCN(n_features, window_frames, s.channels, s.kernel_size, list(s.dilations), s.stem_stride,
                          drop)
        rf = model.receptive_field_frames
        if rf > window_frames:
            raise ValueError(
                f"model.stream_tcn.dilations {list(s.dilations)} with kernel_size {s.kernel_size} and "
                f"stem_stride {s.stem_stride} give a receptive field of {rf} frames, more than the window of "
                f"{window_frames} frames: the last output frame must see only the window. Use fewer or smaller "
                "dilations or a smaller kernel_size")
    else:
        raise ValueError(f"model.arch: unknown architecture {arch!r}")
    model.subtract_window_mean = params.subtract_window_mean
    try:  # one dry run: knobs that shrink a map to nothing fail here, with the key named
        was = model.training
        with torch.no_grad():
            model.eval()(torch.zeros(1, window_frames, n_features))
        model.train(was)
    except RuntimeError as exc:
        raise ValueError(f"model.{arch}: the knobs do not fit a window of {window_frames} frames x {n_features} "
                         f"features ({exc})") from None
    return model


def describe(params: ModelParams) -> str:
    """One line naming the architecture and its size knobs (``wakeword estimate``)."""
    arch = params.arch
    if arch == "ds_tcn":
        d = params.ds_tcn
        text = f"{d.channels} channels, {d.blocks} blocks, kernel {d.kernel_size}"
    elif arch == "tiny_conv":
        t = params.tiny_conv
        text = f"{t.filters} filters, kernel {t.kernel_time}x{t.kernel_freq} (frames x bins), stride {t.stride}"
    elif arch == "ds_cnn":
        c = params.ds_cnn
        text = (f"{c.channels} channels, {c.blocks} blocks, first conv "
                f"{c.first_kernel_time}x{c.first_kernel_freq} stride {c.first_stride_time}x{c.first_stride_freq}")
    elif arch == "mobilenetv3":
        text = f"small, width {params.mobilenetv3.width:g}"
    elif arch == "resnet":
        r = params.resnet
        text = (f"res8, {r.channels} channels" if r.variant == "res8"
                else f"resnet18, widths {r.channels}-{2 * r.channels}-{4 * r.channels}-{8 * r.channels}")
    elif arch == "tcn":
        c2 = params.tcn
        text = (f"{c2.channels} channels, {c2.levels} levels (dilations 1-{2 ** (c2.levels - 1)}), "
                f"kernel {c2.kernel_size}")
    elif arch in ("gru", "lstm"):
        r2 = params.rnn
        text = (f"hidden {r2.hidden_size} x {r2.layers} layer{'s' if r2.layers > 1 else ''}"
                f"{' bidirectional' if r2.bidirectional else ''}, stem {r2.stem_channels} channels stride "
                f"{r2.stem_stride}")
    else:
        s = params.stream_tcn
        text = (f"{s.channels} channels, kernel {s.kernel_size}, dilations {list(s.dilations)}, stem stride "
                f"{s.stem_stride}")
    return f"{arch}: {text}"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, window_frames: int) -> int:
    """Multiply-accumulates of one forward pass on one window: every Conv1d, Conv2d and Linear call (the
    unrolled recurrent gates are Linear calls, counted once per step). Element-wise ops, pooling and
    BatchNorm (folded at export) are not counted."""
    macs = 0

    def conv_hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, (nn.Conv1d, nn.Conv2d))
        per_output = math.prod(mod.kernel_size) * (mod.in_channels // mod.groups)
        macs += int(out[0].numel() * per_output)

    def linear_hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Linear)
        macs += int(out[0].numel() * mod.in_features)

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    n_features = int(model.n_features)  # type: ignore[arg-type]
    try:
        with torch.no_grad():
            model(torch.zeros(1, window_frames, n_features))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return macs


# --------------------------------------------------------------------------------------------------- CMVN


class CMVNInput(nn.Module):
    """``model((x - mean) / (std + eps))`` with fixed buffers: CMVN for models whose first layer cannot absorb
    it (2-D convs see the bins as a spatial axis). Keeps ``n_features``, ``window_frames``, ``embed`` and
    ``head``."""

    def __init__(self, model: nn.Module, mean: np.ndarray, std: np.ndarray, eps: float = 1e-8) -> None:
        super().__init__()
        self.model = model
        self.n_features = int(getattr(model, "n_features", len(mean)))
        self.window_frames = int(getattr(model, "window_frames", 0))
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        inv = 1.0 / (np.asarray(std, dtype=np.float64) + eps)
        self.register_buffer("inv_std", torch.as_tensor(inv.astype(np.float32)))

    @property
    def head(self) -> nn.Module:
        return self.model.head  # type: ignore[return-value]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(self.normalise(x))  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalise(x))


def _foldable_stem(model: nn.Module) -> nn.Conv1d | nn.Conv2d | None:
    """The model's ``stem`` when CMVN folds into it exactly: an unpadded, ungrouped conv whose input channels
    are the feature bins (a Conv1d, or a Conv2d with a (k, 1) kernel on (B, F, T, 1))."""
    stem = getattr(model, "stem", None)
    if not getattr(model, "cmvn_folds_into_stem", False) or stem is None or stem.groups != 1:
        return None
    if isinstance(stem, nn.Conv1d) and stem.padding == (0,):
        return stem
    if isinstance(stem, nn.Conv2d) and stem.padding == (0, 0) and stem.kernel_size[1] == 1:
        return stem
    return None


def fold_cmvn(model: nn.Module, mean: np.ndarray, std: np.ndarray, eps: float = 1e-8) -> nn.Module:
    """Return a copy of ``model`` (eval mode) that takes raw (un-normalised) features.

    Exact fold where the first layer is an unpadded conv ``stem`` with the feature bins as input channels
    (ds_tcn, tcn, gru, lstm, stream_tcn): conv(W, (x - mu) / s) + b == conv(W / s, x) + (b - sum_k,c W[o,c,k] *
    mu[c] / s[c]); exact because no zero padding enters the stem. Otherwise (2-D models, which see the bins as
    a spatial axis) a :class:`CMVNInput` wrapper. With ``subtract_window_mean`` the stem sees
    ``(x - mu) / s - mean_t((x - mu) / s) == (x - mean_t(x)) / s``: the CMVN mean cancels, so only the scale
    folds in (the wrapper is exact either way).
    """
    mu64 = np.asarray(mean, dtype=np.float64)
    sd64 = np.asarray(std, dtype=np.float64)
    n = getattr(model, "n_features", None)
    if mu64.ndim != 1 or mu64.shape != sd64.shape or (n is not None and mu64.shape[0] != int(n)):
        raise ValueError(f"CMVN has {mu64.shape} mean / {sd64.shape} std bins, the model expects {n}")
    folded = copy.deepcopy(model).eval()
    stem = _foldable_stem(folded)
    if stem is None:
        return CMVNInput(folded, mu64.astype(np.float32), sd64.astype(np.float32), eps).eval()
    scale = torch.as_tensor(1.0 / (sd64 + eps), dtype=torch.float32)
    mu = torch.as_tensor(mu64, dtype=torch.float32)
    if getattr(folded, "subtract_window_mean", False):
        mu = torch.zeros_like(mu)
    if scale.shape != (stem.in_channels,):
        raise ValueError(f"CMVN has {mu.shape[0]} bins, the model expects {stem.in_channels}")
    shape = (1, -1) + (1,) * (stem.weight.ndim - 2)  # per input channel (bin), broadcast over the kernel
    with torch.no_grad():
        w = stem.weight * scale.view(shape)
        bias = stem.bias if stem.bias is not None else torch.zeros(stem.out_channels)
        new_bias = bias - (w * mu.view(shape)).sum(dim=tuple(range(1, w.ndim)))
        stem.weight.copy_(w)
        if stem.bias is None:
            stem.bias = nn.Parameter(new_bias)
        else:
            stem.bias.copy_(new_bias)
    return folded
