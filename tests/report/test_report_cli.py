"""CLI contract of `python -m benchmark.report`: one-line errors with exit 2, skipped folders, --help."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmark.report.__main__ import main
from fixtures.report_factory import write_run

REPO = Path(__file__).resolve().parents[2]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_results_folder(tmp_path, capsys):
    assert main(["--results", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in one_error_line(capsys)


def test_unknown_option(capsys):
    assert main(["--bogus"]) == 2
    assert "--bogus" in one_error_line(capsys)


def test_no_results_at_all(tmp_path, capsys):
    (tmp_path / "results" / "runs").mkdir(parents=True)
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "r")]) == 2
    assert "no results to report" in one_error_line(capsys)
    assert not (tmp_path / "r" / "report.md").exists()


def test_only_malformed_summaries_name_the_folder(tmp_path, capsys):
    bad = tmp_path / "results" / "runs" / "pascal" / "92" / "unimatch" / "seed0"
    bad.mkdir(parents=True)
    (bad / "summary.json").write_text('{"dataset": "pascal", "split": "92", "method": "unimatch"}')   # no seed/best
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys)
    assert "seed0" in line and "seed" in line


def test_strict_fails_on_a_malformed_folder(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, "pascal", "92", "supervised", 0, 45.0)
    bad = results / "runs" / "pascal" / "92" / "unimatch" / "seed0"
    bad.mkdir(parents=True)
    (bad / "summary.json").write_text("[1, 2")
    assert main(["--results", str(results), "--out", str(tmp_path / "r"), "--strict"]) == 2
    assert "--strict" in one_error_line(capsys)


def test_malformed_published_file(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, "pascal", "92", "supervised", 0, 45.0)
    pub = tmp_path / "published.yaml"
    pub.write_text("groups:\n  - source: x\n    dataset: pascal\n    miou: {unimatch: {'92': 'seventy'}}\n")
    assert main(["--results", str(results), "--out", str(tmp_path / "r"), "--published", str(pub)]) == 2
    assert "groups[0].miou.unimatch.92" in one_error_line(capsys)


def test_module_entry_point_help_and_error(tmp_path):
    run = [sys.executable, "-m", "benchmark.report"]
    help_ = subprocess.run(run + ["--help"], cwd=REPO, capture_output=True, text=True)
    assert help_.returncode == 0 and "import-log" in help_.stdout and "--results" in help_.stdout
    bad = subprocess.run(run + ["--results", str(tmp_path / "missing")], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
