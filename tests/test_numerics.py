"""Pinned and portable CPU numerics: the environment a training process sees, the switches torch trains under,
what its summary records, and resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark import numerics
ROOT = Path(__file__).resolve().parents[1]
PINNED_VARS = tuple(numerics.PINS)
REPLACED_VAR = numerics.REPLACED_VAR


def child_environment(code: str, **env) -> dict:
    """What a fresh Python process that imports `benchmark` (as every entry point does) ends up with."""
    clean = {k: v for k, v in os.environ.items() if k not in PINNED_VARS and k != REPLACED_VAR}
    out = subprocess.run([sys.executable, "-c", f"import benchmark, json, os\n{code}\n"
                          f"print(json.dumps({{k: os.environ.get(k) for k in {PINNED_VARS!r}}}))"],
                         cwd=ROOT, env={**clean, **env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_benchmark_pins_every_library_at_avx2():
    assert child_environment("") == {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


@pytest.mark.parametrize("cap", ["AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_BF16", "DEFAULT"])
def test_a_more_capable_user_cap_is_lowered_to_the_pin(cap):
    assert child_environment("", ONEDNN_MAX_CPU_ISA=cap)["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_a_stricter_user_cap_is_kept_and_survives_into_child_processes():
    code = ("import subprocess, sys\n"
            "child = subprocess.run([sys.executable, '-c', 'import benchmark, os; print(os.environ[\"ONEDNN_MAX_CPU_ISA\"])'],"
            " capture_output=True, text=True).stdout.strip()\n"
            "assert child == 'avx', child")
    assert child_environment(code, ONEDNN_MAX_CPU_ISA="avx", ATEN_CPU_CAPABILITY="default") == {
        "ONEDNN_MAX_CPU_ISA": "avx", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "default"}


def test_portable_puts_mkl_on_its_compatible_branch_and_keeps_the_other_pins():
    env = child_environment("from benchmark.numerics import pin_environment\npin_environment('portable')")
    assert env == {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"}


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"import benchmark, os, json\n{code}"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


PORTABLE_PROCESS = """
from benchmark.numerics import apply
import torch
rec = apply(os.environ["MODE"], "cpu")
x, w = torch.ones(64, 8, 8, 8), torch.ones(8, 8, 3, 3)   # the evaluation's batch: NNPACK's, were it on
backend = torch._C._select_conv_backend(x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, None)
print(json.dumps({"rec": rec, "mkldnn": torch.backends.mkldnn.enabled, "backend": str(backend).split(".")[-1]}))
"""


@pytest.mark.parametrize("mode", ["portable", "pinned"])
def test_portable_trains_without_onednn_or_nnpack_and_pinned_with_them(mode):
    """What a training process (apply, before its first tensor) runs its convolutions and GEMMs on, and that
    the summary's record says so."""
    out = run_python(PORTABLE_PROCESS, MODE=mode)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    portable = mode == "portable"
    assert seen["mkldnn"] is not portable and seen["rec"]["onednn_enabled"] is not portable
    assert (seen["backend"] == "Slow2d") if portable else (seen["backend"] != "NnpackSpatial")
    assert seen["rec"]["mode"] == mode and seen["rec"]["MKL_CBWR"] == ("COMPATIBLE" if portable else "AVX2")
    if torch.backends.mkl.is_available():
        assert seen["rec"]["mkl_in_force"] == seen["rec"]["MKL_CBWR"]


def test_portable_after_mkl_ran_under_another_branch_is_refused():
    # MKL fixes its branch at its first call: a process that already ran a GEMM cannot become portable.
    out = run_python("import torch\ntorch.mm(torch.ones(8, 8), torch.ones(8, 8))\n"
                     "from benchmark.numerics import apply\napply('portable', 'cpu')")
    if not torch.backends.mkl.is_available():
        pytest.skip("torch without MKL")
    assert out.returncode != 0 and "start a new process" in out.stderr.strip().splitlines()[-1]


def test_a_process_that_trains_again_gets_onednn_back():
    out = run_python("from benchmark.numerics import apply\nimport torch\napply('portable', 'cpu')\n"
                     "apply('pinned', 'cpu')\nprint(torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled())")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_an_unknown_mode_is_one_error_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmark.train", "--method", "supervised", "--profile", "smoke",
                          f"output.results_dir={tmp_path}", "train.cpu_numerics=portabel"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: train.cpu_numerics must be one of pinned, portable, native, got 'portabel'"]


