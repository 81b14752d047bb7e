"""Which Lightning precision a training run uses: ``--precision auto`` picks bf16 where the hardware has it.

bf16 mixed precision (autocast; fp32 weights, optimiser and loss) trains the phonon model faster
than fp32 on a CPU with native bf16 instructions (AVX512-BF16 or AMX), and is the standard choice on
current GPUs. Where the instructions are missing bf16 is emulated and slower than fp32, so ``auto``
falls back to ``32-true``. The speed and accuracy comparisons are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from ..errors import OptionError

PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "64-true", "bf16-true")


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX tiles)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes: be conservative
        return False


def uses_cuda(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` choice lands on a CUDA device."""
    import torch

    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_precision(precision: str, accelerator: str) -> str:
    """``precision`` unless it is ``auto``: then ``bf16-mixed`` on bf16-capable hardware, else ``32-true``."""
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    import torch

    if uses_cuda(accelerator):
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    else:
        native = cpu_has_native_bf16()
    return "bf16-mixed" if native else "32-true"
