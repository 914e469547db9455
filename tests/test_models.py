from __future__ import annotations

import numpy as np
import torch

from wakeword.cmvn import compute_cmvn
from wakeword.models import build_model, count_macs, count_parameters, fold_cmvn
from wakeword.params import ModelParams


def test_forward_shape_and_param_count_by_hand() -> None:
    p = ModelParams(channels=8, blocks=2, kernel_size=3)
    m = build_model(p, 10)
    assert m(torch.zeros(4, 50, 10)).shape == (4, 2)
    stem = 10 * 8 * 3 + 8 + 2 * 8  # conv weights + bias + batchnorm
    block = 8 * 3 + 2 * 8 + 8 * 8 + 2 * 8
    head = 8 * 2 + 2
    assert count_parameters(m) == stem + 2 * block + head


def test_macs_by_hand() -> None:
    m = build_model(ModelParams(channels=8, blocks=2, kernel_size=3), 10)
    t0 = (50 - 3) // 2 + 1  # stem, stride 2, no padding: 24
    t1 = t0  # block 1, stride 1
    t2 = (t1 + 2 - 3) // 2 + 1  # block 2, stride 2, padding 1: 12
    want = t0 * 8 * 10 * 3 + (t1 * 8 * 3 + t1 * 8 * 8) + (t2 * 8 * 3 + t2 * 8 * 8) + 8 * 2
    assert count_macs(m, 50) == want


def test_fold_cmvn_equals_normalising_input() -> None:
    torch.manual_seed(0)
    m = build_model(ModelParams(channels=16, blocks=2), 40).eval()
    x = np.random.default_rng(0).normal(-5, 3, size=(6, 148, 40)).astype(np.float32)
    cmvn = compute_cmvn(x, "log_mel")
    want = m(torch.from_numpy(cmvn.apply(x))).detach().numpy()
    got = fold_cmvn(m, cmvn.mean, cmvn.std)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    # the original model is untouched
    np.testing.assert_allclose(m(torch.from_numpy(cmvn.apply(x))).detach().numpy(), want)
