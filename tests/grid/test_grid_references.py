"""grid.references: method:split cells trained for every seed beside the methods × splits grid."""
from __future__ import annotations

import pytest

from benchmark.grid import cells as grid
from benchmark.train.config import ConfigError
from datasets.errors import DataError


def test_reference_cells_every_seed_marked_and_not_repeated():
    plan = grid.load_plan("smoke", ["grid.references=[supervised:1_8, fixmatch:1_4]", "grid.splits=['1_32']"],
                          seeds=3)
    assert plan.references == (("supervised", "1_8"), ("fixmatch", "1_4"))
    cells = grid.reference_cells(plan)
    assert [(c.method, c.split, c.seed) for c in cells] == [
        (m, s, seed) for seed in range(3) for m, s in (("supervised", "1_8"), ("fixmatch", "1_4"))]
    assert all(c.overrides == (grid.REFERENCE_OVERRIDE,) and c.variant == "" for c in cells)
    # A reference the grid already trains is the grid's cell; --methods limits references like the grid.
    plan = grid.load_plan("smoke", ["grid.references=[supervised:1_32]", "grid.splits=['1_32']"])
    assert grid.reference_cells(plan) == []
    plan = grid.load_plan("smoke", ["grid.references=[supervised:1_8]"], methods=["fixmatch"])
    assert grid.reference_cells(plan) == []


@pytest.mark.parametrize("entry, error, words", [
    ("supervised", ConfigError, "expected method:split"),
    ("supervised:nosuchsplit", DataError, "unknown split 'nosuchsplit'"),
])
def test_bad_reference_entries_are_named(entry, error, words):
    with pytest.raises(error, match=words):
        grid.load_plan("smoke", [f"grid.references=[{entry}]"])


def test_reference_override_sets_output_reference():
    from benchmark.train.config import resolve
    cfg = resolve(profile="smoke", method="supervised", overrides=[grid.REFERENCE_OVERRIDE])
    assert cfg.output.reference is True
    assert cfg.hash() == resolve(profile="smoke", method="supervised").hash()   # same recipe, same run
