"""The house rules of the code's shape (docs/architecture.md), counted by scripts/structure.py."""
import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("structure", ROOT / "scripts" / "structure.py")
structure = sys.modules["structure"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(structure)


@pytest.fixture(scope="module")
def facts():
    return structure.analyse()


@pytest.fixture(scope="module")
def modules():
    return structure.scan(structure.source_files())


def test_no_import_cycles(facts):
    assert facts["cycles"] == []


def test_no_function_over_fifty_lines(facts):
    long = [(name, n) for name, n in facts["functions"] if n > structure.LONG_FUNCTION]
    assert long == []


def test_every_import_inside_a_function_says_why(facts):
    silent = [f"{module}:{line} {what}" for module, line, what, reason in facts["local_imports"] if not reason]
    assert silent == []


def _imports_of(start: str, modules) -> set[str]:
    """Every module `start` loads at import time (module-level imports, transitively)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        todo += modules[name].imports
    return seen - {start}


@pytest.mark.parametrize("planning", ["benchmark.grid.cells", "benchmark.grid.plan", "benchmark.grid.variants"])
def test_planning_a_cell_does_not_import_the_trainer(planning, modules):
    assert "benchmark.train.trainer" not in _imports_of(planning, modules)


def test_training_does_not_import_the_grid(modules):
    for name in ("benchmark.train.trainer", "benchmark.train.command"):
        assert not {m for m in _imports_of(name, modules) if m.startswith("benchmark.grid")}


def test_training_does_not_import_the_report(modules):
    assert not {m for m in _imports_of("benchmark.train.trainer", modules) if m.startswith("benchmark.report")}


@pytest.mark.parametrize("command", ["benchmark.grid", "benchmark.ablate", "benchmark.train", "benchmark.report"])
def test_help_is_answered_before_torch_loads(command):
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", command, "--help"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "torch" not in loaded


def _method_names() -> set[str]:
    from methods import registry
    return set(registry.builtin_names())


def test_no_method_name_literals_outside_the_methods_layer():
    """A method is named in its own file and in the profiles only: the rest asks the registry."""
    names = _method_names()
    found = []
    for path in sorted((ROOT / "benchmark").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []


def test_profiles_list_methods_only_to_choose_a_subset():
    names = _method_names()
    for path in sorted((ROOT / "benchmark" / "configs" / "profiles").glob("*.yaml")):
        listed = (yaml.safe_load(path.read_text()) or {}).get("grid", {}).get("methods")
        if listed is None or listed == "all":
            continue
        assert set(listed) < names, f"{path.name} lists every method: say `methods: all`"


@pytest.mark.parametrize("base", ["benchmark.errors", "benchmark.plugins"])
def test_what_the_subpackages_share_imports_none_of_them(base, modules):
    # The error types with run_main, and the plugin loader, are imported by train, grid and the diagnostics: an
    # import back into a subpackage would be an arrow pointing up.
    subpackages = ("benchmark.train", "benchmark.grid", "benchmark.diagnostics", "benchmark.report")
    assert not {m for m in _imports_of(base, modules) if m.startswith(subpackages)}
