"""benchmark.ablate: component owners, ablation variants, sweeps, argument handling. Nothing trains here."""
from __future__ import annotations

import json
import sys

import pytest

from benchmark.grid.plan import RunOptions, cell_state, plan_cell
from benchmark import ablate
from benchmark.grid import local as cells
from benchmark.grid import cells as grid
from benchmark.grid import variants
from benchmark.grid import runner
from benchmark.errors import run_main
from benchmark.train.config import ConfigError
from benchmark.grid.cells import Cell
from methods.base import Method, MethodError
from methods.registry import all_methods, get


def run(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: ablate.main(argv))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# --- paper components, defined without naming any method -----------------------------------------------------

class Base(Method):
    name = "fake_base"
    components = {"a": True, "b": True}


class Extension(Base):
    name = "fake_extension"
    components = {**Base.components, "x": True, "y": True, "z": False}
    own_components = ("x", "y", "z")


class Single(Base):
    name = "fake_single"
    components = {**Base.components, "x": True}
    own_components = ("x",)


def test_paper_components_are_declared_else_what_the_declared_base_lacks():
    assert Base.paper_components() == ("a", "b")            # no base: all of its components are its own
    assert Extension.paper_components() == ("x", "y", "z")

    class OnUniMatch(Method):
        name = "fake_on_unimatch"
        base = "unimatch"
        components = {"own": True, **get("unimatch").components}

    assert OnUniMatch.paper_components() == ("own",)


def test_registered_methods_paper_components():
    for cls in all_methods().values():
        paper = cls.paper_components()
        assert set(paper) <= set(cls.components)
        assert not cls.base or not set(paper) & set(get(cls.base).components)
    assert set(get("unimatch").paper_components()) == set(get("unimatch").components)
    assert get("supervised").paper_components() == ()


def test_variants_leave_one_out_and_all_off_for_several_paper_components():
    found = variants.component_variants(Extension, "y")
    assert [v.name for v in found] == ["no_x", "no_y", "with_z", "all_off"]
    assert found[1].overrides() == ("method.components.y=false",)
    assert found[2].overrides() == ("method.components.z=true",)     # off by default: switched on
    assert found[3].overrides() == ("method.components.x=false", "method.components.y=false")


class Gated(Base):
    name = "fake_gated"
    components = {**Base.components, "branch": True, "detail": True, "other": True}
    own_components = ("branch", "detail", "other")
    component_requires = {"detail": "branch"}


def test_effective_components_follow_requirements():
    assert Gated.effective_components({"a": True, "branch": False, "detail": True, "other": True}) == \
        {"a": True, "branch": False, "detail": False, "other": True}
    assert Gated.effective_components({"a": True, "branch": True, "detail": True, "other": False})["detail"]


def test_variants_that_train_the_same_switches_are_run_once():
    names = [v.name for v in variants.component_variants(Gated, "detail")]
    assert names == ["no_branch", "no_detail", "no_other", "all_off"]   # all_off differs: `other` is off too
    Gated.component_requires = {"detail": "branch", "other": "branch"}
    try:   # now all_off switches off exactly what no_branch switches off in effect
        assert [v.name for v in variants.component_variants(Gated, "detail")] == ["no_branch", "no_detail", "no_other"]
    finally:
        Gated.component_requires = {"detail": "branch"}


def test_s4mim_ablation_has_no_duplicate_of_no_mim():
    names = [v.name for v in variants.component_variants(get("s4mim"), "feature_agg")]
    assert names == ["no_mim", "no_classwise_mim", "no_feature_agg", "no_semantic_mim"]


def test_variants_with_and_without_for_a_single_or_inherited_component():
    assert [v.name for v in variants.component_variants(Single, "x")] == ["no_x"]
    assert [v.name for v in variants.component_variants(Extension, "a")] == ["no_a"]   # inherited: just toggled


# --- owners and ablation cells (registered methods) ----------------------------------------------------------

