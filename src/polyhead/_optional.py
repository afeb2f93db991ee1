"""Optional dependencies, imported when first needed, with an ImportError naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, what: str) -> ModuleType:
    """``module`` imported, or an ImportError saying ``what`` needs it and which
    ``polyhead[extra]`` installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs the {module.split('.')[0]} package: "
                          f"pip install 'polyhead[{extra}]'") from exc
