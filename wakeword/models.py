"""Model architectures. Input: a window of log-mel frames ``(batch, frames, n_mels)``; output: 2 logits
(index 1 = the wake phrase).

``ds_tcn`` is a 1-D depthwise-separable temporal CNN: mel bins are channels, time is the conv axis. The
first conv is unpadded so that per-bin CMVN folds into it exactly (:func:`fold_cmvn`), which lets the
deployed int8 model take raw log-mel input.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from wakeword.params import ModelParams


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


class DSTCN(nn.Module):
    def __init__(self, n_features: int, channels: int, blocks: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.n_features = n_features
        self.stem = nn.Conv1d(n_features, channels, 3, stride=2, padding=0, bias=True)
        self.stem_bn = nn.BatchNorm1d(channels)
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(
            *[DSBlock(channels, kernel_size, 2 if i % 2 == 1 else 1, dropout) for i in range(blocks)]
        )
        self.head = nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, F, T)
        x = self.act(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        x = x.mean(dim=2)
        return self.head(x)


def build_model(params: ModelParams, n_features: int) -> nn.Module:
    if params.arch == "ds_tcn":
        return DSTCN(n_features, params.channels, params.blocks, params.kernel_size, params.dropout)
    raise ValueError(f"model.arch: unknown architecture {params.arch!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, window_frames: int) -> int:
    """Multiply-accumulates of one forward pass on one window (conv and linear layers)."""
    macs = 0

    def conv_hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Conv1d)
        k = mod.kernel_size[0] * (mod.in_channels // mod.groups)
        macs += int(out.shape[1] * out.shape[2] * k)

    def linear_hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Linear)
        macs += int(mod.in_features * mod.out_features)

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv1d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    n_features = model.n_features
    with torch.no_grad():
        model(torch.zeros(1, window_frames, n_features))
    model.train(was_training)
    for h in handles:
        h.remove()
    return macs


def fold_cmvn(model: nn.Module, mean: np.ndarray, std: np.ndarray, eps: float = 1e-8) -> nn.Module:
    """Return a copy of ``model`` that takes raw (un-normalised) features.

    conv(W, (x - mu) / s) + b == conv(W / s, x) + (b - sum_k,c W[o,c,k] * mu[c] / s[c]); exact because the
    stem conv is unpadded.
    """
    folded = copy.deepcopy(model).eval()
    stem = getattr(folded, "stem", None)
    if not isinstance(stem, nn.Conv1d) or stem.padding != (0,):
        raise ValueError("fold_cmvn needs a model whose first layer is an unpadded Conv1d named 'stem'")
    scale = torch.as_tensor(1.0 / (np.asarray(std, dtype=np.float64) + eps), dtype=torch.float32)
    mu = torch.as_tensor(np.asarray(mean, dtype=np.float64), dtype=torch.float32)
    if scale.shape != (stem.in_channels,) or mu.shape != (stem.in_channels,):
        raise ValueError(f"CMVN has {mu.shape[0]} bins, the model expects {stem.in_channels}")
    with torch.no_grad():
        w = stem.weight * scale[None, :, None]
        bias = stem.bias if stem.bias is not None else torch.zeros(stem.out_channels)
        new_bias = bias - (w * mu[None, :, None]).sum(dim=(1, 2))
        stem.weight.copy_(w)
        if stem.bias is None:
            stem.bias = nn.Parameter(new_bias)
        else:
            stem.bias.copy_(new_bias)
    return folded
