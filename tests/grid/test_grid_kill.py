"""Issue 26: kill -9 the whole `run_all.sh --profile smoke` process group twice (the second time while the reports
render), rerun after each kill, and get the uninterrupted run's report tables and summary metrics."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import kill_grid  # noqa: E402


@pytest.mark.slow
def test_two_kills_of_the_whole_grid_change_no_table_and_no_metric(tmp_path, capsys):
    code = kill_grid.main(["--kills", "2", "--work", str(tmp_path), "--seed", str(random.randrange(2**31))])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "kill 2/2: killed during report rendering" in out, out
