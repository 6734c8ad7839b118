"""CPU numerics pinned to one instruction set (`pinned`), or made independent of the CPU model too (`portable`).

Training from scratch is chaotic: a different float summation order sends it down another path. On the CPU the
order depends on the instruction set the libraries dispatch to: oneDNN (convolutions) picks other kernels with
AVX-512 than with AVX2, ATen's vectorised kernels and MKL likewise, and inductor's generated C++ vectorises to
the host's SIMD width. `train.cpu_numerics: pinned` (the default) caps all of them at AVX2, which every x86-64
CPU of the last decade has; `native` lets each library use the host's best.

The pin fixes the instruction set, not every choice a library makes by CPU model: an AMD EPYC and an Intel Xeon
host, both pinned, gave other digits (README). MKL honours `MKL_CBWR=AVX2` only on Intel CPUs (elsewhere it
falls back to its automatic branch), and oneDNN and NNPACK size their loop blocking by the host's caches.
`portable` therefore trains without either (convolutions on ATen's im2col over MKL's GEMM), with MKL on its
COMPATIBLE branch, the one MKL keeps on every vendor's x86-64 CPU, and ATen at AVX2 as pinned
(docs/performance.md, "CPU numerics across CPU models", gives the evidence and the cost).

The libraries read these settings once, at their first use, so they are set before torch runs anything: when
the `benchmark` package is imported (every entry point and every test imports it first) and again, with the
run's own config, before training starts (`apply`). A user's stricter cap (a host below AVX2, or an emulation
of one) is kept, and recorded. GPU runs are left untouched; their cuDNN switches are recorded.

This module imports nothing heavy: it must run before torch.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

MODES = ("pinned", "portable", "native")
PINNED_ISA = "AVX2"
# Environment variables each library reads at its first use, with their values from least to most capable.
# The pin is AVX2 in each library's spelling; a user's value below it (a host without AVX2, or an emulation of
# one) is kept, since such a host cannot reach the pin anyway.
ISA_ORDERS = {
    # oneDNN: convolutions, pooling, batch norm on the CPU
    "ONEDNN_MAX_CPU_ISA": ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                           "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX",
                           "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512",
                           "AVX10_2_512_AMX_2", "DEFAULT", "ALL"),
    # MKL's conditional numerical reproducibility: the code path of its matrix products
    "MKL_CBWR": ("COMPATIBLE", "SSE2", "SSSE3", "SSE4_1", "SSE4_2", "AVX", "AVX2", "AVX512_MIC", "AVX512",
                 "AVX512_E1", "AVX512_E2", "AVX512_E3", "AVX512_E4", "AUTO"),
    # ATen's own vectorised kernels (elementwise ops, reductions)
    "ATEN_CPU_CAPABILITY": ("default", "avx2", "avx512"),
}
# The pin in each library's spelling.
PINS = {name: next(v for v in order if v.upper() == PINNED_ISA) for name, order in ISA_ORDERS.items()}
# What each mode sets. Portable keeps oneDNN's cap (oneDNN is off, but a cap costs nothing should a kernel
# still reach it) and moves MKL to COMPATIBLE: SSE2 without the approximate reciprocals, on any vendor's CPU.
MODE_PINS = {"pinned": PINS, "portable": {**PINS, "MKL_CBWR": "COMPATIBLE"}, "native": {}}
# mkl_cbwr_get's branch codes (oneMKL reference, "Named Constants for CNR Control"); others are shown as numbers.
MKL_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
                10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}
INDUCTOR_SIMDLEN = 256   # AVX2's vector width in bits, for torch.compile's generated C++ (train.compile)
# What this module replaced, as JSON {name: the user's value or null}; child processes inherit it.
REPLACED_VAR = "_SSSEG_NUMERICS_REPLACED"


def _ours() -> dict[str, str | None]:
    try:
        return json.loads(os.environ.get(REPLACED_VAR) or "{}")
    except ValueError:
        return {}


def _pinned_value(name: str, user_value: str | None, pin: str) -> str:
    """The pin, or the user's own value where it is stricter."""
    order = [v.upper() for v in ISA_ORDERS[name]]
    user = (user_value or "").strip().upper()
    if user in order and order.index(user) <= order.index(pin.upper()):
        return ISA_ORDERS[name][order.index(user)]
    return pin


def pin_environment(mode: str, gpu: bool = False) -> None:
    """Sets (pinned, portable) or restores (native, or a GPU run) the variables of PINS in this process's
    environment. A user's value is replaced by the mode's pin unless it is stricter; native and GPU runs get
    the user's own values back (or none)."""
    if mode not in MODES:
        raise ValueError(f"train.cpu_numerics must be one of {', '.join(MODES)}, got {mode!r}")
    pins = {} if gpu else MODE_PINS[mode]
    ours = _ours()
    for name in PINS:
        user_value = ours[name] if name in ours else os.environ.get(name)
        if name in pins:
            value = _pinned_value(name, user_value, pins[name])
            if value.upper() != (user_value or "").strip().upper():   # else the user's own, stricter value
                os.environ[name] = value
                ours[name] = user_value
        elif name in ours:
            if user_value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = user_value
            del ours[name]
    os.environ[REPLACED_VAR] = json.dumps(ours)


