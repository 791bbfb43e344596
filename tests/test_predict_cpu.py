"""The optimised CPU path: accurate GroupNorm in channels-last, same results as the eager fp32 path."""
from __future__ import annotations

import platform

import pytest
import torch
from torch import nn

from gliocascade.cpu_speed import AccurateGroupNorm, prepare


def test_accurate_group_norm_matches_float64():
    torch.manual_seed(0)
    gn = nn.GroupNorm(4, 8)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-1, 1)
    x = torch.randn(2, 8, 80, 72, 64) * 3 + 5
    x[:, :4] += 20  # groups with a large offset stress the statistics
    with torch.no_grad():
        ref = nn.functional.group_norm(x.double(), 4, gn.weight.double(), gn.bias.double(), gn.eps).float()
        acc = AccurateGroupNorm(4, 8)
        acc.load_state_dict(gn.state_dict())
        out = acc(x.contiguous(memory_format=torch.channels_last_3d))
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert (out - ref).abs().max() < 2e-5


def test_prepare_switches_and_restores_layers():
    from gliocascade.configs import load_config
    from gliocascade.networks import build_cascade

    torch.manual_seed(1)
    net = build_cascade(load_config("tiny")).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(1, 4, 16, 16, 16)
    eager_run = prepare([net], torch.device("cpu"), cpu_mode="eager")
    with torch.inference_mode():
        ref = eager_run(net, x)
    fast_run = prepare([net], torch.device("cpu"), cpu_mode="channels_last")
    assert any(type(m) is AccurateGroupNorm for m in net.modules())
    with torch.inference_mode():
        fast = fast_run(net, x)
    assert (fast - ref).abs().max() < 1e-4
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    prepare([net], torch.device("cpu"), cpu_mode="eager")
    assert not any(type(m) is AccurateGroupNorm for m in net.modules())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_freed_memory_is_kept_for_reuse_on_glibc():
    """Both mallopt settings are accepted (a wrong parameter number would be refused with 0)."""
    from gliocascade.cpu_speed import reuse_freed_memory

    assert reuse_freed_memory() is True
