from __future__ import annotations

import numpy as np
import torch

from wakeword.cmvn import compute_cmvn
from wakeword.models import build_model, count_macs, count_parameters, fold_cmvn
from wakeword.params import ModelParams


def test_forward_shape_and_param_count_by_hand() -> None:
    p = ModelParams(arch="ds_tcn", ds_tcn={"channels": 8, "blocks": 2, "kernel_size": 3})
    m = build_model(p, 10, 50)
    assert m(torch.zeros(4, 50, 10)).shape == (4, 2)
    stem = 10 * 8 * 3 + 8 + 2 * 8  # conv weights + bias + batchnorm
    block = 8 * 3 + 2 * 8 + 8 * 8 + 2 * 8
    head = 8 * 2 + 2
    assert count_parameters(m) == stem + 2 * block + head


def test_macs_by_hand() -> None:
    m = build_model(ModelParams(arch="ds_tcn", ds_tcn={"channels": 8, "blocks": 2, "kernel_size": 3}), 10, 50)
    t0 = (50 - 3) // 2 + 1  # stem, stride 2, no padding: 24
    t1 = t0  # block 1, stride 1
    t2 = (t1 + 2 - 3) // 2 + 1  # block 2, stride 2, padding 1: 12
    want = t0 * 8 * 10 * 3 + (t1 * 8 * 3 + t1 * 8 * 8) + (t2 * 8 * 3 + t2 * 8 * 8) + 8 * 2
    assert count_macs(m, 50) == want


def test_fold_cmvn_equals_normalising_input() -> None:
    torch.manual_seed(0)
    m = build_model(ModelParams(arch="ds_tcn", ds_tcn={"channels": 16, "blocks": 2}), 40, 50).eval()
    x = np.random.default_rng(0).normal(-5, 3, size=(6, 148, 40)).astype(np.float32)
    cmvn = compute_cmvn(x, "log_mel")
    want = m(torch.from_numpy(cmvn.apply(x))).detach().numpy()
    got = fold_cmvn(m, cmvn.mean, cmvn.std)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    # the original model is untouched
    np.testing.assert_allclose(m(torch.from_numpy(cmvn.apply(x))).detach().numpy(), want)


def test_macs_by_hand_tiny_conv_and_res8() -> None:
    tiny = build_model(ModelParams(arch="tiny_conv", tiny_conv={"filters": 3, "kernel_time": 4, "kernel_freq": 3,
                                                                "stride": 2}), 10, 20)
    t_out, f_out = (20 - 4) // 2 + 1, (10 - 3) // 2 + 1  # 9 x 4, unpadded
    conv = 3 * t_out * f_out * (4 * 3)
    assert count_macs(tiny, 20) == conv + (3 * t_out * f_out) * 2  # + head on the flattened map
    res8 = build_model(ModelParams(arch="resnet", resnet={"variant": "res8", "channels": 4}), 12, 16)
    positions = (16 // 4) * (12 // 3)  # the input is pooled 4x3 first: 4 x 4
    conv0 = 4 * positions * 9
    blocks = 3 * 2 * (4 * positions * 9 * 4)  # 3 blocks of two 3x3 convs, 4 -> 4 channels, padded
    assert count_macs(res8, 16) == conv0 + blocks + 4 * 2


def test_macs_and_parameters_by_hand_gru_lstm() -> None:
    rnn = {"hidden_size": 4, "stem_channels": 6, "stem_stride": 2, "layers": 1, "bidirectional": False}
    gru = build_model(ModelParams(arch="gru", rnn=rnn), 10, 20)
    steps = (20 - 4) // 2 + 1  # stem kernel = stride + 2 = 4, unpadded: 9 steps
    stem = 6 * steps * (10 * 4)
    # input projections of all steps at once (r|z: 8, n: 4); recurrent ones from step 2 on (h0 = 0)
    gru_macs = stem + steps * 6 * (8 + 4) + (steps - 1) * 4 * (8 + 4) + 4 * 2
    assert count_macs(gru, 20) == gru_macs
    stem_params = 10 * 6 * 4 + 2 * 6  # conv (no bias) + batchnorm
    assert count_parameters(gru) == stem_params + (6 * 8 + 8) + (6 * 4 + 4) + 4 * 8 + 4 * 4 + (4 * 2 + 2)
    lstm = build_model(ModelParams(arch="lstm", rnn=rnn), 10, 20)
    assert count_macs(lstm, 20) == stem + steps * 6 * 16 + (steps - 1) * 4 * 16 + 4 * 2
    assert count_parameters(lstm) == stem_params + (6 * 16 + 16) + 4 * 16 + (4 * 2 + 2)


def test_macs_by_hand_stream_tcn_and_tcn() -> None:
    p = ModelParams(arch="stream_tcn", stream_tcn={"channels": 4, "kernel_size": 2, "dilations": [1, 2],
                                                   "stem_stride": 2})
    m = build_model(p, 10, 30)
    # receptive field: (1 + 2) stem steps of 2 frames after the first + stem kernel 3 = 9 frames; the window is
    # cropped to them: 4 stem outputs, block 1 (d=1) leaves 3, block 2 (d=2) leaves 1
    assert m.receptive_field_frames == 9
    stem = 4 * 4 * (10 * 3)
    block1 = 4 * 3 * 2 + 4 * 3 * 4  # depthwise (k=2, 1 in-channel per group) + pointwise
    block2 = 4 * 1 * 2 + 4 * 1 * 4
    assert count_macs(m, 30) == stem + block1 + block2 + 4 * 2
    tcn = build_model(ModelParams(arch="tcn", tcn={"channels": 4, "levels": 2, "kernel_size": 3}), 10, 21)
    steps = (21 - 3) // 2 + 1  # stem: 10 steps
    # padded once by the stack's context, 2*(3-1)*(1+2) = 12 steps; each unpadded conv then shortens it by
    # (k-1)*d: block 1 (d=1) 22 -> 20 -> 18, block 2 (d=2) 18 -> 14 -> 10 = the stem's length again
    conv = 4 * 4 * 3  # per output step
    assert count_macs(tcn, 21) == 4 * steps * 10 * 3 + conv * (20 + 18 + 14 + 10) + 4 * 2
