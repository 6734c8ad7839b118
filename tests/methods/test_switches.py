"""Every registered method's own switches, each against the full method: switching one off changes only the
loss terms the method declares for it (`Method.component_terms`); every other term stays bit-identical.
A new method gets this test by registering; it fails until the method declares its components' terms."""
import pytest
import torch

from methods.registry import all_methods, get
from tests.conftest import build, make_batch, run

# About the median confidence of the untrained pixel model: pseudo-labels that move, move the loss.
THRESH = 0.41
SWITCHES = [(cls.name, component) for cls in all_methods().values() for component in cls.paper_components()
            if cls.components[component]]


@pytest.mark.parametrize("method, component", SWITCHES)
def test_each_switch_changes_only_its_own_terms(method, component, pixel_model):
    declared = get(method).component_terms
    assert component in declared, f"{method} declares no component_terms for {component!r}"
    own = set(declared[component])
    batch = make_batch(size=16)
    full = run(build(method, thresh=THRESH), pixel_model, batch)
    off = run(build(method, {component: False}, thresh=THRESH), pixel_model, batch)
    others = (set(full.terms) | set(off.terms)) - own
    assert others <= set(full.terms) & set(off.terms), (component, others)
    for name in others:
        assert torch.equal(off.terms[name], full.terms[name]), (component, name)
    assert any(name not in off.terms or name not in full.terms or not torch.equal(off.terms[name], full.terms[name])
               for name in own & (set(full.terms) | set(off.terms))), f"{component} changes none of its terms"


def test_every_suite_method_with_switches_is_covered():
    assert {m for m, _ in SWITCHES} >= {"unimatch", "s4mim", "maskmatch"}


def test_significance_baselines_are_declared_not_inherited():
    from methods.base import Method
    from methods.registry import builtin_names, strongest_baseline

    class Extension(Method):   # built on a baseline, as S4MIM is: not a baseline itself
        name, base = "extension", "unimatch"

    assert get("unimatch").significance_baseline and not Extension.significance_baseline
    assert not get("s4mim").significance_baseline
    assert [n for n in builtin_names() if get(n).significance_baseline] == ["supervised", "unimatch"]
    assert strongest_baseline() == "unimatch"
    # A suite method built on another holds one (Method.make_base): none inherits another's declarations.
    assert all(get(n).__bases__ == (Method,) for n in builtin_names())
