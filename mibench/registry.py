"""One typed name -> object registry, used for tasks, bounds, critics and encoders."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .interface import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects. Registering a name twice raises; looking up an unknown name
    raises a ConfigError that lists the closest known names.

    >>> colours = Registry[int]("colour")
    >>> colours.register("red", 1)
    1
    >>> colours["red"]
    1
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def add(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``register``."""
        return lambda item: self.register(name, item)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        close = difflib.get_close_matches(str(name), self._items, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} Known: {', '.join(self._items)}"

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self):
        return self._items.items()
