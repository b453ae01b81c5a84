"""Prepared templates: a jinja2 template rendered once per shape of its context, then filled in per call.

Most of a mail's variables are only written out (``{{ title }}``) or tested for being empty
(``{% if deadline %}``). For such a variable the output holds its value as text (escaped in HTML) and nothing
else depends on it but whether it is empty. So a template is rendered once with a *hole* in place of each such
variable that is not empty; the output, split at the holes, is kept under the template's *shape* for that
context: which of those variables are empty (and the empty values themselves), plus the values of every other
variable the template reads (compared, looked into, looped over...). Any context of the same shape renders to
the kept pieces with each hole filled by its value; rendering a mail is then a few dictionary lookups and one
join instead of a pass of the template engine.

Which variables may be holes is read off the template's syntax tree, once per template. A template that does
anything this does not follow (filters, calls, macros, blocks, includes, a ``set`` block with a filter, a
variable it assigns itself read as a value) is rendered by jinja2 each time, as is a context holding a hole
mark in a value the template reads as a value. The tests render every shipped template both ways.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from jinja2 import Template, meta, nodes
from markupsafe import escape

V = TypeVar("V")

# A hole: private-use marks around a variable's name and a token drawn per process, which no text holds by chance
# (nor by design: nobody outside the process knows it). Escaping leaves it as it is.
HOLE_MARK = "\ue000"
_TOKEN = uuid.uuid4().hex
_HOLE = re.compile(f"{HOLE_MARK}([A-Za-z_][A-Za-z0-9_]*)\\.{_TOKEN}{HOLE_MARK}")
# Shapes kept per template; a shape is made of a few flags and the values of the variables read as values.
SHAPES_KEPT = 512

# The syntax followed: anything else in a template and it is rendered by jinja2 each time.
_FOLLOWED = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.Name, nodes.Const, nodes.Getattr,
    nodes.Getitem, nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.CondExpr, nodes.For,
    nodes.Assign, nodes.AssignBlock, nodes.Concat, nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair, nodes.Slice,
    nodes.BinExpr, nodes.UnaryExpr,
)


def split(text: str) -> tuple[str, ...]:
    """``text`` split at its holes: text, hole name, text, ... (what ``fill`` takes)."""
    return tuple(_HOLE.split(text))


def hole(name: str) -> str:
    """The hole standing for variable ``name``."""
    return f"{HOLE_MARK}{name}.{_TOKEN}{HOLE_MARK}"


@dataclass(frozen=True)
class Usage:
    """How a template reads its context, found once from its syntax tree."""

    followed: bool  # False: render it with jinja2 each time
    holes: tuple[str, ...]  # variables only written out or tested for truth
    values: tuple[str, ...]  # variables read otherwise: part of the shape
    escapes: bool  # the template escapes what it writes out (HTML)

    @property
    def reads(self) -> frozenset[str]:
        """Every context variable the template reads."""
        return frozenset(self.holes) | frozenset(self.values)


# Per template object (the environment keeps its templates; a few more in tests): how it reads its context, and
# its pieces by shape (most recent last).
_usages: dict[Template, Usage] = {}
_shapes: dict[Template, OrderedDict[tuple[Any, ...], tuple[str, ...] | None]] = {}
_module_shapes: dict[Template, OrderedDict[tuple[Any, ...], dict[str, tuple[str, ...]] | None]] = {}


def usage(template: Template) -> Usage:
    """How ``template`` reads its context (kept per template)."""
    found = _usages.get(template)
    if found is None:
        found = _usages[template] = _read_usage(template)
    return found


def _read_usage(template: Template) -> Usage:
    env = template.environment
    escapes = bool(env.autoescape(template.name) if callable(env.autoescape) else env.autoescape)
    if env.loader is None or template.name is None:
        return Usage(False, (), (), escapes)
    source, _, _ = env.loader.get_source(env, template.name)
    tree = env.parse(source)
    context = meta.find_undeclared_variables(tree)
    assigned = {
        name.name for node in tree.find_all((nodes.Assign, nodes.AssignBlock))
        if isinstance(node, nodes.Assign | nodes.AssignBlock)
        for name in (node.target, *node.target.find_all(nodes.Name)) if isinstance(name, nodes.Name)
    }
    holes: set[str] = set()
    values: set[str] = set()
    followed = True

    def visit(node: nodes.Node, role: str) -> None:
        nonlocal followed
        if not isinstance(node, _FOLLOWED) or (isinstance(node, nodes.AssignBlock) and node.filter is not None):
            followed = False
            return
        if isinstance(node, nodes.Name):
            if node.ctx != "load":
                return
            if node.name in assigned:  # the template's own variable: fine written out, not read as a value
                followed = followed and role != "value"
            elif node.name in context:
                (holes if role in ("output", "test") else values).add(node.name)
            return
        if isinstance(node, nodes.Output):
            for written in node.nodes:
                visit(written, "output")
        elif isinstance(node, nodes.If):
            visit(node.test, "test")
            for statement in (*node.body, *node.elif_, *node.else_):
                visit(statement, "statement")
        elif isinstance(node, nodes.CondExpr):
            visit(node.test, "test")
            visit(node.expr1, role)
            if node.expr2 is not None:
                visit(node.expr2, role)
        elif isinstance(node, nodes.And | nodes.Or):
            visit(node.left, "test" if role == "test" else "value")
            visit(node.right, "test" if role == "test" else "value")
        elif isinstance(node, nodes.Not):
            visit(node.node, "test")
        else:
            for child in node.iter_child_nodes():
                visit(child, "value")

    visit(tree, "statement")
    return Usage(followed, tuple(sorted(holes - values)), tuple(sorted(values)), escapes)


def _read(use: Usage, ctx: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, str]] | None:
    """The shape of ``ctx`` for a template read as ``use``, and what fills each hole: the value as the template
    writes it out (escaped if the template escapes). None if ``ctx`` lacks a variable (jinja2 then says which)."""
    shape: list[Any] = []
    values: dict[str, str] = {}
    written = _escaped if use.escapes else str
    try:
        for name in use.holes:
            value = ctx[name]
            if value:
                shape.append(True)
                values[name] = written(value)
            else:
                shape.append(("empty", type(value), repr(value)))
        for name in use.values:
            value = ctx[name]
            shape.append((type(value), repr(value)))
    except KeyError:
        return None
    return tuple(shape), values


def _holed(use: Usage, ctx: Mapping[str, Any]) -> dict[str, Any]:
    return {**ctx, **{name: hole(name) for name in use.holes if ctx[name]}}


def _split(output: str) -> tuple[str, ...] | None:
    """``output`` split at its holes; None if a hole mark is left outside a hole (the context held one)."""
    pieces = split(output)
    return None if any(HOLE_MARK in piece for piece in pieces[::2]) else pieces


def _shaped(caches: dict[Template, OrderedDict[tuple[Any, ...], V]], template: Template, shape: tuple[Any, ...],
            make: Callable[[], V]) -> V:
    """What ``make()`` gives for ``template`` in ``shape``, made once and kept (at most SHAPES_KEPT shapes a template)."""
    shapes = caches.get(template)
    if shapes is None:
        shapes = caches[template] = OrderedDict()
    if shape in shapes:
        return shapes[shape]
    made = shapes[shape] = make()
    if len(shapes) > SHAPES_KEPT:
        shapes.popitem(last=False)
    return made


def _escaped(value: Any) -> str:
    return _escaped_text(value) if type(value) is str else str(escape(value))


@functools.lru_cache(maxsize=4096)  # titles, names, labels and dates come back in mail after mail
def _escaped_text(text: str) -> str:
    return str(escape(text))


# A rendering with holes: the output split at them (text, hole, text, ...) and what fills each hole.
Rendering = tuple[tuple[str, ...], dict[str, str]]


def render(template: Template, ctx: Mapping[str, Any]) -> Rendering:
    """``template`` rendered for ``ctx``, as pieces split at the holes (text, hole, text, ...) and what fills them.

    ``fill(*render(template, ctx)) == template.render(ctx)``; the pieces are shared by every context of one shape.
    """
    use = usage(template)
    read = _read(use, ctx) if use.followed else None
    if read is None:
        return (template.render(ctx),), {}
    shape, values = read
    pieces = _shaped(_shapes, template, shape, lambda: _split(template.render(_holed(use, ctx))))
    if pieces is None:
        return (template.render(ctx),), {}
    return pieces, values


def module(template: Template, ctx: Mapping[str, Any]) -> dict[str, str]:
    """The text of each ``{% set %}`` block ``template`` exports for ``ctx`` (as ``template.make_module(ctx)``)."""
    use = usage(template)
    read = _read(use, ctx) if use.followed else None
    if read is None:
        return _exports(template, ctx)
    shape, values = read
    exported = _shaped(_module_shapes, template, shape, lambda: _split_exports(_exports(template, _holed(use, ctx))))
    if exported is None:
        return _exports(template, ctx)
    return {name: fill(pieces, values) for name, pieces in exported.items()}


def _split_exports(texts: dict[str, str]) -> dict[str, tuple[str, ...]] | None:
    """Each exported text split at its holes; None when one cannot be."""
    split = {name: _split(text) for name, text in texts.items()}
    return None if any(p is None for p in split.values()) else {k: p for k, p in split.items() if p is not None}


def _exports(template: Template, ctx: Mapping[str, Any]) -> dict[str, str]:
    made = template.make_module(dict(ctx))
    return {name: str(value) for name, value in vars(made).items() if not name.startswith("_")}


def fill(pieces: Sequence[str], values: Mapping[str, str]) -> str:
    """Pieces split at holes (text, hole, text, ...) with ``values`` in the holes."""
    if len(pieces) == 1:
        return pieces[0]
    return "".join([piece if i % 2 == 0 else values[piece] for i, piece in enumerate(pieces)])
