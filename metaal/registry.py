"""Names for the pluggable parts (strategies, learners, datasets, trainers), and plug-ins.

Every part a config or a flag names is looked up in one of four registries. Add your own
from any module, without editing metaal, then name that module with `--plugins` on any
experiment or benchmark script (it is imported before the flags are read):

    import metaal

    @metaal.register_strategy("my_strategy")
    class MyStrategy(metaal.Strategy): ...

    python experiments/transfer.py --plugins my_plugins --strategies my_strategy,margin ...
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from metaal.errors import InputError

T = TypeVar("T")

PLUGINS_HELP = ("comma-separated modules (importable names or .py paths) to import first, so that the strategies, "
                "learners, datasets and trainers they register can be named")


class Registry(Generic[T]):
    """Names -> objects of one kind; `register` works as a call or as a decorator."""

    def __init__(self, kind: str):
        self.kind, self._items = kind, {}

    def register(self, name: str, obj: T | None = None, *, replace: bool = False):
        """Register `obj` under `name`; without `obj`, a decorator that registers what it decorates."""
        if obj is None:
            return lambda decorated: self.register(name, decorated, replace=replace)
        if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
            raise InputError(f"a {self.kind} name must be a word like 'my_{self.kind}', got {name!r}")
        if name in self._items and self._items[name] is not obj and not replace:
            raise InputError(f"a {self.kind} named {name!r} is already registered ({self._items[name]!r}); "
                             f"choose another name, or pass replace=True to replace it")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(str(name), list(self._items), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._items)}{hint} "
                             f"(register your own with metaal.register_{self.kind} and --plugins)")
        return self._items[name]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def load_plugins(modules: str | Sequence[str] | None) -> list[str]:
    """Import each plug-in module (a dotted name, or a path to a .py file); returns their names."""
    if not modules:
        return []
    names = [m.strip() for m in (modules.split(",") if isinstance(modules, str) else modules) if m.strip()]
    for name in names:
        try:
            _import(name)
        except ImportError as e:
            raise InputError(f"--plugins: cannot import {name!r} ({e}); give a module on the Python path "
                             "(e.g. my_plugins) or the path of a .py file") from e
    return names


def _import(name: str) -> None:
    if not name.endswith(".py"):
        importlib.import_module(name)
        return
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise ImportError(f"no file {path}")
    loaded = sys.modules.get(path.stem)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return  # imported already (e.g. by load_plugins_from_argv): running it again would re-register its names
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)


def load_plugins_from_argv(argv: Sequence[str] | None) -> None:
    """Import the modules named by `--plugins X` (or `--plugins=X`) in argv (default sys.argv),
    before a script builds its parser, so its choices and help list the plug-ins' names."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg == "--plugins" and i + 1 < len(argv):
            load_plugins(argv[i + 1])
        elif arg.startswith("--plugins="):
            load_plugins(arg.split("=", 1)[1])
