"""User modules a run imports before anything else: their spaces, data sources,
controllers or proxies register themselves on import, so the CLI, a resumed run,
a Ray Tune trial and `export.load` all see them.

    plugins: [mypkg.spaces, my_data]      # in a config (or `--plugin MODULE`)

A module is imported by name, like `import mypkg.spaces`, with the working
directory on the import path (as `python -m` has it). The list is recorded in
config.yaml and in every export's arch.json.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Sequence


def load(modules, field: str = "config plugins") -> list[str]:
    """Import each module of `modules` (a list of dotted names); returns the list. A name
    that is not a string, or a module that fails to import, is a ValueError naming it."""
    if modules is None:
        return []
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) and m for m in modules):
        raise ValueError(f"{field} = {modules!r}: expected a list of module names, e.g. [mypkg.spaces]")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any failure of the user's module is reported as such
            raise ValueError(f"{field}: cannot import {name!r} ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:300]})") from None
    return list(modules)


def merged(recorded: Sequence[str], added: Sequence[str]) -> list[str]:
    """`recorded` then the names of `added` it lacks, in order."""
    return list(recorded) + [m for m in added if m not in recorded]
