"""Modules and lines per package of ``sdrift_jax`` and ``experiments``, and the import
cycles among their modules (package ``__init__`` re-exports left out).

    python -m benchmarks.layout
"""
from __future__ import annotations

import ast
import collections
import os


def _modules(roots=("sdrift_jax", "experiments")) -> dict[str, str]:
  out = {}
  for root in roots:
    for dirpath, _, files in os.walk(root):
      for f in files:
        if f.endswith(".py"):
          path = os.path.join(dirpath, f)
          out[path[:-3].replace("/", ".").replace(".__init__", "")] = path
  return out


def _imports(mods: dict[str, str]) -> dict[str, set]:
  graph = collections.defaultdict(set)
  for name, path in mods.items():
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for alias in node.names:
          for target in (f"{node.module}.{alias.name}", node.module):
            if target in mods and target != name:
              graph[name].add(target)
              break
      elif isinstance(node, ast.Import):
        graph[name].update(a.name for a in node.names if a.name in mods and a.name != name)
  return graph


def main() -> None:
  mods = _modules()
  graph = _imports(mods)
  package = lambda m: mods[m].endswith("__init__.py")
  color, cycles = {}, []

  def visit(u, stack):
    color[u] = 1
    stack.append(u)
    for v in graph[u]:
      if package(u) or package(v):
        continue
      if color.get(v) == 1:
        cycles.append(stack[stack.index(v):] + [v])
      elif not color.get(v):
        visit(v, stack)
    stack.pop()
    color[u] = 2
  for m in mods:
    if not color.get(m):
      visit(m, [])
  sizes = collections.defaultdict(list)
  for m, path in mods.items():
    with open(path) as f:
      sizes[m if package(m) else m.rsplit(".", 1)[0]].append(sum(1 for _ in f))
  print("| package | modules | lines | largest |\n|---|---:|---:|---:|")
  for k in sorted(sizes):
    print(f"| {k} | {len(sizes[k])} | {sum(sizes[k])} | {max(sizes[k])} |")
  print(f"\nimport cycles: {cycles or 'none'}")


if __name__ == "__main__":
  main()
