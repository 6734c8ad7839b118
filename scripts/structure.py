"""The code's shape, counted: modules per folder, import cycles, imports inside functions (and whether each says
why), the longest functions and files. Standard library only; `tests/test_structure.py` holds the suite to it.

    python scripts/structure.py              # the counts, as Markdown
    python scripts/structure.py --list       # also every import inside a function and every long function
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "methods", "datasets")
LONG_FUNCTION = 50


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: set[str] = field(default_factory=set)            # internal modules imported at module level
    local_imports: list[tuple[int, str, bool]] = field(default_factory=list)   # (line, module, has a reason)
    functions: list[tuple[str, int, int]] = field(default_factory=list)      # (qualified name, line, length)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _targets(node: ast.AST, here: str, is_package: bool, known: set[str]) -> list[str]:
    """Internal modules an import statement loads (`from a import b` is module a.b when that is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = here.split(".") if is_package else here.split(".")[:-1]
            anchor = anchor[:len(anchor) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    return [n for n in names if n.split(".")[0] in PACKAGES and n in known]


def _in_type_checking(parents: list[ast.AST]) -> bool:
    return any(isinstance(p, ast.If) and "TYPE_CHECKING" in ast.unparse(p.test) for p in parents)


def scan(paths: list[Path]) -> dict[str, Module]:
    known = {module_name(p) for p in paths}
    modules: dict[str, Module] = {}
    for path in paths:
        text = path.read_text()
        lines = text.splitlines()
        mod = Module(module_name(path), path, len(lines))
        tree = ast.parse(text)
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, parents: list[ast.AST], qual: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{qual}.{child.name}" if qual else child.name
                    if not isinstance(child, ast.ClassDef):
                        mod.functions.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                    visit(child, parents + [child], name)
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)) and not _in_type_checking(parents):
                    in_function = any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) for p in parents)
                    targets = _targets(child, mod.name, is_package, known)
                    if in_function:
                        line = child.lineno
                        reason = "#" in lines[line - 1] or lines[line - 2].strip().startswith("#")
                        shown = ast.unparse(child).split(" import ")[0].replace("from ", "").replace("import ", "")
                        mod.local_imports.append((line, shown, reason))
                    else:
                        mod.imports.update(targets)
                visit(child, parents + [child], qual)

        visit(tree, [], "")
        modules[mod.name] = mod
    return modules


def local_import_edges(modules: dict[str, Module], paths: list[Path]) -> dict[str, set[str]]:
    """Module -> internal modules it imports inside functions (they close cycles as surely as top-level ones)."""
    known = set(modules)
    edges: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        edges[name].update(_targets(inner, name, path.name == "__init__.py", known))
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def analyse() -> dict:
    paths = source_files()
    modules = scan(paths)
    graph = {name: set(m.imports) for name, m in modules.items()}
    for name, extra in local_import_edges(modules, paths).items():
        graph.setdefault(name, set()).update(extra)
    for name in graph:   # a package's modules import from each other through the package, not into its __init__
        graph[name].discard(name)
    folders = Counter(str(m.path.parent.relative_to(REPO)) for m in modules.values() if m.path.name != "__init__.py")
    functions = [(f"{m.name}.{fn}", length) for m in modules.values() for fn, _, length in m.functions]
    local = [(m.name, line, what, reason) for m in modules.values() for line, what, reason in m.local_imports]
    return {"folders": dict(sorted(folders.items())), "cycles": cycles(graph),
            "local_imports": sorted(local), "functions": sorted(functions, key=lambda f: -f[1]),
            "files": sorted(((str(m.path.relative_to(REPO)), m.lines) for m in modules.values()),
                            key=lambda f: -f[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list every function-level import and long function")
    args = parser.parse_args(argv)
    facts = analyse()
    print("| folder | modules |\n|---|---|")
    for folder, n in facts["folders"].items():
        print(f"| `{folder}/` | {n} |")
    print(f"\nimport cycles: {len(facts['cycles'])}")
    for cycle in facts["cycles"]:
        print("  " + " <-> ".join(cycle))
    local = facts["local_imports"]
    by_module = Counter(m for m, *_ in local)
    print(f"imports inside functions: {len(local)} ({sum(1 for *_, r in local if not r)} without a reason); "
          f"most: " + ", ".join(f"{m} {n}" for m, n in by_module.most_common(5)))
    long = [f for f in facts["functions"] if f[1] > LONG_FUNCTION]
    print(f"functions over {LONG_FUNCTION} lines: {len(long)}; longest: "
          + ", ".join(f"{name} {n}" for name, n in facts["functions"][:5]))
    print("longest files: " + ", ".join(f"{p} {n}" for p, n in facts["files"][:5]))
    if args.list:
        print("\nimports inside functions:")
        for module, line, what, reason in local:
            print(f"  {module}:{line} {what}{'' if reason else '   (no reason given)'}")
        print(f"\nfunctions over {LONG_FUNCTION} lines:")
        for name, n in long:
            print(f"  {name} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
