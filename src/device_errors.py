"""Sticky device errors: CUDA failures after which every later call in this process fails too.

After an illegal memory access, a device-side assert, an uncorrectable ECC error or a kernel launch
failure, the CUDA context is corrupted: every later CUDA call raises the same error at once. Treating it
like a per-pair failure would mark every remaining pair failed in seconds. Instead the pipeline stops the
stage (`StickyDeviceError`, exit code 1, one clear message) before recording the failing batch, so its
pairs stay pending and `--resume` redoes them once the GPU (or the code) is fixed.

`is_sticky_device_error(exc)` recognises them by the CUDA runtime's error strings (cudaGetErrorString:
"an illegal memory access was encountered", "device-side assert triggered", "uncorrectable ECC error
encountered", "unspecified launch failure", ...), also inside the text of an error a model recorded for
a pair and in the exception's `__cause__` / `__context__` chain. Out-of-memory is NOT sticky (the
batcher frees memory and halves the batch).

NOT RUN ON A GPU: the strings are those of the CUDA runtime and of torch's `torch.AcceleratorError`
("CUDA error: ..."); the tests raise them from a fake model on CPU.
"""

from __future__ import annotations

import re

# cudaGetErrorString texts of the errors that corrupt the CUDA context (CUDA runtime API, "Error Handling":
# cudaErrorIllegalAddress, cudaErrorAssert, cudaErrorECCUncorrectable, cudaErrorLaunchFailure,
# cudaErrorIllegalInstruction, cudaErrorMisalignedAddress, cudaErrorInvalidAddressSpace, cudaErrorInvalidPc,
# cudaErrorHardwareStackError, cudaErrorNvlinkUncorrectable), plus the driver's "GPU is lost" wording.
STICKY_PATTERNS = (
    "illegal memory access",
    "device-side assert",
    "uncorrectable ecc error",
    "ecc error encountered",
    "unspecified launch failure",
    "illegal instruction was encountered",
    "misaligned address",
    "invalid address space",
    "invalid program counter",
    "hardware stack error",
    "uncorrectable nvlink error",
    "gpu has fallen off the bus",
    "cuda error: unknown error",
)
_STICKY_RE = re.compile("|".join(re.escape(p) for p in STICKY_PATTERNS), re.IGNORECASE)


class StickyDeviceError(RuntimeError):
    """A CUDA error that leaves the device unusable for this process; the stage stops (exit code 1)."""


def sticky_text(text: str | None) -> str | None:
    """The sticky-error phrase found in `text`, or None."""
    if not text:
        return None
    match = _STICKY_RE.search(str(text))
    return match.group(0).lower() if match else None


def is_sticky_device_error(exc: BaseException | str | None) -> bool:
    """True for a sticky CUDA error (see the module doc): an exception (its message, or that of its
    `__cause__` / `__context__`, up to 5 deep) or an error text a model recorded."""
    if exc is None:
        return False
    if isinstance(exc, str):
        return sticky_text(exc) is not None
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, StickyDeviceError) or sticky_text(f"{type(exc).__name__}: {exc}"):
            return True
        exc, seen = (exc.__cause__ or exc.__context__), seen + 1
    return False


def sticky_message(stage: str, where: str, error: str, pending: int) -> str:
    """The one message the user sees when a stage stops on a sticky error."""
    return (f"{stage} stopped: a CUDA error that leaves the GPU unusable for this process ({sticky_text(error)}) "
            f"at {where}: {error}. The {pending} pair(s) of that batch were not recorded and stay pending with "
            "every pair after them. Check the GPU (nvidia-smi; `dmesg` for Xid / ECC errors; CUDA_LAUNCH_BLOCKING=1 "
            "to locate a device-side assert), then continue with `python main.py --resume <run folder>`.")


def stop_on_sticky(stage: str, labels: list[str], results: list, result_errors: bool = True) -> None:
    """Raise `StickyDeviceError` when a batch's results hold a sticky error: an Exception result, or (with
    `result_errors`) a result whose `.error` text names one (editors record per-pair errors as text).
    Called by the pipeline BEFORE it records the batch, so the batch's pairs stay pending."""
    for label, res in zip(labels, results):
        if isinstance(res, BaseException):
            text = f"{type(res).__name__}: {res}"
            if is_sticky_device_error(res):
                raise StickyDeviceError(sticky_message(stage, label, text, len(results))) from res
        elif result_errors and is_sticky_device_error(getattr(res, "error", None)):
            raise StickyDeviceError(sticky_message(stage, label, str(res.error), len(results)))


__all__ = ["STICKY_PATTERNS", "stop_on_sticky", "StickyDeviceError", "is_sticky_device_error", "sticky_text", "sticky_message"]
