"""Which arithmetic a network runs in: fp32, or bf16 autocast where the hardware does bf16 natively.

``auto`` picks bf16 on CUDA (as before) and on a CPU whose instruction set has native bf16
arithmetic (AVX512-BF16 on AMD Zen 4 and later, AMX-BF16 on Intel Sapphire Rapids and later),
fp32 everywhere else: without those instructions oneDNN emulates bf16 and is slower than fp32.
The CPU's flags are read from ``/proc/cpuinfo`` (``torch.backends.cpu.get_cpu_capability()`` says
"AVX512" with or without the bf16 extension, so it cannot decide). Only the convolutions run in
bf16: normalisation statistics, the sigmoid, the TTA/ensemble mean and the loss stay fp32.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # the stronger unit first: logs name the one oneDNN uses
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Precision:
    """The chosen arithmetic (``fp32`` or ``bf16``) and why, as logged and written to provenance."""

    name: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def record(self) -> dict[str, str]:
        return {"precision": self.name, "precision_reason": self.reason}


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The instruction-set flags the kernel reports for the first CPU (empty where unreadable)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_cpu_bf16(flags: set[str] | None = None) -> str | None:
    """The flag that gives this CPU native bf16 arithmetic (``amx_bf16`` where both are present), or None."""
    found = cpu_flags() if flags is None else flags
    return next((f for f in NATIVE_BF16_FLAGS if f in found), None)


def isa_record() -> dict:
    """What PyTorch dispatches to and the CPU flags that decide ``auto`` (for benchmarks and logs)."""
    flags = cpu_flags()
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "flags": sorted(f for f in flags if f in wanted), "native_bf16": native_cpu_bf16(flags)}


def resolve_precision(requested: str, device: torch.device, flags: set[str] | None = None) -> Precision:
    """``auto``/``fp32``/``bf16`` on ``device`` -> the precision used and the reason for it."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        reason = "requested"
        if requested == "bf16" and device.type == "cpu" and native_cpu_bf16(flags) is None:
            reason = "requested (this CPU has no native bf16: emulated, slower than fp32)"
        return Precision(requested, reason)
    if device.type == "cuda":
        return Precision("bf16", "auto: CUDA")
    if device.type != "cpu":
        return Precision("fp32", f"auto: {device.type}")
    flag = native_cpu_bf16(flags)
    if flag is not None:
        return Precision("bf16", f"auto: CPU has native bf16 ({flag})")
    return Precision("fp32", "auto: CPU has no native bf16 (no avx512_bf16 or amx_bf16)")


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """bf16 autocast on ``device`` when ``precision`` is bf16; nothing otherwise (fp32 unchanged)."""
    if precision.bf16:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