def apply(mode: str, device_type: str, compile_model: bool = False) -> dict:
    """Pins (or unpins) for a run about to train on `device_type`; returns what `record` records. Raises
    RuntimeError when torch already dispatched CPU kernels under other settings (too late to change them)."""
    gpu = device_type == "cuda"
    pin_environment(mode, gpu=gpu)
    if "torch" in sys.modules:
        _apply_to_torch(mode, gpu, compile_model)
    return record(mode, device_type, compile_model)


def _apply_to_torch(mode: str, gpu: bool, compile_model: bool) -> None:
    """The switches torch reads at each call, and checks of the settings it read once at its first use."""
    import torch   # never imported here: the pins must be set before torch is (see the module docstring)
    want = os.environ.get("ATEN_CPU_CAPABILITY")
    if want and torch.backends.cpu.get_cpu_capability().lower() != want.lower():
        raise RuntimeError(f"train.cpu_numerics={mode}: torch already ran CPU kernels under capability "
                           f"{torch.backends.cpu.get_cpu_capability()}; start a new process")
    portable = mode == "portable" and not gpu
    # Set both ways: a process that trains twice (the tests) must not keep the previous run's switches.
    torch.backends.mkldnn.enabled = not portable
    torch.backends.nnpack.set_flags(not portable)
    if portable and mkl_branch() not in (None, MODE_PINS[mode]["MKL_CBWR"]):
        raise RuntimeError(f"train.cpu_numerics={mode}: MKL already runs on its {mkl_branch()} branch; "
                           f"start a new process")
    if compile_model and mode != "native" and not gpu:
        import torch._inductor.config as inductor_config   # torch is loaded by now; only torch.compile runs need it
        inductor_config.cpp.simdlen = INDUCTOR_SIMDLEN


def mkl_branch(auto: bool = False) -> str | None:
    """MKL's code branch in force in this process (fixed from MKL_CBWR at MKL's first call, which this may be),
    or with `auto` the branch MKL's own dispatch picks on this CPU; None without torch's MKL (aarch64, other
    builds). Asked of libtorch_cpu's MKL service functions, the only way to see what MKL made of MKL_CBWR."""
    import ctypes   # only here: the question is asked of torch's already loaded library
    torch = sys.modules.get("torch")
    libraries = sorted(Path(torch.__file__).parent.joinpath("lib").glob("libtorch_cpu.*")) if torch else []
    try:
        library = ctypes.CDLL(str(libraries[0]))
        code = library.mkl_serv_cbwr_get_auto_branch() if auto else library.mkl_serv_cbwr_get(1)   # 1: the branch
    except (IndexError, OSError, AttributeError):
        return None
    return MKL_BRANCHES.get(code, str(code))


def cpuinfo(field: str) -> str | None:
    """The first `field: value` of /proc/cpuinfo (Linux), or None where there is none."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), None)


def host_isa() -> str:
    """The best SIMD extension this CPU has: avx512 | avx2 | avx | sse | the machine (e.g. aarch64)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return platform.machine().lower()
    flags = cpuinfo("flags")
    if flags is None:
        return "unknown"
    for name, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx")):
        if flag in flags.split():
            return name
    return "sse" if flags else "unknown"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows. Pinned runs agree to the digit on one
    host but were measured to diverge between an AMD EPYC and an Intel Xeon host (README), so it is recorded."""
    return cpuinfo("model name") or platform.processor() or platform.machine()


def record(mode: str, device_type: str, compile_model: bool = False) -> dict:
    """What a run's summary.json records as `cpu_numerics` (and the report's provenance shows)."""
    out = {"mode": mode, "host_isa": host_isa(), "machine": platform.machine(), "cpu_model": cpu_model()}
    out.update({name: os.environ.get(name) for name in PINS})
    if "torch" in sys.modules:   # what ATen, MKL and the convolutions really run (fixed at their first use)
        import torch   # already loaded: this module must not be the one to import it
        out.update(aten_in_force=torch.backends.cpu.get_cpu_capability(), mkl_in_force=mkl_branch(),
                   onednn_enabled=torch.backends.mkldnn.enabled)
    if compile_model:
        out["inductor_simdlen"] = INDUCTOR_SIMDLEN if mode != "native" and device_type != "cuda" else None
    if device_type == "cuda":
        import torch   # a GPU run has torch loaded; CPU-only callers must not import it from here
        out["mode"] = "gpu"
        out.update(cudnn_deterministic=torch.backends.cudnn.deterministic,
                   cudnn_benchmark=torch.backends.cudnn.benchmark,
                   allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return out


def label(numerics: dict | None) -> str:
    """One short label per numerics record, for the report: 'pinned AVX2', 'portable', 'native avx512', 'gpu'."""
    if not numerics:
        return "not recorded"
    if numerics.get("mode") in ("gpu", "portable"):
        return numerics["mode"]
    if numerics.get("mode") == "pinned":
        return f"pinned {(numerics.get('ONEDNN_MAX_CPU_ISA') or PINNED_ISA).upper()}"
    return f"native {numerics.get('host_isa', '?')}" + (f" (oneDNN cap {numerics['ONEDNN_MAX_CPU_ISA']})"
                                                        if numerics.get("ONEDNN_MAX_CPU_ISA") else "")


def sessions_label(record) -> str | None:
    """The label of a summary's `cpu_numerics` over all its sessions (" + " where a resume mixed them)."""
    if not isinstance(record, dict):
        return None
    sessions = record.get("sessions")
    return " + ".join(str(x) for x in sessions) if isinstance(sessions, list) and sessions else label(record)
