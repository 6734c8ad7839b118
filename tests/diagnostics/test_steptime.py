"""The step-time benchmark: one method timed in-process, the table's ratios, bad input."""
from __future__ import annotations

import json

import pytest

from benchmark.diagnostics import steptime


@pytest.fixture(scope="module")
def tiny_overrides(tmp_path_factory):
    from datasets.animals import generate
    from datasets.draws import draw_folder
    root = tmp_path_factory.mktemp("tiny")
    generate(draw_folder(root, 0), variant="tiny", progress=False)
    return [f"data.root={root}"]


def test_measure_one_times_real_steps_and_names_the_base(tiny_overrides):
    result = steptime.measure_one("s4mim", "smoke", tiny_overrides, warmup=1, steps=1)
    assert result["method"] == "s4mim" and result["base"] == "unimatch"
    assert result["step_s"] > 0 and result["peak_memory_mb"] > 0
    assert result["images_per_step"] == 3 * 2          # smoke batch 2: labeled, unlabeled and mix streams
    assert result["flops_per_step"] > 0 and result["precision"] == "fp32"
    maskmatch = steptime.measure_one("maskmatch", "smoke", tiny_overrides + ["method.base=unimatch"], 0, 1)
    assert maskmatch["base"] == "unimatch"
    assert steptime.measure_one("fixmatch", "smoke", tiny_overrides, 0, 1)["base"] is None


def run(method, step, base=None, variant="default", flops=None, device_name="cpu", precision="fp32"):
    return {"method": method, "step_s": step, "peak_memory_mb": 100.0, "device": "cpu", "base": base,
            "images_per_step": 8, "variant": variant, "flops_per_step": flops, "device_name": device_name,
            "precision": precision}


def parse_rows(text):
    return {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in text.splitlines() if line.startswith("| ") and "method" not in line}


def test_table_uses_medians_and_ratios():
    results = {("supervised", "default"): [run("supervised", 0.1), run("supervised", 0.3), run("supervised", 0.2)],
               ("unimatch", "default"): [run("unimatch", 0.6)] * 3,
               ("s4mim", "default"): [run("s4mim", 0.9, "unimatch"), run("s4mim", 0.8, "unimatch"),
                                      run("s4mim", 5.0, "unimatch")]}
    rows = parse_rows(steptime.table(results))
    assert rows[("supervised", "default")][0] == "200.0" and rows[("supervised", "default")][2] == "1.00x"
    assert rows[("s4mim", "default")][2] == "4.50x" and rows[("s4mim", "default")][3] == "1.50x (unimatch)"
    assert rows[("s4mim", "default")][-1] == ""          # CPU: no known peak, no MFU


def test_variants_are_ratios_and_mfu_uses_the_precisions_peak():
    h100 = "NVIDIA H100 80GB HBM3"
    results = {("unimatch", "fp32"): [run("unimatch", 0.2, variant="fp32", flops=2e13, device_name=h100,
                                          precision="tf32")],
               ("unimatch", "bf16"): [run("unimatch", 0.1, variant="bf16", flops=2e13, device_name=h100,
                                          precision="bf16")],
               # compiled graphs are not counted: the FLOPs are the method's eager count
               ("unimatch", "bf16+compile"): [run("unimatch", 0.05, variant="bf16+compile", device_name=h100,
                                                  precision="bf16")],
               ("unimatch", "compile"): [{"method": "unimatch", "variant": "compile", "error": "no compiler"}]}
    rows = parse_rows(steptime.table(results))
    fp32, bf16, compiled = rows[("unimatch", "fp32")], rows[("unimatch", "bf16")], rows[("unimatch", "bf16+compile")]
    assert fp32[4] == "1.00x" and bf16[4] == "0.50x" and compiled[4] == "0.25x"
    assert fp32[6] == "100" and fp32[8] == "20.2%"         # 2e13 / 0.2 s = 100 TFLOP/s of 494.7 (tf32)
    assert bf16[6] == "200" and bf16[8] == "20.2%"         # 200 of 989.4 (bf16)
    assert compiled[6] == "400" and compiled[8] == "40.4%"
    assert rows[("unimatch", "compile")][0].startswith("failed: no compiler")
    assert steptime.summarize(results, {"*": 100.0})[0]["mfu"] == pytest.approx(1.0)   # --peak-tflops 100


