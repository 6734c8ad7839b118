"""Methods from outside the suite: --plugin files and modules, the plugins config key, entry points, errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark import plugins
from benchmark.train.config import ConfigError, resolve
from methods import registry
from methods.base import MethodError
from methods.registry import _REGISTRY

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ema_fixmatch.py"


@pytest.fixture(autouse=True)
def clean_registry():
    """Plugins register into the process-wide registry: leave it as the suite's own methods left it."""
    registry.all_methods()
    before, loaded = dict(_REGISTRY), dict(plugins._LOADED)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


def test_example_plugin_trains_from_outside_the_package(tmp_path, monkeypatch):
    from benchmark.train.trainer import Trainer
    monkeypatch.chdir(tmp_path)   # the plugin path resolves against the caller's folder
    shutil.copy(EXAMPLE, tmp_path / "my_method.py")
    cfg = resolve(profile="smoke", method="ema_fixmatch", plugins=["my_method.py"],
                  overrides=[f"output.results_dir={tmp_path / 'results'}", "train.iters=2", "eval.every=2"])
    assert cfg.plugins == (str(tmp_path / "my_method.py"),)
    trainer = Trainer(cfg, progress=False)
    summary = trainer.fit()
    assert summary["method"] == "ema_fixmatch" and summary["user_supplied"] is True
    assert summary["base"] == "fixmatch" and summary["components"] == {"ema_teacher": True}
    saved = yaml.safe_load((trainer.run_dir / "config.yaml").read_text())
    assert saved["plugins"] == [str(tmp_path / "my_method.py")]   # what a cell or Slurm task re-imports
    teacher = trainer.method.teacher.state_dict()
    student = trainer.model.state_dict()
    key = next(k for k, v in teacher.items() if v.dtype.is_floating_point and "weight" in k)
    assert not teacher[key].equal(student[key])   # the EMA lags the student


def test_plugin_does_not_change_the_recipe_hash(tmp_path):
    other = tmp_path / "copy.py"
    other.write_text(EXAMPLE.read_text().replace('"ema_fixmatch"', '"ema_fixmatch_copy"'))
    a = resolve(profile="smoke", method="ema_fixmatch", plugins=[str(EXAMPLE)])
    b = resolve(profile="smoke", method="ema_fixmatch", plugins=[str(EXAMPLE), str(other)])
    assert a.hash() == b.hash()


def test_config_key_and_flags_add_up(tmp_path):
    listed = tmp_path / "listed.yaml"
    listed.write_text(yaml.safe_dump({"plugins": [str(EXAMPLE)]}))
    module = tmp_path / "second_plugin.py"
    module.write_text("")
    cfg = resolve(profile="smoke", method="ema_fixmatch", config_file=str(listed), plugins=[str(module)])
    assert cfg.plugins == (str(EXAMPLE), str(module))


def test_broken_plugin_fails_in_one_line_naming_it(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import a_module_that_does_not_exist_anywhere\n")
    with pytest.raises(ConfigError) as err:
        resolve(profile="smoke", method="supervised", plugins=[str(broken)])
    assert str(err.value) == (f"plugin {broken} cannot be imported: ModuleNotFoundError: No module named "
                              "'a_module_that_does_not_exist_anywhere'")
    with pytest.raises(ConfigError, match="plugin file .*missing.py not found"):
        plugins.load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(ConfigError, match="plugin no_such_plugin_module cannot be imported"):
        plugins.load_plugin("no_such_plugin_module")


def test_module_name_plugin(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_pkg.py").write_text(EXAMPLE.read_text().replace('"ema_fixmatch"', '"ema_by_module"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_plugins(["my_plugin_pkg"])
    assert plugins.is_user_supplied(registry.get("ema_by_module"))
    assert not plugins.is_user_supplied(registry.get("fixmatch"))


def _fake_distribution(root: Path, value: str) -> None:
    info = root / "fake_ssseg_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-ssseg-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nema_ep = {value}\n")


def test_entry_point_group_registers_installed_methods(tmp_path, monkeypatch):
    (tmp_path / "fake_ep_module.py").write_text(EXAMPLE.read_text().replace('"ema_fixmatch"', '"ema_from_ep"'))
    _fake_distribution(tmp_path, "fake_ep_module")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "ema_from_ep" in registry.all_methods()


def test_broken_entry_point_names_it(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "fake_missing_ep_module")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MethodError, match="method plugin 'ema_ep' \\(fake_missing_ep_module\\) of an installed "
                                          "package cannot be imported: ModuleNotFoundError"):
        registry.all_methods()


def test_run_all_and_ablate_pass_plugins_to_every_cell(tmp_path, monkeypatch):
    from benchmark import ablate
    from benchmark.grid import runner, variants
    from benchmark.grid.arguments import build_parser
    from benchmark.grid.local import train_argv
    from benchmark.grid.cells import Cell
    monkeypatch.chdir(REPO)
    args = build_parser().parse_args(["--profile", "smoke", "--plugin", "examples/ema_fixmatch.py",
                                             "--methods", "ema_fixmatch", "--results-dir", str(tmp_path)])
    runner.load_plugins(args.plugin)
    opts = runner.run_options(args, jobs=1)
    argv = train_argv(Cell("ema_fixmatch", "animals_tiny", "1_32", 0), opts)
    assert argv[argv.index("--plugin") + 1] == str(EXAMPLE)
    # The plugin's component is a switch like any other: the ablation finds it.
    args = ablate.build_parser().parse_args(["--profile", "smoke", "--plugin", str(EXAMPLE),
                                             "--component", "ema_teacher", "--results-dir", str(tmp_path)])
    _, cells = variants.requested_cells(args, runner.run_options(args, jobs=1))
    assert {c.variant for c in cells} == {"", "no_ema_teacher"}


@pytest.mark.slow
def test_train_cli_runs_the_example_plugin(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "benchmark.train", "--plugin", str(EXAMPLE), "--method",
                          "ema_fixmatch", "--profile", "smoke", "--results-dir", str(tmp_path), "--no-progress"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["run"].endswith("ema_fixmatch/seed0")


def test_report_marks_plugin_methods_and_tests_them_against_unimatch_and_their_base(tmp_path):
    from benchmark.report.comparison import main_table, significance_table
    from benchmark.report.document import Numbering
    from benchmark.report.results_store import load_results
    from tests.fixtures.report_factory import write_run
    for seed in range(2):
        for method, miou in (("supervised", 30.0), ("fixmatch", 34.0), ("unimatch", 35.0)):
            write_run(tmp_path, "animals", "1_32", method, seed, miou + seed)
        write_run(tmp_path, "animals", "1_32", "ema_fixmatch", seed, 36.0 + 2 * seed, user_supplied=True,
                  base="fixmatch")
    runs = load_results(tmp_path).runs
    assert [r[0] for r in main_table(runs, [], "animals", "best", Numbering()).rows][-1] == "ema_fixmatch§"
    rows = [r[0] for r in significance_table(runs, "animals", Numbering()).rows]
    assert [r for r in rows if r.startswith("ema_fixmatch")] == [
        "ema_fixmatch§ vs Supervised", "ema_fixmatch§ vs UniMatch", "ema_fixmatch§ vs FixMatch"]
    assert "FixMatch vs FixMatch" not in rows
