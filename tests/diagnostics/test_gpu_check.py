"""scripts/gpu_check.sh --cpu: every section of the GPU check runs on the tiny CPU config and lands in one table."""
from __future__ import annotations

import json
import os
from pathlib import Path

from benchmark.diagnostics import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_mode_prints_one_table_with_every_section(tmp_path, capsys):
    assert gpu_check.main(["--cpu", "--methods", "unimatch", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len([line for line in table if line.startswith("| check")]) == 1          # one table
    sections = {line.split("|")[1].strip() for line in table[2:]}
    assert sections == {"step time", "bf16 vs fp32", "DDP (NCCL)", "data pipeline", "target"}
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = {(r["method"], r["variant"]): r for r in saved["steptime"]}
    assert set(steps) == {("unimatch", v) for v in gpu_check.CPU_VARIANTS}
    assert all(r["step_s"] > 0 and r["tflops"] > 0 and r["mfu"] is None for r in steps.values())   # no CPU peak
    rows = {(r[0], r[1]): r for r in saved["rows"]}
    assert rows[("bf16 vs fp32", "final mIoU")][3].split(":")[1].strip().startswith(("ok", "CHECK"))
    assert rows[("DDP (NCCL)", "2 processes vs 1")][2] == "skipped (--cpu)"
    assert "data.workers=" in rows[("data pipeline", "feeding unimatch " + min(
        steps.values(), key=lambda r: r["step_s"])["variant"])][2]
    assert (tmp_path / "gpu_check.md").read_text().strip() == out.strip()


def test_agreement_flags_runs_outside_the_stated_limits():
    a = {"iters": [1, 2, 3, 4], "loss": [1.0, 0.9, 0.8, 0.8], "miou": 40.0}
    close = {"iters": [1, 2, 3, 4], "loss": [1.0, 0.9, 0.8, 0.82], "miou": 38.0}
    far = {"iters": [1, 2, 3, 4], "loss": [1.0, 0.9, 0.8, 1.0], "miou": 30.0}
    verdicts = lambda b: [row[3].split(":")[1].split()[0] for row in gpu_check.agreement("x", a, b, ("a", "b"))[-2:]]
    assert verdicts(close) == ["ok", "ok"] and verdicts(far) == ["CHECK", "CHECK"]


def test_the_script_is_executable_and_runs_the_module():
    script = ROOT / "scripts" / "gpu_check.sh"
    assert os.access(script, os.X_OK) and "-m benchmark.diagnostics.gpu_check" in script.read_text()
