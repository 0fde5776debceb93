"""One typed name -> object registry, used for task families, bounds, critics and encoders.

Third-party packages add entries without editing mibench through entry points: a package that
declares, in its pyproject.toml,

    [project.entry-points."mibench.bounds"]
    my_bound = "my_package.bounds:MyBound"

has ``MyBound`` registered as bound ``my_bound`` the first time the bound registry is read.
The groups are ``mibench.bounds``, ``mibench.tasks``, ``mibench.critics`` and
``mibench.encoders``; each entry is what that registry holds (a Bound subclass, a TaskFamily,
a critic class, an encoder builder).
"""

from __future__ import annotations

import difflib
import logging
from typing import Callable, Generic, Iterator, TypeVar

from .interface import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)


def unknown_name(kind: str, name: object, known, known_as: str = "Known") -> str:
    """The one-line error for an unknown name: the closest known names, then all of them."""
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
    return f"unknown {kind} {name!r}{hint} {known_as}: {', '.join(known)}"


class Registry(Generic[T]):
    """Maps names to objects. Registering a name twice raises; looking up an unknown name
    raises a ConfigError that lists the closest known names.

    >>> colours: Registry[int] = Registry("colour")
    >>> colours.register("red", 1)
    1
    >>> colours["red"]
    1
    """

    def __init__(self, kind: str, entry_points: str | None = None):
        self.kind = kind
        self.group = entry_points
        self._items: dict[str, T] = {}
        self._plugins_loaded = entry_points is None

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def add(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``register``."""
        return lambda item: self.register(name, item)

    def unregister(self, name: str) -> T:
        """Remove an entry (tests that register a temporary one take it out again)."""
        return self._items.pop(name)

    def _entries(self) -> dict[str, T]:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            self._load_plugins()
        return self._items

    def _load_plugins(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            if ep.name in self._items:
                continue
            try:
                self.register(ep.name, ep.load())
            except Exception as exc:      # a broken plugin must not take mibench down with it
                log.warning("%s plugin %r (%s) failed to load: %s", self.kind, ep.name, ep.value, exc)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries()[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        return unknown_name(self.kind, name, self._entries())

    def __contains__(self, name: object) -> bool:
        return name in self._entries()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries()))

    def __len__(self) -> int:
        return len(self._entries())

    def items(self):
        return self._entries().items()

    def values(self):
        return self._entries().values()