def test_owner_is_the_method_that_introduces_the_component():
    for cls in all_methods().values():
        for component in cls.paper_components():
            assert cls in variants.component_owners(component)
    unimatch = get("unimatch")
    inherited_by = [cls for cls in all_methods().values()
                    if "dual_strong" in cls.components and cls is not unimatch]
    assert variants.component_owners("dual_strong") == [unimatch]
    for cls in inherited_by:                      # asking for the method explicitly ablates it there
        assert variants.component_owners("dual_strong", cls.name) == [cls]


def test_unknown_component_lists_the_known_ones(capsys):
    with pytest.raises(MethodError) as exc:
        variants.component_owners("nope")
    message = str(exc.value)
    assert message.startswith("unknown component 'nope'; known components: ")
    for name in variants.known_components():
        assert name in message
    code, _, err = run(["--component", "nope", "--profile", "smoke"], capsys)
    assert code == 2 and err.startswith("error: unknown component 'nope'; known components:")
    assert "Traceback" not in err


def test_component_of_another_method_is_an_error(capsys):
    code, _, err = run(["--component", "dual_strong", "--method", "supervised", "--profile", "smoke"], capsys)
    assert code == 2 and "has no component 'dual_strong'" in err


def test_ablation_seeds_follow_grid_ablation_seeds_capped_at_the_seeds():
    assert grid.load_plan("smoke", seeds=2).ablation_seeds == 1           # the smoke profile's grid.ablation_seeds
    assert grid.load_plan("smoke", ["grid.ablation_seeds=0"], seeds=3).ablation_seeds == 3   # 0 = the grid's seeds
    assert grid.load_plan("smoke", ["grid.ablation_seeds=4"], seeds=2).ablation_seeds == 2   # never more
    assert grid.load_plan("smoke", seeds=3, ablation_seeds=3).ablation_seeds == 3   # benchmark.ablate --seeds
    assert {c.seed for c in variants.ablation_cells(grid.load_plan("smoke", seeds=2), "dual_strong")} == {0}


def test_ablation_cells_are_the_plain_cell_plus_variants():
    plan = grid.load_plan("smoke", seeds=2, ablation_seeds=2)
    cells = variants.ablation_cells(plan, "dual_strong")
    assert {c.split for c in cells} == {"1_128"}                     # the grid's lowest split
    assert {c.seed for c in cells} == {0, 1}
    seed0 = [c for c in cells if c.seed == 0]
    assert seed0[0] == Cell("unimatch", "animals_tiny", "1_128", 0)   # the full method = the grid's own cell
    assert {c.variant for c in seed0} == {"", "no_feature_perturbation", "no_dual_strong", "all_off"}
    no_ds = next(c for c in seed0 if c.variant == "no_dual_strong")
    assert no_ds.overrides == ("method.components.dual_strong=false",)
    assert no_ds.run_name == "unimatch__no_dual_strong"
    # the grid and its ablation share the plain cells
    assert len(grid.dedupe(grid.grid_cells(plan) + cells)) == len(grid.grid_cells(plan)) + 3 * 2


def test_methods_filter_drops_owners_outside_the_selection():
    plan = grid.load_plan("smoke")
    assert variants.ablation_cells(plan, "dual_strong", methods_filter=["fixmatch"]) == []


# --- sweeps --------------------------------------------------------------------------------------------------

def test_sweep_parsing():
    assert variants.parse_sweep("method.mask_ratio=0.3,0.5,0.7") == variants.Sweep("method.mask_ratio", ("0.3", "0.5", "0.7"))
    assert variants.parse_sweep("model.dilations=[6,12,18], [12,24,36]").values == ("[6,12,18]", "[12,24,36]")
    assert variants.parse_sweep("train.lr=0.01").values == ("0.01",)


@pytest.mark.parametrize("text, message", [
    ("method.mask_ratio", "no '='"),
    ("=0.1,0.2", "dotted config key"),
    ("mask_ratio=0.1", "dotted config key"),
    ("method..x=1", "dotted config key"),
    ("method.mask_ratio=", "no values"),
    ("method.mask_ratio=0.1,,0.2", "empty value"),
    ("method.mask_ratio=0.1,0.1", "repeated"),
    ("train.seed=0,1", "selects the cell"),
    ("output.variant=a,b", "selects the cell"),
    ("method.name=a,b", "selects the cell"),
    ("model.weights=a/b,c", "folder name"),
])
def test_bad_sweep_syntax(text, message):
    with pytest.raises(ConfigError, match=message):
        variants.parse_sweep(text)


