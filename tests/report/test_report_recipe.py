"""The report states the recipe each run trained: total labeled batch and world size, how many evaluations
'best on val' was picked from, the precision (flagged when not the official fp32), and links docs/fidelity.md."""
from __future__ import annotations

from pathlib import Path

from benchmark.report.__main__ import main
from fixtures.report_factory import write_run
from test_report_render import md_table

ROOT = Path(__file__).resolve().parents[2]


def test_provenance_shows_batch_world_size_evaluations_and_precision(tmp_path):
    results, out = tmp_path / "results", tmp_path / "reports"
    write_run(results, "pascal", "92", "supervised", 0, 45.0, world_size=4, labeled_batch_per_process=4,
              labeled_total_batch_size=16, evaluations=80, precision="fp32")
    write_run(results, "pascal", "92", "unimatch", 0, 75.0, world_size=1, labeled_batch_per_process=8,
              labeled_total_batch_size=8, evaluations=80, precision="bf16")
    assert main(["--results", str(results), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    rows = {r["Run"]: r for r in md_table(md, "Provenance of every reported run")}
    assert (rows["supervised"]["Labeled batch"], rows["supervised"]["Evals"], rows["supervised"]["Precision"]) \
        == ("16 = 4 × 4", "80", "fp32")
    assert (rows["unimatch"]["Labeled batch"], rows["unimatch"]["Evals"], rows["unimatch"]["Precision"]) \
        == ("8 = 1 × 8", "80", "bf16")
    assert "Precision bf16: these runs trained under bf16 autocast (train.amp), a departure from the official " \
           "recipe's fp32." in md
    assert "`docs/fidelity.md`" in md and (ROOT / "docs" / "fidelity.md").is_file()
    assert "here picked from 80 evaluations per run" in md
