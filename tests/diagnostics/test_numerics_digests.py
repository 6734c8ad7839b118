"""The per-operation digests of benchmark.diagnostics.numerics_digests: the kernels each setting really runs,
the record kept per CPU model, the comparison with other models, and the portable reference cell."""
from __future__ import annotations

import json
import platform

import pytest

from benchmark import numerics
from benchmark.diagnostics import numerics_digests as nd
from methods import registry


def test_portable_runs_every_convolution_on_atens_kernels_over_mkls_compatible_branch():
    portable, pinned = nd.run_setting("portable"), nd.run_setting("pinned")
    assert {op["backend"] for op in portable["ops"].values() if "backend" in op} == {"Slow2d"}
    assert portable["onednn_enabled"] is False and pinned["onednn_enabled"] is True
    assert pinned["ops"]["conv3x3"]["backend"] == "Mkldnn"
    if portable["mkl_in_force"] is not None:   # torch with MKL
        assert (portable["mkl_in_force"], pinned["mkl_in_force"]) == ("COMPATIBLE", "AVX2")
    # BatchNorm is ATen's own kernel in both: the same bits.
    assert portable["ops"]["batchnorm"] == pinned["ops"]["batchnorm"]


def setting(**digests):
    return {"mkl_in_force": "AVX2", "onednn_enabled": True, "ops": {"mm": {"forward": digests.get("mm", "a")},
                                                                     "conv": {"backend": "Mkldnn", "forward": "c"}}}


def test_the_record_merges_per_cpu_model_and_names_what_differs(tmp_path):
    path = tmp_path / "digests.json"
    nd.merge_record("AMD", {"host_isa": "avx512", "settings": {"pinned": setting(mm="b")},
                            "cell": {"pinned": {"weights": "w1"}}}, path)
    nd.merge_record("Intel", {"host_isa": "avx512", "settings": {"pinned": setting()}}, path)
    recorded = nd.merge_record("Intel", {"settings": {"portable": setting()}, "cell": {"pinned": {"weights": "w2"}}},
                               path)
    assert recorded == json.loads(path.read_text())
    assert set(recorded) == {"AMD", "Intel"} and set(recorded["Intel"]["settings"]) == {"pinned", "portable"}
    assert recorded["Intel"]["host_isa"] == "avx512"   # kept from the first merge
    assert nd.differences("Intel", recorded) == ["vs AMD, pinned: differ: mm.forward",
                                                 "vs AMD, reference cell under pinned: weights differ"]
    assert "conv kernel" in nd.table(recorded["Intel"]["settings"])


def test_an_unknown_setting_is_one_error_line_and_exit_2(capsys):
    assert nd.main(["--settings", "pinned,bogus", "--no-record"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: unknown setting(s) bogus; known: {', '.join(nd.SETTINGS)}"]


def test_the_reference_digest_was_recorded_for_the_reference_cell_as_defined():
    # A change of the cell's definition without `--pin-reference` would leave a digest of another cell.
    reference = json.loads(nd.REFERENCE_FILE.read_text())
    assert (reference["method"], reference["overrides"], reference["numerics"]) == (
        registry.lower_bound(), list(nd.REFERENCE_OVERRIDES), "portable")


@pytest.mark.slow   # generates the default draw 0 and trains 40 steps: about half a minute
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or numerics.host_isa() not in
                    ("avx2", "avx512"), reason="the reference is for x86-64 hosts with AVX2 (README)")
def test_the_portable_reference_cell_gives_the_recorded_digest_on_this_host(tmp_path):
    reference = json.loads(nd.REFERENCE_FILE.read_text())
    cell = nd.reference_cell(tmp_path / "results", extra=(f"data.root={tmp_path / 'animals'}",))
    assert cell["weights"] == reference["weights"], (
        f"portable numerics gave other weights on {nd.host_key()}; after a change to the default profile, the "
        f"generator, the model or the trainer, re-record: python -m benchmark.diagnostics.numerics_digests "
        f"--pin-reference")
