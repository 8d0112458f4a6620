"""The codebase's shape (issue 33): imports flow one way, so a module can be read without the ones above it."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, here: str) -> set[str]:
    """Every module name `path` imports (and each `from X import name` as X.name), lazy imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = here.split(".")[:len(here.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names |= {target} | {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def import_graph(package: str = "sbir_core") -> dict[str, set[str]]:
    """{module: modules of `package` it imports}, lazy imports inside functions included."""
    files = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in imported_names(path, here) if m in files and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a loop (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while group[-1:] != [v]:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_lazy_import_loop():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_library():
    graph = import_graph()
    assert "sbir_core.gallery" in graph["sbir_core.search"]          # the graph sees real imports
    assert cycles(graph) == []


def test_no_import_cycles_in_the_app():
    graph = import_graph("ui")
    assert "ui.session" in graph["ui.canvas"]
    assert cycles(graph) == []


def test_the_library_never_imports_the_app_or_streamlit():
    """sbir_core is usable from scripts and tests without a UI: no import of ui, app or streamlit. The
    benchmark alone may: it measures the running app through Streamlit's wire protocol."""
    wrong = {}
    for path in (ROOT / "sbir_core").rglob("*.py"):
        name = module_name(path)
        if name.startswith("sbir_core.bench"):
            continue
        here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        bad = {m for m in imported_names(path, here) if m.split(".")[0] in ("ui", "app", "streamlit")}
        if bad:
            wrong[name] = sorted(bad)
    assert wrong == {}


def test_nothing_but_the_benchmark_imports_the_benchmark():
    """The benchmark depends on everything; train/, export/, the library and the app never on it."""
    wrong = {}
    for folder in ("sbir_core", "export", "ui", "pages", "galleries"):
        for path in (ROOT / folder).rglob("*.py"):
            name = module_name(path)
            if name.startswith("sbir_core.bench"):
                continue
            here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
            bad = {m for m in imported_names(path, here) if m == "sbir_core.bench" or m.startswith("sbir_core.bench.")}
            if bad:
                wrong[name] = sorted(bad)
    assert wrong == {}


def test_no_module_outside_training_is_over_450_lines():
    """A module a newcomer opens fits in one sitting; training loops (train/) may be longer."""
    long = {str(p.relative_to(ROOT)): n for folder in ("sbir_core", "export", "ui", "pages", "galleries")
            for p in (ROOT / folder).rglob("*.py") if "train" not in p.relative_to(ROOT).parts
            and (n := len(p.read_text().splitlines())) > 450}
    long.update({"app.py": n} if (n := len((ROOT / "app.py").read_text().splitlines())) > 450 else {})
    assert long == {}
