"""What the machine can do, read without importing torch: a GPU or not, native bf16 on the CPU.

`dsforge train` picks its CPU compute dtype from this (float32 where bf16 would be emulated:
measured on a 2-core AVX2 EPYC, a forward+backward pass of 4x200 tokens of SmolLM2-135M took 9.5 s
in float32 and 200.8 s in bfloat16), and dsforge.servers picks vLLM's CPU flags.
"""

from __future__ import annotations

import os
import platform
import shutil

# x86 flags of instructions that compute in bf16 (AVX512-BF16: Cooper Lake, Zen 4+; AMX-BF16: Sapphire
# Rapids+); arm64 lists "bf16" in /proc/cpuinfo's Features (ARMv8.6 BF16 extension)
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ARM_BF16_FLAGS = ("bf16",)


def has_gpu() -> bool:
    """Whether an NVIDIA GPU is visible (nvidia-smi on PATH or /dev/nvidia0), without importing torch."""
    return shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (x86 `flags`, arm `Features`); `cpuinfo` replaces the file's
    text (tests). Empty set when the file cannot be read (macOS, Windows)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def native_bf16(flags: set[str] | None = None, machine: str | None = None) -> tuple[bool, str]:
    """(whether the CPU computes bf16 natively, why in a few words), from `flags` (default: cpu_flags())
    and `machine` (default: platform.machine()). Unreadable flags count as no native bf16."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    wanted = ARM_BF16_FLAGS if machine in ("aarch64", "arm64") else X86_BF16_FLAGS
    have = [f for f in wanted if f in flags]
    if have:
        return True, f"CPU has {'+'.join(have)}"
    if not flags:
        return False, "CPU flags unreadable (no /proc/cpuinfo)"
    return False, f"CPU without native bf16: no {'/'.join(wanted)}"
