"""The templates of the pages: one jinja2 Environment per app, autoescaped, strict, translated per request.

The i18n extension's ``gettext`` reads the catalog from a context variable that ``render`` sets for the
duration of one rendering, so concurrent requests in other languages never see each other's catalog.
"""

from __future__ import annotations

import contextvars
from typing import Any

from babel.support import NullTranslations
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from config.definition import ForumDefinition
from web.i18n import LANGUAGE_NAMES, Labels, Ui

_catalog: contextvars.ContextVar[NullTranslations] = contextvars.ContextVar("forumflow_web_catalog")


def _gettext(message: str) -> str:
    return _catalog.get().gettext(message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return _catalog.get().ngettext(singular, plural, n)


def groups_by_member(definition: ForumDefinition) -> dict[str, list[tuple[str, str]]]:
    """Each member's working groups (as member, chair or deputy chair), as (key, name), for the navigation."""
    found: dict[str, list[tuple[str, str]]] = {}
    for g in definition.working_groups:
        for handle in dict.fromkeys([g.chair, *([g.deputy_chair] if g.deputy_chair else []), *g.members]):
            found.setdefault(handle, []).append((g.key, g.name))
    return found


class Templates:
    """Renders ``web/templates`` for one forum."""

    def __init__(self, definition: ForumDefinition) -> None:
        self.env = Environment(
            loader=PackageLoader("web", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
        self.env.globals.update(
            forum_name=definition.forum.name, languages=LANGUAGE_NAMES, member_groups=groups_by_member(definition)
        )
        self.labels = Labels.of(definition)

    def render(self, name: str, ui: Ui, context: dict[str, Any]) -> str:
        """Render template ``name`` in the reader's language."""
        token = _catalog.set(ui.translations)
        try:
            return self.env.get_template(name).render(ui=ui, lang=ui.lang, **context)
        finally:
            _catalog.reset(token)
