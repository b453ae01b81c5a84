"""ISO 3166 codes and names read straight from pycountry's data files, without importing pycountry.

Importing pycountry and letting it index its databases costs about a tenth of a second; checking a
definition's codes needs only the codes (and a region's English name), so they are read here with ``json``.
Lookups ignore case, as pycountry's ``get`` does.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path


def database_path(name: str) -> Path:
    """The file of one of pycountry's ISO databases (e.g. ``3166-2``); ModuleNotFoundError without pycountry."""
    spec = importlib.util.find_spec("pycountry")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pycountry is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "databases" / f"iso{name}.json"


def _database(name: str) -> list[dict[str, str]]:
    """The entries of one of pycountry's ISO databases (e.g. ``3166-2``)."""
    with database_path(name).open(encoding="utf-8") as fh:
        entries: list[dict[str, str]] = json.load(fh)[name]
    return entries


@cache
def country_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code, lower case."""
    return frozenset(e["alpha_2"].lower() for e in _database("3166-1"))


@cache
def subdivision_names() -> dict[str, str]:
    """ISO 3166-2 code (lower case) -> English name."""
    return {e["code"].lower(): e["name"] for e in _database("3166-2")}


def is_country(code: str) -> bool:
    """``code`` is an ISO 3166-1 alpha-2 country code."""
    return code.lower() in country_codes()


def subdivision_name(code: str) -> str | None:
    """The ISO 3166-2 name of a region code, or None when there is no such code."""
    return subdivision_names().get(code.lower())
