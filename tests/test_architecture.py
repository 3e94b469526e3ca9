"""The shape of the code, checked: no import cycles among taskfit's modules, no module past ~600 lines.

Every ``import`` counts, including those inside functions: a lazy import hides a cycle from the interpreter,
not from a reader. Two kinds of edge do not count: from a submodule to its parent package (a package's
``__init__`` re-exporting its submodules is not a cycle), and imports under ``if TYPE_CHECKING:`` (annotations
only; they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "taskfit"
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_nodes(tree: ast.AST):
    """Every node, less the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                # `from pkg import submodule` imports the submodule; `from module import name` the module
                targets = [
                    f"{module}.{a.name}" if f"{module}.{a.name}" in files else module for a in node.names
                ]
            for target in targets:
                while target and target not in files:  # `import taskfit.a.b.c` of a name inside taskfit.a.b
                    target = target.rpartition(".")[0]
                if target.startswith("taskfit") and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_among_taskfit_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_over_600_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _sources() -> dict[Path, str]:
    root = SRC.parent
    paths = [*PACKAGE.rglob("*.py"), *(root / "tests").rglob("*.py"), *(root / "bench").rglob("*.py")]
    here = Path(__file__).resolve()  # its docstrings name the dead code they describe
    return {p: p.read_text(encoding="utf-8") for p in paths if p.resolve() != here}


def test_no_dead_constants_shims_or_marker_classes():
    """Issue 32's dead code, as three rules: a module-level CONSTANT nothing reads (PAIR_NAMES, HUB_IDS,
    incremental.SUPPORTED); a module that only re-exports another (the peft_encoder shim); a class with an
    empty body that nothing checks for (NerTask)."""
    import re

    sources = _sources()
    corpus = "\n".join(sources.values())

    def uses(name: str) -> int:
        return len(re.findall(rf"\b{name}\b", corpus))

    bases = {  # the classes other classes inherit from
        ast.unparse(b)
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(sources[path]))
        if isinstance(node, ast.ClassDef)
        for b in node.bases
    }
    dead = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(sources[path])
        where = str(path.relative_to(SRC))
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        reexports = all(
            isinstance(n, ast.Import | ast.ImportFrom)
            or (isinstance(n, ast.Assign) and [ast.unparse(t) for t in n.targets] == ["__all__"])
            for n in body
        )
        if body and reexports and path.name not in ("__init__.py", "__main__.py"):
            dead.append(f"{where}: only re-exports other modules")
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for t in targets:
                if isinstance(t, ast.Name) and re.fullmatch(r"[A-Z][A-Z0-9_]+", t.id) and uses(t.id) == 1:
                    dead.append(f"{where}:{node.lineno}: {t.id} is never read")
            marker = (  # an empty class others inherit from: it adds nothing unless something checks for it
                isinstance(node, ast.ClassDef)
                and node.name in bases
                and all(isinstance(n, ast.Expr | ast.Pass) for n in node.body)
            )
            if marker and not re.search(rf"(isinstance|issubclass|except)\b[^\n]*\b{node.name}\b", corpus):
                dead.append(f"{where}:{node.lineno}: class {node.name} has no body and nothing checks for it")
    assert not dead, dead


def test_no_class_is_known_under_a_second_name():
    """Issue 32: ``NerLora = NerTagger``-style aliases said a LoRA tagger was its own class; the registry names
    the one class each entry builds (its options pick the tuning method). A module-level assignment of a
    class defined in the same module is an alias."""
    aliases = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in classes:
                names = ", ".join(ast.unparse(t) for t in node.targets)
                aliases.append(f"{path.relative_to(SRC)}:{node.lineno}: {names} = {node.value.id}")
    assert not aliases, "class aliases:\n" + "\n".join(aliases)


def test_compare_reads_what_a_strategy_declares_and_probes_no_config():
    """Issue 32: what compare/ needs to know about a strategy (does it train by epochs, hold one
    demonstration prefix, choose a calibration, augment its shots) is declared by its config
    (``StrategyBase.trains_by_epoch`` and the methods beside it); compare/ never sniffs config fields with
    getattr/hasattr or ``model_fields`` (it had 23 getattr probes and 6 model_fields checks)."""
    config_names = {"config", "cfg", "s", "settings", "strategy_config", "fold_config", "final_config"}
    probes = []
    for path in sorted((PACKAGE / "compare").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and node.attr == "model_fields":
                probes.append(f"{where}: {ast.unparse(node)}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and node.args
                and ast.unparse(node.args[0]).split(".")[0] in config_names
            ):
                probes.append(f"{where}: {ast.unparse(node)}")
    assert not probes, "strategy configs probed in compare/:\n" + "\n".join(probes)


def test_every_registered_config_declares_what_its_fields_say():
    """The declarations agree, entry by entry, with what compare/ used to read off the config's fields."""
    from taskfit.registry import ENTRIES

    for entry in ENTRIES:
        for extra in (
            {},
            {"selection": "similar", "calibration": "none"},
            {"prompt_search": {"templates": ["{text} {answer}"]}},
        ):
            fields = entry.config.model_fields
            if any(k not in fields for k in extra):
                continue
            config = entry.config.model_validate({"name": entry.name, **extra})
            values = config.model_dump()
            assert config.trains_by_epoch() == ("epochs" in fields), entry.name
            assert (config.epoch_patience() is not None) == ("patience" in fields), entry.name
            assert config.calibration_setting() == values.get("calibration"), entry.name
            one_prefix = (
                "demos_per_class" in fields
                and "epochs" not in fields
                and values.get("selection") != "similar"
                and values.get("prompt_search") is None
            )
            assert config.holds_one_prefix() == one_prefix, (entry.task, entry.name, extra)
            assert config.searches_prompts() == (values.get("prompt_search") is not None), entry.name
            assert config.augmentation() == getattr(config, "augment", None), entry.name
            assert config.token_budget() == values.get("max_length"), entry.name


def test_no_function_in_compare_or_serving_is_over_100_lines():
    """Issue 32: the cell worker as named steps, the final model's card apart from its fit, the server's
    routes grouped around one Service; functions read in one screen or two. (cli.build_parser is still
    over: issue 32.)"""
    long = []
    for path in sorted([*(PACKAGE / "compare").glob("*.py"), *(PACKAGE / "serving").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno - node.lineno >= 100
            ):
                long.append(
                    f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1}"
                )
    assert not long, "functions over 100 lines:\n" + "\n".join(long)


def test_task_names_and_metrics_are_listed_once():
    """Issue 32: the task names were declared four times (registry.TASKS, tasks._TASKS, the config's Task
    Literal, TASK_METRICS' keys). One table, taskfit.tasks.catalog; the others read it."""
    from typing import get_args

    from taskfit import registry, tasks
    from taskfit.config import TASK_METRICS
    from taskfit.config.experiment import Task
    from taskfit.tasks.catalog import TASK_NAMES

    assert get_args(Task) == TASK_NAMES and registry.TASKS is TASK_NAMES and tasks.TASK_NAMES is TASK_NAMES
    assert tuple(TASK_METRICS) == TASK_NAMES
    assert all(tasks.get_task(name).metric_keys == TASK_METRICS[name] for name in TASK_NAMES)
    listed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "catalog.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            items = (
                node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else getattr(node, "keys", None)
            )
            if items is None:
                continue
            names = {i.value for i in items if isinstance(i, ast.Constant) and i.value in TASK_NAMES}
            if len(names) >= 3:
                listed.append(f"{path.relative_to(SRC)}:{node.lineno}: {sorted(names)}")
    assert not listed, "task names listed outside taskfit/tasks/catalog.py:\n" + "\n".join(listed)