def test_sweep_cells_and_the_default_value_is_the_plain_cell():
    plan = grid.load_plan("smoke", seeds=1)
    sweep = variants.parse_sweep("method.weight_fp=0.3,0.5,0.7")
    cells = variants.sweep_cells(plan, "unimatch", sweep, default=0.5, has_default=True)
    assert [c.variant for c in cells] == ["method.weight_fp=0.3", "", "method.weight_fp=0.7"]
    assert cells[0].overrides == ("method.weight_fp=0.3",) and cells[1].overrides == ()


def test_sweep_needs_a_method_and_ablate_needs_something(capsys):
    code, _, err = run(["--sweep", "method.weight_fp=0.3,0.7", "--profile", "smoke"], capsys)
    assert code == 2 and "--sweep needs --method" in err
    code, _, err = run(["--sweep", "weight_fp", "--method", "unimatch", "--profile", "smoke"], capsys)
    assert code == 2 and err.startswith("error: bad sweep 'weight_fp'")
    with pytest.raises(SystemExit) as exc:
        ablate.main(["--profile", "smoke"])
    assert exc.value.code == 2 and "give --component NAME or --sweep" in capsys.readouterr().err


def test_sweep_of_an_unknown_method_key_fails_before_running(capsys, tmp_path):
    code, _, err = run(["--sweep", "method.nope=1,2", "--method", "unimatch", "--profile", "smoke",
                        "--results-dir", str(tmp_path), "--dry-run"], capsys)
    assert code == 2 and "method.nope" in err


def test_ablate_dry_run_lists_component_and_sweep_cells(capsys, tmp_path):
    code, out, err = run(["--component", "dual_strong", "--sweep", "method.weight_fp=0.25,0.5", "--method",
                          "unimatch", "--profile", "smoke", "--splits", "1_16", "--seeds", "2",
                          "--results-dir", str(tmp_path), "--dry-run"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    # per seed: plain + no_fp + no_ds + all_off + one sweep point (0.5 is the default: the plain cell)
    assert len(lines) == 2 * 5
    assert sum("output.variant=method.weight_fp=0.25" in line for line in lines) == 2
    assert all("--split 1_16" in line for line in lines)
    assert "ablation: 10 cells" in err


def test_ablate_reuses_a_finished_plain_cell(capsys, tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text("import sys, json, pathlib\n"
                      "a = sys.argv[1:]\n"
                      "pathlib.Path(a[a.index('--results-dir') + 1], 'calls.txt').open('a').write(' '.join(a) + '\\n')\n")
    monkeypatch.setattr(runner, "TRAIN_COMMAND", (sys.executable, str(script)))
    monkeypatch.setattr(runner, "prepare_data", lambda plans: None)
    monkeypatch.setattr(runner, "render_reports", lambda results, out: (0, "ok"))
    opts = RunOptions(profile="smoke", results_dir=str(tmp_path))
    plain = Cell("unimatch", "animals_tiny", "1_128", 0)
    state = cell_state(plan_cell(plain, opts))
    state.run_dir.mkdir(parents=True)
    (state.run_dir / "summary.json").write_text(json.dumps({"status": "complete", "config_hash": state.config_hash,
                                                            "best": {"miou": 40.0}}))
    code, _, err = run(["--component", "feature_perturbation", "--profile", "smoke", "--seeds", "1",
                        "--results-dir", str(tmp_path)], capsys)
    assert code == 0, err
    ran = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(ran) == 3 and all("output.variant=" in line for line in ran)
    assert "4 cells: 3 done, 1 skipped" in err


def test_list_shows_paper_and_inherited_components(capsys):
    assert ablate.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name, cls in all_methods().items():
        assert name in out
