"""The one JSON line every bench ends with: its name, figures, ratios and the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from typing import Any


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """CPU count, Python, platform and the versions of the libraries the figures depend on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlalchemy": _version("sqlalchemy"),
        "prefect": _version("prefect"),
    }


def emit(name: str, figures: dict[str, Any], ratios: dict[str, Any], **extra: Any) -> None:
    """Print the bench's figures as one JSON line on stdout (the last line the bench prints)."""
    line = {"bench": name, "figures": figures, "ratios": ratios, **extra, "machine": machine()}
    print(json.dumps(line, sort_keys=False), flush=True)
    sys.stdout.flush()
