"""The package's shape, checked from its source: the import graph has no cycle and points
downward only, nothing in lib/ imports the dev tooling or the tests, no function is long, and
only the lake layout builds lake paths. No Spark: these read files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
PACKAGE = LIB / "lakeloop"
MAX_FUNCTION_LINES = 80

# Each module's layer; a module may import only from lower layers or from its own subpackage.
# Shared contracts sit below the steps, so no step needs another step's internals.
LAYERS = {
    "errors": 0,
    "layout": 1, "stacks": 1,
    "config": 2,
    "io": 3,
    "report": 4, "faults": 4, "preprocess": 4, "tabular": 4, "registry": 4, "metrics": 4, "figures": 4, "tracking": 4,
    "splits": 4,
    "models": 5,
    "ingest": 6, "features": 6, "training": 6, "scoring": 6, "evaluation": 6, "ops": 6,
    "runtime": 7,
    "deploy": 8,
    "cli": 9, "__init__": 9,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (imports inside functions count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def internal_graph() -> dict[str, set[str]]:
    """lakeloop module -> the lakeloop modules it imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        # The top package itself is no edge: every import passes through its __init__, which only
        # names the public API lazily (and __version__).
        graph[name] = {t for t in imported(path) if t in known and t not in (name, "lakeloop")}
    return graph


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS["__init__" if len(parts) == 1 else parts[1]]


def test_every_module_has_a_layer():
    assert [name for name in modules() if (name.split(".") + ["__init__"])[1] not in LAYERS] == []


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle found by a depth-first walk, as the list of modules around it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a module's own layer or a higher one, outside its own subpackage."""
    wrong = []
    for name, targets in graph.items():
        for target in targets:
            same_package = name.split(".")[1] == target.split(".")[1]  # e.g. within lakeloop.ingest
            if not same_package and layer(target) >= layer(name):
                wrong.append(f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})")
    return sorted(wrong)


def test_the_import_graph_of_lib_has_no_cycle():
    assert find_cycles(internal_graph()) == []


def test_modules_import_only_lower_layers_or_their_own_subpackage():
    assert upward_imports(internal_graph()) == []


def test_the_checks_see_lazy_imports_and_catch_a_cycle_and_an_upward_import():
    # imported() must see imports inside functions, or the graph would miss most edges.
    assert "lakeloop.runtime.session" in imported(PACKAGE / "cli" / "lake.py")
    graph = internal_graph()
    assert "lakeloop.io.lakefs" in graph["lakeloop.registry"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert upward_imports({"lakeloop.io.delta": {"lakeloop.scoring.job"},
                           "lakeloop.scoring.job": {"lakeloop.training.driver", "lakeloop.io.delta"},
                           "lakeloop.ingest.tables": {"lakeloop.ingest.table_read"}}) == [
        "lakeloop.io.delta (layer 3) imports lakeloop.scoring.job (layer 6)",
        "lakeloop.scoring.job (layer 6) imports lakeloop.training.driver (layer 6)",
    ]


def test_nothing_in_lib_imports_the_dev_tooling_or_the_tests():
    forbidden = ("lakeloop_dev", "support", "conftest", "tests", "dev", "sklearn")
    found = {name: sorted(t for t in imported(path) if t.split(".")[0] in forbidden)
             for name, path in modules().items()}
    assert {name: names for name, names in found.items() if names} == {}


def long_functions(source: str) -> list[str]:
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(LIB)))
def test_no_function_in_lib_is_longer_than_80_lines(path):
    assert long_functions(path.read_text(encoding="utf-8")) == []


# Folder names of the lake that only lakeloop.layout may put into a path.
LAKE_FOLDERS = ("/bronze", "/silver", "/gold", "/quarantine", "/_ledger", "/_training_sets", "/_checkpoints",
                "/_reports", "/models")


