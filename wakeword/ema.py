"""Exponential moving average of a model's weights (SPEC 5: decay 0.999, 0.9995 for the last 10 epochs).

The shadow copy covers every floating-point entry of the model's state (parameters *and* BatchNorm running
statistics), keyed by the plain names a model without quantization-aware-training parametrizations has
(:func:`wakeword.qat.plain_state_dict`), so the averaged weights load straight into a freshly built model and
survive QAT being switched on mid-training. Integer entries (``num_batches_tracked``) are copied, not averaged.
"""

from __future__ import annotations

import torch
from torch import nn

from wakeword.params import EMAParams
from wakeword.qat import plain_state_dict


def ema_decay(step: int, epoch: int, epochs: int, p: EMAParams) -> float:
    """Decay used after optimizer step ``step`` (0-based) in ``epoch`` (0-based) of ``epochs``.

    ``final_decay`` during the last ``final_epochs`` epochs, else ``decay``; warmed up as
    ``min(decay, (1 + step) / (10 + step))`` so the average is not dominated by the random initialisation.
    """
    base = p.final_decay if epoch >= epochs - p.final_epochs else p.decay
    return min(base, (1.0 + step) / (10.0 + step))


class EMA:
    """``shadow = decay * shadow + (1 - decay) * current`` for every float state entry, after each step."""

    def __init__(self, model: nn.Module) -> None:
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone().float() if v.is_floating_point() else
                                                v.detach().clone() for k, v in plain_state_dict(model).items()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        current = plain_state_dict(model)
        if current.keys() != self.shadow.keys():
            raise ValueError("EMA: the model's state entries changed since the average started")
        for k, v in current.items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(decay).add_(v.detach().to(s.device, s.dtype), alpha=1.0 - decay)
            else:
                s.copy_(v.detach())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged state (plain names), ready for ``model.load_state_dict`` of a fresh model."""
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state.keys() != self.shadow.keys():
            raise ValueError("EMA state does not match the model")
        for k, v in state.items():
            self.shadow[k].copy_(v)
