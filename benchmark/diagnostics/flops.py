"""FLOPs of one training step, and how close a step comes to the hardware (model FLOPs utilisation).

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` over a real step (forward, backward and the
method's no-grad teacher passes; a multiply-add is 2 FLOPs). MFU divides the achieved rate by the device's
dense peak for the precision the convolutions run in: bf16 under autocast; on CUDA without autocast, tf32
where cuDNN may use it (PyTorch's default on Ampere and later) and fp32 otherwise. Peaks are the vendors'
datasheet figures without sparsity; a device not in the table (any CPU) gets no MFU unless a peak is given.
"""
from __future__ import annotations

import platform
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense peak TFLOP/s per precision. Order matters: the first name contained in the device name wins, so the
# variants (PCIe, NVL) come before their family name.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0}),
    ("H200 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),      # SXM
    ("H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),      # SXM
    ("GH200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    ("A30", {"fp32": 10.3, "tf32": 82.0, "bf16": 165.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0}),
    ("L40", {"fp32": 90.5, "tf32": 90.5, "bf16": 181.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
    ("RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2}),
    ("RTX A6000", {"fp32": 38.7, "tf32": 77.4, "bf16": 154.8}),
    ("V100", {"fp32": 15.7}),
)


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs performed while `step()` runs (eager ops; a compiled graph is not seen op by op)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def precision_of(device: torch.device, autocast_bf16: bool) -> str:
    """The precision the step's convolutions and matmuls run in, as a key of PEAK_TFLOPS."""
    if autocast_bf16:
        return "bf16"
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32 and torch.cuda.get_device_capability(device)[0] >= 8:
        return "tf32"
    return "fp32"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def parse_peak(text: str) -> dict[str, float]:
    """`--peak-tflops`: one number for every precision, or `bf16=989,tf32=495`."""
    text = text.strip()
    try:
        if "=" not in text:
            return {"*": float(text)}
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return {key.strip(): float(value) for key, value in pairs}
    except ValueError:
        raise ValueError(f"--peak-tflops must be a number or precision=number pairs (bf16=989,tf32=495), "
                         f"got {text!r}") from None


def peak_tflops(name: str, precision: str, override: dict[str, float] | None = None) -> float | None:
    """Dense peak of device `name` at `precision`: the override first, then the table; None when unknown."""
    override = override or {}
    if precision in override or "*" in override:
        return override.get(precision, override.get("*"))
    lowered = name.lower()
    for family, peaks in PEAK_TFLOPS:
        if family.lower() in lowered:
            return peaks.get(precision)
    return None


def mfu(flops_per_step: float | None, step_s: float, peak: float | None) -> float | None:
    """Achieved FLOP rate over the peak (0-1); None when either is unknown."""
    if not flops_per_step or not peak or step_s <= 0:
        return None
    return flops_per_step / step_s / (peak * 1e12)
