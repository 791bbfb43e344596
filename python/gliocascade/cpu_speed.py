"""How a network is run on each device: the fastest correct path on CPU, bf16 autocast on CUDA.

On CPU the 3D convolutions dominate. oneDNN runs them markedly faster with channels-last
(NDHWC) activations and weights than in the default layout, with the same fp32 arithmetic.
PyTorch's channels-last GroupNorm kernel on CPU, however, accumulates its statistics so
inexactly that on whole-brain volumes (millions of voxels per group) normalised values are off
by ~5e-3 and the cascade's probabilities by more than 1e-3. The channels-last path therefore
swaps GroupNorm for :class:`AccurateGroupNorm` (same parameters, same state dict), whose
per-channel statistics come from two float32 passes and are combined per group in float64.
In bf16 (see :mod:`precision`: chosen where the CPU has native bf16) the convolutions run under
autocast; the statistics of :class:`AccurateGroupNorm` are still taken in float32 from the bf16
activations, and the network's sigmoid runs in float32.
Whole-brain activations are hundreds of MB each; glibc maps and unmaps every such buffer, so each
new one page-faults in page by page. :func:`reuse_freed_memory` keeps freed memory in the heap
instead; with it and in-place activations the non-convolution share of a forward fell from ~35 %
to ~13 %.
On CUDA, bf16 autocast halves memory traffic and cuDNN autotuning picks the fastest convolution
per input shape (measured on an H100: bf16 1.32x fp32, autotuning a further 1.10x; channels-last
was slower there, so CUDA keeps the default layout).
"""
from __future__ import annotations

import ctypes
import logging

import torch
from torch import nn

from .inference import Runner, stage2_probabilities
from .precision import Precision, resolve_precision

log = logging.getLogger(__name__)

CPU_MODES = ("channels_last", "eager")


class AccurateGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics stay exact to float32 rounding in any memory layout.

    Per-channel mean and variance (two float32 passes) are pooled per group with the law of total
    variance in float64, then applied as one per-channel scale and shift (keeps the layout).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            return self._reduced_precision_forward(x)
        n, c = x.shape[:2]
        dims = tuple(range(2, x.dim()))
        # Two passes (mean, then mean squared deviation): exact to float32 rounding and 2-4x
        # faster than torch.var_mean's Welford kernel on channels-last volumes.
        mean_c = x.mean(dim=dims, keepdim=True)
        var_c = (x - mean_c).square_().mean(dim=dims)
        scale, shift = self._scale_shift(mean_c.view(n, c), var_c, x.device)
        shape = (n, c) + (1,) * len(dims)
        return torch.addcmul(shift.to(x.dtype).view(shape), x, scale.to(x.dtype).view(shape))

    def _scale_shift(self, mean_c: torch.Tensor, var_c: torch.Tensor, device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (n, c) float64 scale and shift from per-channel mean and variance."""
        n, c = mean_c.shape
        g = self.num_groups
        mean_c, var_c = mean_c.double().view(n, g, -1), var_c.double().view(n, g, -1)
        mean_g = mean_c.mean(-1, keepdim=True)
        var_g = (var_c + (mean_c - mean_g) ** 2).mean(-1, keepdim=True)
        rstd = (var_g + self.eps).rsqrt().expand(n, g, c // g).reshape(n, c)
        mean = mean_g.expand(n, g, c // g).reshape(n, c)
        weight = self.weight.double() if self.affine else torch.ones(c, dtype=torch.float64, device=device)
        bias = self.bias.double() if self.affine else torch.zeros(c, dtype=torch.float64, device=device)
        scale = rstd * weight
        return scale, bias - mean * scale

    def _reduced_precision_forward(self, x: torch.Tensor) -> torch.Tensor:
        """bf16 activations (autocast): float32 statistics, one bf16 temporary, bf16 output.

        The deviations from the channel mean rounded to bf16 are kept; the variance is their mean
        square (accumulated in float32) corrected exactly for that rounding of the mean, and the
        output is ``deviation * scale + shift'`` so no large term cancels in bf16.
        """
        n, c = x.shape[:2]
        dims = tuple(range(2, x.dim()))
        shape = (n, c) + (1,) * len(dims)
        count = x[0, 0].numel()
        mean_c = x.mean(dim=dims, keepdim=True, dtype=torch.float32)
        centre = mean_c.to(x.dtype)
        deviation = x - centre
        # a bf16 square summed in float32: linalg.vector_norm(dtype=float32) took 28 % of a whole-brain forward
        mean_square = torch.mul(deviation, deviation).sum(dim=dims, dtype=torch.float32).double() / count
        offset = (mean_c.double() - centre.double()).view(n, c)  # true mean minus the rounded one
        scale, shift = self._scale_shift(mean_c.view(n, c), mean_square.view(n, c) - offset ** 2, x.device)
        shift = shift + (centre.double().view(n, c)) * scale  # y = (x - centre) * scale + shift'
        return deviation.mul_(scale.to(x.dtype).view(shape)).add_(shift.to(x.dtype).view(shape))


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


def reuse_freed_memory() -> bool:
    """Ask glibc to serve large buffers from the heap and keep freed memory for reuse.

    Process-wide and harmless for a process that runs whole-brain passes one after another (its
    memory stays at the peak it needs anyway). Returns False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
    except (OSError, AttributeError):
        return False


def _swap_group_norm(net: nn.Module, accurate: bool) -> None:
    """Switch GroupNorm layers between PyTorch's kernel and :class:`AccurateGroupNorm`, in place."""
    for m in net.modules():
        if accurate and type(m) is nn.GroupNorm:
            m.__class__ = AccurateGroupNorm
        elif not accurate and type(m) is AccurateGroupNorm:
            m.__class__ = nn.GroupNorm


def to_channels_last(net: nn.Module) -> nn.Module:
    """Convert a network's 5D weights to channels-last in place (values unchanged)."""
    return net.to(memory_format=torch.channels_last_3d)


def _channels_last_runner(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x.contiguous(memory_format=torch.channels_last_3d))["stage2"]
    return out.float().contiguous()


def _cuda_bf16_runner(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = net(x)["stage2"]
    return out.float()


def _cpu_bf16_runner(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return _channels_last_runner(net, x)


def _cpu_bf16_eager_runner(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return stage2_probabilities(net, x)


def prepare(networks: list[nn.Module], device: torch.device, cpu_mode: str = "channels_last",
            precision: str | Precision = "fp32") -> Runner:
    """Put ``networks`` on ``device`` in the fastest layout and return the matching runner.

    ``cpu_mode`` ``eager`` keeps PyTorch's default layout (the reference path). ``precision``
    (``fp32``, the default; ``auto``; ``bf16``; or a resolved :class:`~.precision.Precision`) selects bf16
    autocast; ``auto`` means bf16 on CUDA and on CPUs with native bf16 (see :mod:`precision`).
    """
    if cpu_mode not in CPU_MODES:
        raise ValueError(f"cpu_mode must be one of {CPU_MODES}")
    chosen = precision if isinstance(precision, Precision) else resolve_precision(precision, device)
    for net in networks:
        net.to(device).eval()
        _swap_group_norm(net, accurate=False)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        return _cuda_bf16_runner if chosen.bf16 else stage2_probabilities
    reuse_freed_memory()
    if cpu_mode == "channels_last":
        for net in networks:
            to_channels_last(net)
            _swap_group_norm(net, accurate=True)
        return _cpu_bf16_runner if chosen.bf16 else _channels_last_runner
    for net in networks:
        net.to(memory_format=torch.contiguous_format)
    return _cpu_bf16_eager_runner if chosen.bf16 else stage2_probabilities
