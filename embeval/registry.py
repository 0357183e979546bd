"""Registries: every method embeval knows (a loss, view builder, pooler, post-processor, task,
diagnostic, ...) is one named unit in the registry of its kind, and is found there by name.

A name is resolved, in this order, as
1. a registered name or alias (case-insensitive), e.g. ``focal-infonce``;
2. user code, ``package.module:attribute`` (importable from the current environment), so a
   researcher's own unit runs without a fork of embeval;
3. an installed package's entry point in the kind's group (``embeval.losses``, ...), e.g. in its
   pyproject.toml: ``[project.entry-points."embeval.losses"] my-loss = "my_pkg.losses:my_loss"``.
An unknown name fails with the known names and a "did you mean". Registering is a decorator::

    LOSSES = Registry("loss")

    @LOSSES.register("infonce", aliases=("simcse",))
    def infonce(sim, temperature=0.05): ...
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownUnit(ValueError):
    """A name that no registry entry, module path or entry point resolves."""


def first_line(obj) -> str:
    """The first sentence of a unit's docstring: its help text in `--help` and docs."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".")


def closest(name: str, known: dict[str, str] | Iterable[str]) -> str | None:
    """The known name most like `name` (case-insensitive, difflib ratio >= 0.5), for every
    "did you mean" embeval prints; None when nothing is close. `known`: names, or a dict from
    lower-case keys (aliases too) to the names to show."""
    table = known if isinstance(known, dict) else {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.strip().lower(), list(table), n=1, cutoff=0.5)
    return table[close[0]] if close else None


class Registry(Generic[T]):
    """Named units of one kind; see the module docstring."""

    def __init__(
        self,
        kind: str,
        *,
        plural: str | None = None,
        check: Callable[[str, T], None] | None = None,
    ):
        self.kind = kind  # "loss": used in messages
        self.group = f"embeval.{plural or kind + 's'}"  # entry-point group
        self.check = check  # validates a unit loaded from user code or an entry point
        self._units: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # lower-case alias -> name

    # ------------------------------------------------------------------ registering
    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def add(unit: T) -> T:
            self.add(name, unit, aliases)
            return unit

        return add

    def add(self, name: str, unit: T, aliases: tuple[str, ...] = ()) -> None:
        for key in (name, *aliases):
            if key.lower() in self._aliases and self._aliases[key.lower()] != name:
                raise ValueError(f"{self.kind} name {key!r} is already registered")
        self._units[name] = unit
        for key in (name, *aliases):
            self._aliases[key.lower()] = name

    def remove(self, name: str) -> None:
        """Unregister `name` and its aliases (tests register toy units and clean up)."""
        self._units.pop(name, None)
        self._aliases = {k: v for k, v in self._aliases.items() if v != name}

    # ------------------------------------------------------------------ looking up
    def names(self) -> list[str]:
        """Registered names, in registration order (the built-ins first)."""
        return list(self._units)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._units)

    def items(self) -> list[tuple[str, T]]:
        return list(self._units.items())

    def canonical(self, name: str) -> str:
        """The registered name behind an alias or another casing; other names as given."""
        return self._aliases.get(name.strip().lower(), name.strip())

    def get(self, name: str) -> T:
        """The unit `name` resolves to (see the module docstring), else UnknownUnit."""
        key = name.strip()
        if key.lower() in self._aliases:
            return self._units[self._aliases[key.lower()]]
        if ":" in key:
            return self._checked(key, load_object(key, self.kind))
        found = self._entry_point(key)
        if found is not None:
            return found
        close = closest(key, self._aliases)
        hint = f"did you mean {close!r}? " if close else ""
        known = f"one of {', '.join(self._units)}, or " if self._units else ""
        raise UnknownUnit(
            f"unknown {self.kind} {name!r}; {hint}expected {known}your own as package.module:name"
        )

    def help(self) -> str:
        """'name: first docstring line' for each registered unit, for --help texts."""
        return "; ".join(f"{n}: {first_line(u)}" for n, u in self._units.items())

    def _entry_point(self, name: str) -> T | None:
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name == name:
                try:
                    unit = ep.load()
                except Exception as exc:  # the plugin's own import error, named
                    raise UnknownUnit(
                        f"{self.kind} {name!r} (entry point {ep.value} in group {self.group}) "
                        f"failed to load: {type(exc).__name__}: {exc}"
                    ) from exc
                return self._checked(f"{name} ({ep.value})", unit)
        return None

    def _checked(self, label: str, unit: T) -> T:
        if self.check is not None:
            self.check(label, unit)
        return unit


def load_object(path: str, kind: str = "unit"):
    """`package.module:attribute` (attribute may be dotted), imported; errors say which part."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UnknownUnit(f"{kind} {path!r}: expected package.module:name")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownUnit(
            f"{kind} {path!r}: cannot import module {module_name!r} ({exc}); is it installed, or "
            "on PYTHONPATH?"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UnknownUnit(f"{kind} {path!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj
