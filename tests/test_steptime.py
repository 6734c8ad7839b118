"""The step-time benchmark: one method timed in-process, the table's ratios, bad input."""
from __future__ import annotations

import pytest

from benchmark import steptime


@pytest.fixture(scope="module")
def tiny_overrides(tmp_path_factory):
    from datasets.animals import generate
    root = generate(tmp_path_factory.mktemp("tiny"), variant="tiny", progress=False)
    return [f"data.root={root}", f"data.split_dir={root}/splits"]


def test_measure_one_times_real_steps_and_names_the_base(tiny_overrides):
    result = steptime.measure_one("s4mim", "smoke", tiny_overrides, warmup=1, steps=1)
    assert result["method"] == "s4mim" and result["base"] == "unimatch"
    assert result["step_s"] > 0 and result["peak_memory_mb"] > 0
    assert result["images_per_step"] == 3 * 2          # smoke batch 2: labeled, unlabeled and mix streams
    maskmatch = steptime.measure_one("maskmatch", "smoke", tiny_overrides + ["method.base=unimatch"], 0, 1)
    assert maskmatch["base"] == "unimatch"
    assert steptime.measure_one("fixmatch", "smoke", tiny_overrides, 0, 1)["base"] is None


def test_table_uses_medians_and_ratios():
    def run(method, step, base=None):
        return {"method": method, "step_s": step, "peak_memory_mb": 100.0, "device": "cpu", "base": base,
                "images_per_step": 8}
    results = {"supervised": [run("supervised", 0.1), run("supervised", 0.3), run("supervised", 0.2)],
               "unimatch": [run("unimatch", 0.6)] * 3,
               "s4mim": [run("s4mim", 0.9, "unimatch"), run("s4mim", 0.8, "unimatch"), run("s4mim", 5.0, "unimatch")]}
    text = steptime.table(results)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in text.splitlines()
            if line.startswith("| ") and "method" not in line}
    assert rows["supervised"][0] == "200.0" and rows["supervised"][2] == "1.00x"    # median 0.2 s
    assert rows["s4mim"][2] == "4.50x" and rows["s4mim"][3] == "1.50x (unimatch)"  # median 0.9 s, outlier ignored


def test_unknown_method_is_one_clear_error(capsys):
    from benchmark.cli import run_main
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: steptime.main(["--methods", "supervised,nope"]))
    assert exc.value.code == 2 and "unknown method 'nope'" in capsys.readouterr().err