def lake_paths_built(source: str) -> list[int]:
    """Lines of f-strings that put one of the lake's folder names into a path."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if any(folder + "/" in text + "/" for folder in LAKE_FOLDERS):
                lines.append(node.lineno)
    return lines


def test_only_the_lake_layout_builds_lake_paths():
    offenders = {name: lake_paths_built(path.read_text(encoding="utf-8"))
                 for name, path in modules().items() if name != "lakeloop.layout"}
    assert {name: lines for name, lines in offenders.items() if lines} == {}


def test_the_length_and_lake_path_checks_catch_what_they_look_for():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}\n") == [f"f ({MAX_FUNCTION_LINES + 1} lines, line 1)"]
    assert long_functions("def g():\n    return 1\n") == []
    assert lake_paths_built('uri = f"{root}/_checkpoints/{name}"\nok = f"{root}/elsewhere"') == [1]


def _module_names() -> list[str]:
    return sorted(".".join(("lakeloop", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
                  for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", _module_names())
def test_every_module_of_the_package_imports_on_this_stack(module):
    """An edit anywhere meets at least this test in the quick tier (./dev/test.sh --quick)."""
    import importlib
    import importlib.util

    if module == "lakeloop.io.petastorm_fs" and importlib.util.find_spec("pyarrow.filesystem") is None:
        pytest.skip("Petastorm's filesystem adapter needs pyarrow's legacy filesystem API: the spark40 stack")
    importlib.import_module(module)


def test_no_step_reads_a_run_report():
    """Run reports are write-only records: what a later run must know lives in the lake, kept by
    the step that needs it (lakeloop.io.step_state). Only the report pages and ``show`` read them."""
    readers = {"lakeloop/ops/pages.py", "lakeloop/layout.py"}
    found = [str(p.relative_to(LIB)) for p in PACKAGE.rglob("*.py")
             if str(p.relative_to(LIB)) not in readers and
             any(name in p.read_text(encoding="utf-8") for name in ("latest_report(", "read_latest_report"))]
    assert found == []


def profile_definitions(paths, root: Path = LIB) -> list[str]:
    """Each ``add_argument("--profile", ...)`` call in ``paths``, as ``path:line`` under ``root``."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
                    and any(isinstance(a, ast.Constant) and a.value == "--profile" for a in node.args)):
                found.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return found


def test_profile_is_defined_in_one_place():
    """One ``--profile`` (one default) and ``--set`` for every command line: lakeloop.cli.common's helper."""
    assert [d.split(":")[0] for d in profile_definitions(sorted(PACKAGE.rglob("*.py")))] == ["lakeloop/cli/common.py"]


def test_only_the_cli_package_parses_arguments():
    """The library's modules are plain functions; each command group's parser is a module of lakeloop.cli."""
    assert sorted(name for name, path in modules().items()
                  if "argparse" in imported(path) and not name.startswith("lakeloop.cli")) == []


def test_the_profile_check_finds_each_definition_and_only_definitions(tmp_path):
    (tmp_path / "a.py").write_text('import argparse\np = argparse.ArgumentParser()\n'
                                   'p.add_argument("--set")\np.add_argument("--profile", default="yarn")\n')
    (tmp_path / "b.py").write_text('command = ["--profile", "local"]  # an argument passed on, not defined\n')
    assert profile_definitions([tmp_path / "a.py", tmp_path / "b.py"], tmp_path) == ["a.py:4"]


MAX_MODULE_LINES = 600


def test_no_module_in_lib_is_over_600_lines():
    lines = {str(p.relative_to(LIB)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {path: n for path, n in lines.items() if n > MAX_MODULE_LINES} == {}


ROOT_LAYERS = {0, 1, 4}  # the base (errors, layout, stacks) and the shared contracts


def test_the_root_of_the_package_holds_only_the_base_and_the_shared_contracts():
    """Steps, operator tools (ops/), runtime, deploy and the command line (cli/) are subpackages."""
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__" and LAYERS[p.stem] not in ROOT_LAYERS)
    assert loose == []


def test_no_module_imports_a_private_name_of_another_module():
    """A module uses another's public names only (the scoring drivers share lakeloop.scoring.core
    and lakeloop.scoring.inputs, not each other's internals)."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lakeloop") and \
                    node.module != name:
                found += [f"{name} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []
