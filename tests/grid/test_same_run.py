"""Ablation variants that train exactly another method's run: the methods' claims, that they hold end to end,
the runner's check against resolved configs, the pointer it writes, and how the report reads it."""
from __future__ import annotations

import json

import pytest
import torch

from benchmark.grid import runner
from benchmark.grid.plan import RunOptions
from benchmark.errors import run_main
from benchmark.train.config import resolve
from benchmark.grid.cells import Cell
from fixtures.fake_cells import use_fake_train
from benchmark.report.results_store import load_results
from benchmark.grid.plan import Plans, plan_cell
from benchmark.grid.same_run import POINTER, same_run_of
from benchmark.train.run_setup import build_method
from benchmark.train.trainer import CHECKPOINT, Trainer
from methods.base import SameRun
from methods.fixmatch import FixMatchParams
from methods.unimatch import UniMatchParams

S4MIM_OFF = ("method.components.mim=false",)
MASKMATCH_OFF = ("method.components.masked_modeling=false", "method.components.multiscale_ensemble=false")


def claim(method: str, *overrides: str) -> SameRun | None:
    cfg = resolve(profile="smoke", method=method, overrides=list(overrides))
    return build_method(cfg, num_classes=4).same_run_as()


def test_methods_claim_their_base_only_when_their_own_components_are_off():
    assert claim("s4mim") is None
    assert claim("s4mim", "method.components.feature_agg=false") is None
    assert claim("s4mim", *S4MIM_OFF) == SameRun("unimatch", UniMatchParams(),
                                                 {"feature_perturbation": True, "dual_strong": True})
    assert claim("s4mim", *S4MIM_OFF, "method.weight_fp=0.3", "method.components.dual_strong=false") == \
        SameRun("unimatch", UniMatchParams(weight_fp=0.3), {"feature_perturbation": True, "dual_strong": False})
    assert claim("maskmatch") is None
    assert claim("maskmatch", "method.components.masked_modeling=false") is None
    assert claim("maskmatch", *MASKMATCH_OFF) == SameRun("fixmatch", FixMatchParams(), {})
    assert claim("maskmatch", *MASKMATCH_OFF, "method.teacher=ema") is None     # EMA labels are not the base's
    assert claim("maskmatch", *MASKMATCH_OFF, "method.base=unimatch", "method.weight_fp=0.4") == \
        SameRun("unimatch", UniMatchParams(weight_fp=0.4), {"feature_perturbation": True, "dual_strong": True})
    for method in ("supervised", "fixmatch", "unimatch"):
        assert claim(method) is None


@pytest.mark.parametrize("method, overrides", [("s4mim", S4MIM_OFF), ("maskmatch", MASKMATCH_OFF),
                                               ("maskmatch", (*MASKMATCH_OFF, "method.base=unimatch"))])
def test_a_claimed_same_run_trains_identical_weights(method, overrides, tiny_data, tmp_path):
    """The claim the runner relies on, end to end: same weights and scores after 3 steps."""
    def train(name, *extra):
        cfg = resolve(profile="smoke", method=name, overrides=[
            f"data.root={tiny_data}", f"output.results_dir={tmp_path / name}",
            "train.iters=3", "eval.every=3", "loss.conf_thresh=0.0", *extra])   # every unlabeled term active
        summary = Trainer(cfg, progress=False).fit()
        weights = torch.load(next((tmp_path / name).rglob(CHECKPOINT)), weights_only=True)["model"]
        return summary, weights

    same = claim(method, *overrides)
    base_overrides = [f"method.{k}={v}" for k, v in vars(same.params).items()] + \
                     [f"method.components.{k}={str(v).lower()}" for k, v in same.components.items()]
    mine, my_weights = train(method, *overrides)
    theirs, their_weights = train(same.method, *base_overrides)
    assert mine["best"]["miou"] == theirs["best"]["miou"]
    assert mine["best"]["per_class"] == theirs["best"]["per_class"]
    assert my_weights.keys() == their_weights.keys()
    assert all(torch.equal(my_weights[k], their_weights[k]) for k in my_weights)


def test_a_method_claims_its_base_only_when_it_declares_it_reduces_to_it():
    from methods.base import Method, MethodContext

    class OnFixMatch(Method):
        name = "fake_on_fixmatch"
        base = "fixmatch"
        components = {"extra": True}

    def claim_of(cls):
        return cls(cls.make_params({}), {"extra": False}, MethodContext(3)).same_run_as()

    assert claim_of(OnFixMatch) is None                  # a base alone does not make the run the base's

    class Declared(OnFixMatch):
        reduces_to_base = True

    assert claim_of(Declared) == SameRun("fixmatch", FixMatchParams(), {})


def same_run_cell(cell: Cell, opts: RunOptions) -> Cell | None:
    plans = Plans(opts)
    other = same_run_of(plans(cell), plans)
    return other.cell if other else None


def test_the_runner_reuses_a_run_only_when_the_resolved_configs_agree(tmp_path):
    opts = RunOptions(profile="smoke", results_dir=str(tmp_path))
    no_mim = Cell("s4mim", "animals_tiny", "1_32", 1, "no_mim", S4MIM_OFF)
    assert same_run_cell(no_mim, opts) == Cell("unimatch", "animals_tiny", "1_32", 1)
    assert same_run_cell(Cell("s4mim", "animals_tiny", "1_32", 1), opts) is None          # a grid row always runs
    assert same_run_cell(Cell("s4mim", "animals_tiny", "1_32", 1, "no_feature_agg",
                              ("method.components.feature_agg=false",)), opts) is None
    # A setting the profile (here: the user) applies to S4MIM only makes it another run than UniMatch's.
    only_s4mim = RunOptions(profile="smoke", results_dir=str(tmp_path), overrides=("per_method.s4mim.weight_fp=0.3",))
    assert same_run_cell(no_mim, only_s4mim) is None
    # ... while one for every method keeps them the same run.
    everyone = RunOptions(profile="smoke", results_dir=str(tmp_path), overrides=("train.iters=7",))
    assert same_run_cell(no_mim, everyone) == Cell("unimatch", "animals_tiny", "1_32", 1)


FAKE_TRAIN = r'''
import json, sys
from pathlib import Path
argv = sys.argv[1:]
opt = lambda name: argv[argv.index(name) + 1]
variant = next((a.split("=", 1)[1] for a in argv if a.startswith("output.variant=")), "")
method = opt("--method")
name = f"{method}__{variant}" if variant else method
run = Path(opt("--results-dir")) / "runs" / opt("--dataset") / opt("--split") / name / f"seed{opt('--seed')}"
run.mkdir(parents=True, exist_ok=True)
with open(Path(opt("--results-dir")) / "calls.txt", "a") as fh:
    fh.write(run.parent.name + "\n")
'''


def test_run_all_trains_the_shared_run_once_and_the_report_reads_it_under_the_variant(tmp_path, monkeypatch,
                                                                                       capsys):
    results = use_fake_train(tmp_path, monkeypatch, FAKE_TRAIN)
    argv = ["--profile", "smoke", "--results-dir", str(results), "--methods", "unimatch,s4mim", "--splits", "1_32",
            "--seeds", "1", "grid.ablations=[mim]"]
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: runner.main(argv))
    err = capsys.readouterr().err
    assert exc.value.code == 0, err
    trained = (results / "calls.txt").read_text().split()
    assert "unimatch" in trained and "s4mim__no_mim" not in trained and trained.count("unimatch") == 1
    assert "1 more reuse one of these runs" in err and "1 same run" in err

    # The report reads the UniMatch run's numbers under S4MIM's no_mim name, with S4MIM's switches.
    opts = RunOptions(profile="smoke", results_dir=str(results))
    base_dir = results / "runs" / "animals_tiny" / "1_32" / "unimatch" / "seed0"
    pointer = results / "runs" / "animals_tiny" / "1_32" / "s4mim__no_mim" / "seed0" / POINTER
    base_hash = plan_cell(Cell("unimatch", "animals_tiny", "1_32", 0), opts).config_hash
    (base_dir / "summary.json").write_text(json.dumps({
        "status": "complete", "dataset": "animals_tiny", "split": "1_32", "method": "unimatch", "seed": 0,
        "best": {"iter": 4, "miou": 12.5, "per_class": {"background": 25.0}}, "config_hash": base_hash}))
    store = load_results(results)
    (reused,) = [r for r in store.runs if r.variant == "no_mim"]
    assert (reused.method, reused.best.miou, reused.same_run_as) == ("s4mim", 12.5, "unimatch")
    assert reused.components["mim"] is False and reused.from_paper_description
    assert json.loads(pointer.read_text())["same_run_as"] == "../../unimatch/seed0"

    # A base run redone with another recipe voids the pointer: the variant is skipped, with the reason.
    summary = json.loads((base_dir / "summary.json").read_text())
    (base_dir / "summary.json").write_text(json.dumps({**summary, "config_hash": "another"}))
    store = load_results(results)
    assert not [r for r in store.runs if r.variant == "no_mim"]
    assert any("redone with another recipe" in s.reason for s in store.skipped)


def test_dry_run_shows_which_variant_reuses_which_run(tmp_path, capsys):
    argv = ["--profile", "smoke", "--results-dir", str(tmp_path), "--methods", "unimatch,s4mim", "--splits", "1_32",
            "--seeds", "1", "--dry-run", "grid.ablations=[mim]"]
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: runner.main(argv))
    out = capsys.readouterr()
    assert exc.value.code == 0
    lines = out.out.strip().splitlines()
    # unimatch, s4mim and its three other leave-one-out variants train; no_mim (= all_off) reuses unimatch
    assert [line.split()[0] for line in lines] == ["to"] * 5 + ["same"]
    assert "s4mim__no_mim animals_tiny/1_32 seed0" in lines[-1] and lines[-1].endswith("reuses unimatch "
                                                                                       "animals_tiny/1_32 seed0")
    assert "5 cells (0 finished, 5 to run, 1 more reuse one of these runs)" in out.err
    assert not (tmp_path / "runs").exists()       # a dry run writes nothing, pointers included