def test_peak_table_prefers_the_specific_name():
    from benchmark.diagnostics.flops import parse_peak, peak_tflops
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0 and peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops("NVIDIA L40S", "bf16") == 362.0 and peak_tflops("NVIDIA L40", "bf16") == 181.0
    assert peak_tflops("x86_64", "fp32") is None and peak_tflops("Tesla V100-SXM2-16GB", "bf16") is None
    assert parse_peak("bf16=989,tf32=495") == {"bf16": 989.0, "tf32": 495.0}
    with pytest.raises(ValueError, match="--peak-tflops"):
        parse_peak("fast")


def test_variants_run_side_by_side_in_one_run(tiny_overrides, capsys):
    code = steptime.main(["--methods", "supervised", "--profile", "smoke", "--variants", "fp32,channels_last",
                          "--warmup", "0", "--steps", "1", "--rounds", "1", *tiny_overrides])
    rows = parse_rows(capsys.readouterr().out)
    assert code == 0 and set(rows) == {("supervised", "fp32"), ("supervised", "channels_last")}
    assert float(rows[("supervised", "fp32")][5]) > 0      # TFLOP/s counted on CPU too
    assert rows[("supervised", "channels_last")][4].endswith("x")   # a ratio to fp32


def test_ops_lists_the_most_expensive_operators_of_real_steps(tiny_overrides, capsys):
    code = steptime.main(["--ops", "4", "--methods", "fixmatch", "--profile", "smoke", "--warmup", "1",
                          "--steps", "2", *tiny_overrides])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith(("aten::", "enumerate", "Optimizer"))]
    assert code == 0 and out.startswith("fixmatch: 2 steps") and len(rows) == 4
    assert "Self CPU time total" in out


def test_a_failing_variant_is_reported_and_the_others_still_run(monkeypatch):
    import subprocess
    import types

    def fake_run(cmd, **_):
        if "train.compile=true" in cmd:
            return types.SimpleNamespace(returncode=1, stdout="", stderr="Traceback\nInductorError: no compiler")
        return types.SimpleNamespace(returncode=0, stderr="", stdout=steptime.MARKER + json.dumps(run("fixmatch", 0.1)))
    monkeypatch.setattr(subprocess, "run", fake_run)
    results = steptime.run_rounds(["fixmatch"], "smoke", [], 0, 1, 1, ("fp32", "compile"))
    assert results[("fixmatch", "fp32")][0]["step_s"] == 0.1
    assert results[("fixmatch", "compile")] == [{"method": "fixmatch", "variant": "compile",
                                                 "error": "InductorError: no compiler"}]


def test_unknown_method_is_one_clear_error(capsys):
    from benchmark.errors import run_main
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: steptime.main(["--methods", "supervised,nope"]))
    assert exc.value.code == 2 and "unknown method 'nope'" in capsys.readouterr().err


def test_unknown_variant_is_one_clear_error(capsys):
    from benchmark.errors import run_main
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: steptime.main(["--methods", "supervised", "--variants", "fp32,fast"]))
    assert exc.value.code == 2 and "unknown variant 'fast'" in capsys.readouterr().err


def test_phase_timer_charges_nested_time_to_the_inner_phase(monkeypatch):
    from benchmark.diagnostics import cell_profile
    now = [0.0]
    monkeypatch.setattr(cell_profile, "clock", lambda: now[0])
    timer = cell_profile.PhaseTimer()
    with timer.phase("outer"):
        now[0] += 1.0
        with timer.phase("inner"):
            now[0] += 2.0
        now[0] += 0.5
    now[0] += 0.25
    rows = {row["phase"]: (row["seconds"], row["calls"]) for row in timer.rows()}
    assert rows == {"outer": (1.5, 1), "outer > inner": (2.0, 1), "(rest)": (0.25, 0)}


def test_profile_cell_covers_the_pieces_of_a_real_cell(tiny_overrides):
    from benchmark.diagnostics import cell_profile
    result = cell_profile.profile_one("fixmatch", "smoke", None, 0, tiny_overrides, None)
    phases = {row["phase"] for row in result["rows"]}
    for expected in ("imports", "train step > backward", "train step > optimizer", "train step > train data > decode",
                     "train step > train data > augment", "evaluation", "checkpoint write"):
        assert expected in phases, expected
    assert any(p.startswith("train step > forward (eval") for p in phases)   # the CutMix source's labels
    assert any(p.startswith("evaluation > forward (eval") for p in phases)
    assert result["iters"] > 0 and all(row["seconds"] >= 0 for row in result["rows"])
    import torch
    from benchmark.train.trainer import Trainer
    assert not hasattr(torch.Tensor.backward, "__wrapped__") and not hasattr(Trainer.fit, "__wrapped__")
    assert not hasattr(Trainer._evaluate, "__wrapped__")   # the wrappers are gone again
