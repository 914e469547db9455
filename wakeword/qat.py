"""Quantization-aware training (SPEC 5): fake-quantized weights and activations from a start epoch.

Weights of every ``Conv1d``/``Conv2d``/``Linear`` go through an int8 *symmetric* fake quantizer (per output
channel by default, scale = max|w| / 127, the scheme the int8 export uses) registered as a
``torch.nn.utils.parametrize`` parametrization, so the optimizer keeps updating the float weights and the
gradient passes straight through the rounding. The output of each of those layers goes through an int8
affine ``FakeQuantize`` with a moving-average min/max observer (registered as the submodule ``qat_act`` and
applied by a forward hook). BatchNorm is not folded during QAT; the export folds it later, so QAT here
approximates, not reproduces, the deployed arithmetic.

:func:`plain_state_dict` maps a (possibly) parametrized model's state back to the names of a plain model and
drops the observers, which is what checkpoints and the EMA store.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
from torch.nn.utils import parametrize

QUANT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_PARAM_SUFFIX = "parametrizations.weight.original"


class WeightFakeQuant(nn.Module):
    """int8 symmetric fake quantization of a weight tensor (levels -127..127), per output channel or tensor."""

    def __init__(self, per_channel: bool) -> None:
        super().__init__()
        self.per_channel = per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            amax = w.detach().abs().amax(dim=tuple(range(1, w.ndim))) if w.ndim > 1 else w.detach().abs()
            scale = torch.clamp(amax / 127.0, min=1e-8).float()
            zero = torch.zeros(scale.shape, dtype=torch.int32, device=w.device)
            return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)
        scale = torch.clamp(w.detach().abs().max() / 127.0, min=1e-8).float().reshape(1)
        return torch.fake_quantize_per_tensor_affine(w, scale, torch.zeros(1, dtype=torch.int32, device=w.device),
                                                     -127, 127)


def _act_fake_quant() -> FakeQuantize:
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                        qscheme=torch.per_tensor_affine, reduce_range=False)


def _apply_act(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
    return mod.qat_act(out)  # type: ignore[operator]


def enable_qat(model: nn.Module, per_channel: bool = True) -> int:
    """Switch fake quantization on in place; returns the number of layers changed. Idempotent."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, QUANT_LAYERS) and not is_qat(mod):
            parametrize.register_parametrization(mod, "weight", WeightFakeQuant(per_channel))
            mod.qat_act = _act_fake_quant().to(mod.weight.device)
            mod.register_forward_hook(_apply_act)
            n += 1
    return n


def is_qat(module: nn.Module) -> bool:
    """Whether ``module`` (a layer) or any layer inside it has fake quantization switched on."""
    return any(parametrize.is_parametrized(m, "weight") and hasattr(m, "qat_act") for m in module.modules())


def freeze_observers(model: nn.Module) -> None:
    """Stop the activation observers from updating (evaluation copies)."""
    for mod in model.modules():
        if isinstance(mod, FakeQuantize):
            mod.disable_observer()


def observer_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The activation fake-quantizers' state (scales, zero points, observed ranges)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".qat_act." in f".{k}"}


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` under the names of the plain (non-QAT) model, without the observers."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if ".qat_act." in f".{k}":
            continue
        out[k.replace(_PARAM_SUFFIX, "weight")] = v
    return out
