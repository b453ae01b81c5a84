"""The templates of the pages: one jinja2 Environment per language, autoescaped, strict, translated.

Each language has its own Environment, so its templates are compiled with that language's catalog: a message that
is a constant (``_("...")``, ``{% trans %}`` without a plural) is translated once, when the template is compiled,
and a constant one (no variables) becomes part of the template's text, instead of a call to ``gettext`` at every
rendering (``translated_constants``). What is left to translate at rendering time (plural forms, messages chosen at
rendering time) goes to the same language's catalog.
"""

from __future__ import annotations

import threading
from typing import Any

from babel.support import NullTranslations
from jinja2 import Environment, PackageLoader, StrictUndefined, nodes, select_autoescape

from config.definition import ForumDefinition
from models.tables import COMMENT_MAX
from web.i18n import LANGUAGE_NAMES, Labels, Ui, translations

# The names a template calls to translate one message, as the i18n extension installs them (newstyle).
_GETTEXT_NAMES = frozenset({"_", "gettext"})


def groups_by_member(definition: ForumDefinition, lang: str) -> dict[str, list[tuple[str, str]]]:
    """Each member's working groups (as member, chair or deputy chair), as (key, name in ``lang``), for the navigation."""
    found: dict[str, list[tuple[str, str]]] = {}
    for g in definition.working_groups:
        for handle in dict.fromkeys([g.chair, *([g.deputy_chair] if g.deputy_chair else []), *g.members]):
            found.setdefault(handle, []).append((g.key, g.name_in(lang)))
    return found


def isolate(text: str) -> str:
    """``text`` between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE: where no ``<bdi>`` can go (``<title>``), its
    direction marks cannot turn the text after it around."""
    return f"\u2068{text}\u2069"


def translated_constants(tree: nodes.Template, catalog: NullTranslations) -> nodes.Template:
    """``tree`` with every call ``_("msg", **vars)`` / ``gettext("msg", **vars)`` of a constant message replaced by
    what the newstyle gettext of the i18n extension gives at rendering time, computed here with ``catalog``:
    the translation, marked safe when the template autoescapes, formatted with ``vars`` (``%``, which escapes them).

    A message without variables whose translation holds a ``%`` is left to the call (newstyle gettext formats it
    even then). ``ngettext`` and ``pgettext`` calls are left as they are.
    """
    for call in list(tree.find_all(nodes.Call)):
        target = call.node
        if not (isinstance(target, nodes.Name) and target.name in _GETTEXT_NAMES):
            continue
        if len(call.args) != 1 or not isinstance(call.args[0], nodes.Const) or not isinstance(call.args[0].value, str):
            continue
        if call.dyn_args is not None or call.dyn_kwargs is not None:
            continue
        translated = catalog.gettext(call.args[0].value)
        if not call.kwargs and "%" in translated:
            continue
        folded: nodes.Expr = nodes.MarkSafeIfAutoescape(nodes.Const(translated))
        if call.kwargs:
            folded = nodes.Mod(folded, nodes.Dict([nodes.Pair(nodes.Const(k.key), k.value) for k in call.kwargs]))
        _replace(tree, call, folded)
    return tree


def _replace(tree: nodes.Node, old: nodes.Node, new: nodes.Node) -> None:
    """Put ``new`` where ``old`` is in ``tree`` (in the field or list of its parent that holds it)."""
    for parent in tree.find_all(nodes.Node):
        for name, value in parent.iter_fields():
            if value is old:
                setattr(parent, name, new.set_lineno(old.lineno))
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new.set_lineno(old.lineno)
                        return
    raise AssertionError("the call is not in the tree")


class _LanguageEnvironment(Environment):
    """An Environment whose templates are compiled with one language's catalog (``translated_constants``)."""

    catalog: NullTranslations

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return translated_constants(super()._parse(source, name, filename), self.catalog)


class Templates:
    """Renders ``web/templates`` for one forum."""

    def __init__(self, definition: ForumDefinition) -> None:
        self.definition = definition
        self.globals = {"languages": LANGUAGE_NAMES, "comment_max": COMMENT_MAX}
        self.labels = Labels.of(definition)
        self._envs: dict[str, Environment] = {}
        self._lock = threading.Lock()
        for lang in LANGUAGE_NAMES:
            self.env_for(lang)

    def env_for(self, lang: str) -> Environment:
        """The Environment of ``lang`` (made on first use)."""
        env = self._envs.get(lang)
        if env is not None:
            return env
        with self._lock:
            env = self._envs.get(lang)
            if env is None:
                env = _LanguageEnvironment(
                    loader=PackageLoader("web", "templates"),
                    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
                    undefined=StrictUndefined,
                    extensions=["jinja2.ext.i18n"],
                    trim_blocks=True,
                    lstrip_blocks=True,
                    auto_reload=False,
                )
                catalog = translations(lang)
                env.catalog = catalog
                env.install_gettext_translations(catalog, newstyle=True)  # type: ignore[attr-defined]
                env.globals.update(
                    self.globals, forum_name=self.definition.forum.name_in(lang),
                    member_groups=groups_by_member(self.definition, lang),
                )
                env.filters["isolate"] = isolate
                self._envs[lang] = env
        return env

    def render(self, name: str, ui: Ui, context: dict[str, Any]) -> str:
        """Render template ``name`` in the reader's language."""
        return self.env_for(ui.lang).get_template(name).render(ui=ui, lang=ui.lang, **context)