def test_native_clears_only_what_the_pin_set():
    env = child_environment("from benchmark.numerics import pin_environment\npin_environment('native')",
                            MKL_CBWR="AVX")
    assert env == {"ONEDNN_MAX_CPU_ISA": None, "MKL_CBWR": "AVX", "ATEN_CPU_CAPABILITY": None}


def test_native_in_a_training_process_reaches_torch_and_pinned_is_recorded(tmp_path):
    """A real training process: torch dispatches at the pinned capability (or the host's under native), and
    the summary records what was in force."""
    code = ("from benchmark.numerics import apply\nimport torch\n"
            "rec = apply(os.environ['MODE'], 'cpu')\n"
            "assert rec['mode'] == os.environ['MODE'], rec\n"
            "print(torch.backends.cpu.get_cpu_capability())")
    for mode in ("pinned", "native"):
        out = subprocess.run([sys.executable, "-c", f"import benchmark, os\n{code}"], cwd=ROOT, capture_output=True,
                             text=True, check=True, env={**os.environ, "MODE": mode, "PYTHONPATH": str(ROOT)})
        capability = out.stdout.strip().splitlines()[-1]
        if mode == "pinned":
            assert capability == "AVX2"
        elif numerics.host_isa() == "avx512":
            assert capability == "AVX512"


def test_native_gives_a_user_cap_back():
    code = ("from benchmark.numerics import pin_environment\n"
            "assert os.environ['ONEDNN_MAX_CPU_ISA'] == 'AVX2'\npin_environment('native')")
    assert child_environment(code, ONEDNN_MAX_CPU_ISA="AVX512_CORE")["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"


def test_gpu_runs_are_left_alone():
    env = child_environment("from benchmark.numerics import pin_environment\npin_environment('pinned', gpu=True)")
    assert env == {name: None for name in PINNED_VARS}


def test_labels_and_mixing():
    assert numerics.label({"mode": "pinned", "ONEDNN_MAX_CPU_ISA": "AVX2"}) == "pinned AVX2"
    assert numerics.label({"mode": "native", "host_isa": "avx512"}) == "native avx512"
    assert numerics.label({"mode": "portable", "MKL_CBWR": "COMPATIBLE"}) == "portable"
    assert numerics.label(None) == "not recorded"


CRASH_AT_STEP_3 = """
import sys
from benchmark.train.config import resolve
from benchmark.train.trainer import Trainer
trainer = Trainer(resolve(profile="smoke", method="fixmatch", overrides=sys.argv[1:]), progress=False)
losses = trainer.method.losses
def crash(model, batch, step):
    if step.step == 2:
        raise SystemExit(9)   # after the step-2 checkpoint, as a kill would
    return losses(model, batch, step)
trainer.method.losses = crash
trainer.fit()
"""


def test_a_run_killed_under_the_pin_resumes_identically_under_another_native_cap(tiny_data, tmp_path):
    def args(results):
        return [f"data.root={tiny_data}", f"output.results_dir={results}", "train.iters=4", "eval.every=2",
                "train.threads=1"]

    def run(argv, **env):
        return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **env})

    def summary(results):
        return json.loads(next(Path(results).rglob("summary.json")).read_text())

    assert run(["-m", "benchmark.train", "--profile", "smoke", "--method", "fixmatch", "--no-progress",
                *args(tmp_path / "straight")]).returncode == 0
    assert run(["-c", CRASH_AT_STEP_3, *args(tmp_path / "killed")]).returncode == 9
    assert not list((tmp_path / "killed").rglob("summary.json"))
    assert run(["-m", "benchmark.train", "--profile", "smoke", "--method", "fixmatch", "--no-progress",
                *args(tmp_path / "killed")], ONEDNN_MAX_CPU_ISA="AVX512_CORE",
               ATEN_CPU_CAPABILITY="avx512").returncode == 0
    straight, resumed = summary(tmp_path / "straight"), summary(tmp_path / "killed")
    assert resumed["cpu_numerics"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert resumed["cpu_numerics"]["sessions"] == straight["cpu_numerics"]["sessions"] == ["pinned AVX2"]
    assert [resumed[k]["miou"] for k in ("best", "last")] == [straight[k]["miou"] for k in ("best", "last")]
    assert resumed["last"]["per_class"] == straight["last"]["per_class"]


def test_the_record_names_the_cpu_model(monkeypatch, tmp_path):
    # Pinned runs diverged between an AMD and an Intel host (README), so which CPU trained a run is recorded.
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n")
    real_path = numerics.Path
    monkeypatch.setattr(numerics, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert numerics.record("pinned", "cpu")["cpu_model"] == "Intel(R) Xeon(R) Processor"
