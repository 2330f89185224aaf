"""Search spaces: one small module per space, each a `SETTINGS` card (and a `define` only when it
really differs from `common.define`).

`load_space("smoke")` imports `search_spaces.smoke`; a path to a .py file works too, so a new
space is one new small file. See `common.py` for the settings and the one define-by-run function.
"""

from __future__ import annotations

import importlib
import importlib.util
import functools
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

from . import common
from .common import SEEDS_PER_KIND, Regime, SharedDraws, Space, SpaceSettings


class SpaceError(ValueError):
    """An unknown or malformed search space."""


def known_spaces() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name != "common")


def load_space(name: str) -> Space:
    """A space by module name (`smoke`) or by path to a .py file defining SETTINGS and define."""
    module: ModuleType
    if name.endswith(".py"):
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise SpaceError(f"space file {path} does not exist")
        # Registered under a stable name so Ray can pickle the define-by-run function in its
        # searcher checkpoint and a resumed study (which loads the file again) can unpickle it.
        module_name = f"search_spaces.file_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        _execute(name, lambda: spec.loader.exec_module(module))
    elif name in known_spaces():
        module = _execute(name, lambda: importlib.import_module(f"search_spaces.{name}"))
    else:
        raise SpaceError(f"unknown space {name!r}; known spaces: {', '.join(known_spaces())} "
                         f"(or a path to a .py file defining SETTINGS)")
    if not isinstance(getattr(module, "SETTINGS", None), SpaceSettings):
        raise SpaceError(f"space {name!r} ({module.__file__}) must define SETTINGS = "
                         f"search_spaces.common.SpaceSettings(...)")
    return Space(settings=module.SETTINGS, define=getattr(module, "define", common.define),
                 source=Path(module.__file__))


def _execute(name: str, load):
    try:
        return load()
    except SpaceError:
        raise
    except Exception as error:  # a space file that does not import is bad input, not a crash
        where = f" (line {error.lineno})" if isinstance(error, SyntaxError) else ""
        raise SpaceError(f"--space {name}: the space does not import{where}: "
                         f"{type(error).__name__}: {error}") from None


def _define_with_base(define, trial, method, dataset, settings, base):
    return {**(define(trial, dataset=dataset, method=method, settings=settings) or {}), **base}


def bind_space(space: Space, dataset: str, settings: SpaceSettings, base: dict):
    """The define-by-run function of one dataset: (trial, method) → constants, `base` (seed,
    data_dir) on top."""
    return functools.partial(_define_with_base, space.define, dataset=dataset, settings=settings, base=base)


__all__ = ["bind_space", "SEEDS_PER_KIND", "SharedDraws", "Regime", "Space", "SpaceSettings", "SpaceError", "known_spaces", "load_space"]
