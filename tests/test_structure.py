"""The package's structure: the import graph of echojax/ has no cycle (module-level and function-level imports
alike), and the commands that read a finished run (evaluate, predict, export) go through the run layer, never
through the trainer. In tests/, no test file imports another: shared code lives in tests/helpers/."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "echojax"
TESTS = Path(__file__).resolve().parent


def _module_name(path: Path) -> str:
  parts = path.relative_to(PKG.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
  """module -> the echojax modules it imports anywhere in its body (``from echojax import x`` -> echojax.x when x
  is a module)."""
  modules = {_module_name(p): p for p in PKG.rglob("*.py")}
  graph: dict[str, set[str]] = {m: set() for m in modules}
  for mod, path in modules.items():
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
      for t in targets:
        while t and t not in modules:  # echojax.data.pipeline.make_loader -> echojax.data.pipeline
          t = t.rpartition(".")[0]
        if t and t != mod:
          graph[mod].add(t)
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle (as a list of modules, first == last), or None. Importing a package's __init__ from one of
  its own submodules is not counted: Python runs the package __init__ first anyway."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(m: str) -> list[str] | None:
    state[m] = 1
    stack.append(m)
    for n in sorted(graph[m]):
      if m.startswith(n + "."):
        continue
      if state.get(n) == 1:
        return stack[stack.index(n):] + [n]
      if n not in state:
        found = visit(n)
        if found:
          return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def test_import_graph_has_no_cycle():
  graph = import_graph()
  assert "echojax.run" in graph and "echojax.train" in graph
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
  g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
  assert find_cycle(g) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_commands_that_read_a_run_do_not_import_the_trainer():
  graph = import_graph()

  def reaches(src: str, dst: str) -> bool:
    seen, todo = set(), [src]
    while todo:
      m = todo.pop()
      if m == dst:
        return True
      if m not in seen:
        seen.add(m)
        todo.extend(graph[m])
    return False

  for cmd in ("echojax.evaluate", "echojax.predict", "echojax.export", "echojax.run"):
    assert not reaches(cmd, "echojax.train"), f"{cmd} imports echojax.train (directly or through another module)"


def imported_modules(path: Path) -> set[str]:
  """Every absolute module name ``path`` imports anywhere in its body (``from a.b import c`` -> a.b and a.b.c)."""
  names: set[str] = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module)
      names.update(f"{node.module}.{a.name}" for a in node.names)
  return names


def imported_test_modules(path: Path, stems: set[str]) -> set[str]:
  """The test modules (``tests.test_x``, or ``test_x``: tests/ is on sys.path under pytest) ``path`` imports."""
  return imported_modules(path) & (stems | {f"tests.{s}" for s in stems})


def test_no_test_file_imports_another():
  test_files = sorted(TESTS.glob("test_*.py"))
  stems = {p.stem for p in test_files}
  assert "test_structure" in stems and len(stems) > 10
  offenders = {p.name: sorted(imported_test_modules(p, stems)) for p in test_files}
  offenders = {k: v for k, v in offenders.items() if v}
  assert not offenders, f"test files import test files (shared code belongs in tests/helpers/): {offenders}"


def test_planted_test_imports_are_found(tmp_path):
  f = tmp_path / "test_a.py"
  f.write_text("import os\nfrom tests.helpers.parity import TOL\ndef f():\n  from tests.test_parity import TOL\n"
               "  import test_config\n")
  assert imported_test_modules(f, {"test_parity", "test_config", "test_a"}) == {"tests.test_parity", "test_config"}
