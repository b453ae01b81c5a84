"""Prepared templates give what jinja2 renders, render once per shape, and leave alone what they do not follow."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import DictLoader, Environment, StrictUndefined, Template, UndefinedError, select_autoescape

from notifications import prepared

SOURCES = {
    "mail.txt": (
        "Dear {{ name }},\n{{ lead }}\n{% if todo %}\nTo do: {{ todo }}\n{% endif %}"
        "{% if comment and level %}Comment ({{ level }}): {{ comment }}{% endif %}\n"
        "{{ a if flag else b }} / {{ 'yes' if not flag else 'no' }}\n"
        "{% for line in lines %}- {{ line.text }}{% if line.field != 'body' %} ({{ line.field }}){% endif %}\n{% endfor %}"
        "({% if preference == 'digest' %}digest{% else %}immediate{% endif %})\n"
    ),
    "events/x.txt": (
        "{% set subject %}#{{ pid }} “{{ title }}”{% if is_head %}: please act{% endif %}{% endset %}"
        "{% set lead %}{{ actor }} did it{% if deadline %} by {{ deadline }}{% endif %}.{% endset %}"
    ),
    "filtered.txt": "{{ name|upper }} and {{ lead }}",
    "blocked.txt": "{% set x | upper %}{{ lead }}{% endset %}{{ x }}",
    "called.txt": "{{ lead }} {{ range(2)|list }}",
    "own.txt": "{% set x = lead %}{% if x == 'a' %}A{% endif %}{{ x }}",
}
VARIABLES = ("name", "lead", "todo", "comment", "level", "a", "b", "flag", "lines", "preference")


def env(autoescape: bool) -> Environment:
    return Environment(
        loader=DictLoader({**SOURCES, "mail.html": "<p>" + SOURCES["mail.txt"] + "</p>"}),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False) if autoescape else False,
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )


ENV = env(True)


def template(name: str) -> Template:
    return ENV.get_template(name)


def ctx(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Ann <&>", "lead": "It happened.", "todo": "", "comment": "Look", "level": 2, "a": "A", "b": 0,
        "flag": True, "lines": [{"text": "x < y", "field": "title"}], "preference": "digest",
        "pid": 7, "title": "T & co", "is_head": True, "actor": "Bob", "deadline": "March 22",
    }
    return base | changes


def test_usage_tells_holes_from_values() -> None:
    mail = prepared.usage(template("mail.txt"))

    assert mail.followed and not mail.escapes and prepared.usage(template("mail.html")).escapes
    assert set(mail.holes) == {"name", "lead", "todo", "comment", "level", "a", "b", "flag"}
    assert set(mail.values) == {"lines", "preference"}  # looped over, compared
    assert set(prepared.usage(template("events/x.txt")).holes) == {"pid", "title", "is_head", "actor", "deadline"}
    for name in ("filtered.txt", "blocked.txt", "called.txt", "own.txt"):
        assert not prepared.usage(template(name)).followed, name


@pytest.mark.parametrize("name", ["mail.txt", "mail.html", "filtered.txt", "blocked.txt", "called.txt", "own.txt"])
def test_rendering_prepared_is_rendering_with_jinja(name: str) -> None:
    for c in (ctx(), ctx(todo="Do it", flag=False, b=""), ctx(lead="a", comment="", lines=[]), ctx(name="\ue000")):
        assert prepared.fill(*prepared.render(template(name), c)) == template(name).render(c)


def test_a_shape_is_rendered_once_and_shared() -> None:
    mail = env(True).get_template("mail.html")

    first = prepared.render(mail, ctx(name="Ann", lead="One"))
    second = prepared.render(mail, ctx(name="Bob", lead="Two <b>"))
    other = prepared.render(mail, ctx(preference="immediate"))

    assert first[0] is second[0]  # the same pieces: one jinja2 pass for both
    assert (first[1]["name"], second[1]["name"], second[1]["lead"]) == ("Ann", "Bob", "Two &lt;b&gt;")
    assert other[0] is not first[0]  # another preference is another shape


def test_an_empty_value_is_rendered_as_it_is() -> None:
    mail = env(False).get_template("mail.txt")

    for empty in ("", 0, None, False, []):
        c = ctx(b=empty, flag=False)
        assert prepared.fill(*prepared.render(mail, c)) == mail.render(c)


def test_a_missing_variable_is_jinjas_error() -> None:
    c = ctx()
    del c["lead"]

    with pytest.raises(UndefinedError):
        prepared.render(template("mail.txt"), c)


def test_a_module_exports_what_make_module_gives() -> None:
    x = template("events/x.txt")

    for c in (ctx(), ctx(is_head=False, deadline=""), ctx(title="\ue000 mark")):
        made = x.make_module(c)
        assert prepared.module(x, c) == {"subject": str(made.subject), "lead": str(made.lead)}  # type: ignore[attr-defined]


values = st.one_of(st.text(max_size=30), st.integers(-3, 3), st.none(), st.booleans())


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=30), lead=st.text(max_size=30), todo=values, comment=values, level=values, a=values, b=values,
    flag=values, preference=st.sampled_from(["digest", "off", "immediate", ""]), html=st.booleans(),
)
def test_any_values_render_as_jinja_renders_them(
    name: str, lead: str, todo: Any, comment: Any, level: Any, a: Any, b: Any, flag: Any, preference: str, html: bool
) -> None:
    mail = template("mail.html" if html else "mail.txt")
    c = ctx(name=name, lead=lead, todo=todo, comment=comment, level=level, a=a, b=b, flag=flag, preference=preference)

    assert prepared.fill(*prepared.render(mail, c)) == mail.render(c)
