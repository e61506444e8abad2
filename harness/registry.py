"""A small typed registry with decorated factories and entry-point plugins."""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from harness.errors import HarnessError, UnknownNameError, did_you_mean

log = logging.getLogger(__name__)
T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries; duplicate names are refused, unknown names get suggestions."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._plugins_loaded = entry_point_group is None

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise HarnessError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda entry: self.add(name, entry)

    def load_plugins(self) -> None:
        """Import every entry point of the group once; each module registers on import."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            log.debug("loading %s plugin %s", self.kind, ep.value)
            try:
                ep.load()
            except Exception as exc:  # a broken plugin must not take the harness down
                log.warning("%s plugin %s failed to load: %s", self.kind, ep.value, exc)

    def get(self, name: str) -> T:
        self.load_plugins()
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} '{name}'. "
                                   + did_you_mean(name, self._entries))
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self.load_plugins()
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        self.load_plugins()
        return sorted(self._entries.items())


def load_object(target: str) -> object:
    """Import "package.module:attr" (the form lazy registry entries are written in)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
