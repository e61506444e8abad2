"""Stages declared as data: what code makes an artifact, and the cache key derived from it.

A stage's key hashes its name, its config, its inputs' keys and the source of every harness
module its code runs: the modules it names and, transitively, every harness module they import
(at the top or inside functions; imports under `if TYPE_CHECKING:` are left out, since they
never run). Editing a loss used by pruning therefore rebuilds pruned models, and editing an
unrelated module rebuilds nothing. Sources are read from disk, never imported, so computing a
key loads no torch.
"""
from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from harness.cache import content_key

ROOT = "harness"


@dataclass(frozen=True)
class Stage:
    """One kind of stage: the cache folder it writes and the modules whose code makes it."""

    name: str
    code: tuple[str, ...]

    def key(self, config: Any, inputs: list[str] | None = None, extra_code: tuple[str, ...] = (),
            version: str = "1") -> str:
        """The artifact's key: config, upstream keys and the transitive code of the stage."""
        return content_key(self.name, f"{version}:{code_version(*self.code, *extra_code)}",
                           config, inputs)


@cache
def _source(module: str) -> tuple[Path, str] | None:
    """(file, source) of a harness module; None for a name that is not a module."""
    parent, _, _ = module.rpartition(".")
    if parent:  # only a package has submodules; asking a module would import it
        found = _source(parent)
        if found is None or found[0].name != "__init__.py":
            return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # `harness.errors.DataError`: a name, not a module
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    path = Path(spec.origin)
    return path, path.read_text(encoding="utf-8")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Harness modules imported anywhere in `tree`, except under `if TYPE_CHECKING:`."""
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name == ROOT or name.startswith(ROOT + ".")}


@cache
def module_closure(module: str) -> tuple[str, ...]:
    """`module` and every harness module it imports, transitively (sorted)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        found = _source(name)
        if found is None:
            continue  # `from harness.x import function`: not a module
        seen.add(name)
        path, text = found
        todo.extend(_imported_names(ast.parse(text), name, path.name == "__init__.py"))
    return tuple(sorted(seen))


@cache
def code_version(*modules: str) -> str:
    """Hash of the source of these modules and of every harness module they import."""
    names = sorted({m for module in modules for m in module_closure(module)})
    return content_key("code", "2", [(m, _source(m)[1]) for m in names])  # type: ignore[index]
