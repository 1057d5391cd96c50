"""Name -> object registries for methods and datasets.

Methods and datasets register themselves with a decorator where they are defined::

    @METHODS.register("plain")
    class Plain(Method):
        \"\"\"Stage-1 softmax cross-entropy with instance-balanced sampling.\"\"\"

Listings (``oltr-bench methods``, ``oltr-bench datasets``) are generated from the registry;
the one-line description is the first line of the registered object's docstring.

Third-party packages add entries through the entry-point groups ``oltr_bench.methods`` and
``oltr_bench.datasets``: each entry point names a module (or object) that is imported, and
importing it runs its ``register`` decorators.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator

from oltr_bench.errors import OltrError


def first_line(obj: Any) -> str:
    """The first line of an object's docstring ('' if it has none)."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


class Registry:
    """A mapping from names to registered objects, filled by decorators and entry points."""

    def __init__(self, kind: str, entry_point_group: str, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._builtin_modules = builtin_modules
        self._items: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[Any], Any]:
        """Decorator registering ``obj`` under ``name`` (and optional aliases)."""

        def decorator(obj: Any) -> Any:
            for key in (name, *aliases):
                owner = self._items.get(key) or self._items.get(self._aliases.get(key, ""))
                if owner is not None and owner is not obj:
                    raise ValueError(f"{self.kind} {key!r} is already registered by {owner!r}")
            self._items[name] = obj
            for alias in aliases:
                self._aliases[alias] = name
            obj.registry_name = name
            return obj

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)
        for ep in entry_points(group=self.entry_point_group):
            try:
                ep.load()
            except Exception as exc:  # a broken plug-in must not break the tool
                raise OltrError(
                    f"the {self.kind} plug-in {ep.name!r} ({ep.value}) from entry-point group "
                    f"{self.entry_point_group!r} failed to import: {exc}"
                ) from exc

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        self._load()
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = ", ".join(sorted(self._items))
        raise OltrError(f"unknown {self.kind} {name!r}; expected one of: {known}")

    def get(self, name: str) -> Any:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for name in self.names():
            yield name, self._items[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items or name in self._aliases

    def describe(self) -> list[tuple[str, str]]:
        """(name, one-line description) for every entry, sorted by name."""
        return [(name, first_line(obj)) for name, obj in self]


METHODS = Registry("method", "oltr_bench.methods", builtin_modules=("oltr_bench.baselines",))
DATASETS = Registry("dataset", "oltr_bench.datasets", builtin_modules=(
    "oltr_bench.splits.datasets", "oltr_bench.splits.imagenet", "oltr_bench.splits.places", "oltr_bench.splits.ms1m"))
