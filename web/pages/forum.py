"""The forum page: member states, regions and their heads, presiding terms, working groups, the workflow in force."""

from __future__ import annotations

import datetime as dt
import functools
import gettext
from typing import Any

import pycountry
from babel.dates import format_date
from fastapi import APIRouter
from fastapi.responses import Response

from models.lifecycle import presiding_term
from models.queries import forum_summary, member_names, mermaid
from notifications.render import region_label
from web.deps import DbSession, MemberPage, Now
from web.i18n import N_
from web.routing import OneHopRoute

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)

# Who may take an action, as the workflow names them (config.definition.ActorRole).
ROLE_LABELS = {
    "author": N_("the author"),
    "group_chair": N_("the chair of the working group"),
    "group_member": N_("a member of the working group"),
    "head_of_region": N_("a head of region, for their own region"),
    "presiding_head": N_("the head of the presiding region"),
    "secretariat": N_("the secretariat"),
    "system": N_("the scheduled review"),
}


@functools.cache
def country_label(code: str, lang: str) -> str:
    """A member state's name in ``lang`` where pycountry has it, else in English."""
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    name = str(country.name)
    if lang != "en":
        try:
            name = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang]).gettext(name)
        except OSError:
            pass
    return name


def _day(value: str | None, lang: str) -> str:
    return format_date(dt.date.fromisoformat(value), "long", locale=lang) if value else ""


@router.get("/forum")
def forum_page(page: MemberPage, db: DbSession, now: Now) -> Response:
    """Who takes part, who presides when (and the days nobody does), the groups, and the workflow."""
    runtime, lang = page.state.runtime, page.ui.lang
    summary = forum_summary(db, runtime.lifecycle, now)
    names = member_names(db)
    term_now = presiding_term(db, now)
    states: list[dict[str, Any]] = [
        {
            "code": code, "name": country_label(code, lang),
            "regions": [
                {"code": r["code"], "name": region_label(r["code"], lang), "head": names.get(r["head"] or "", r["head"])}
                for r in summary["regions"] if r["country"] == code
            ],
        }
        for code in summary["member_states"]
    ]
    terms = [
        {
            "region": region_label(t["region"], lang), "start": _day(t["start"], lang), "end": _day(t["end"], lang),
            "deputy": names.get(t["deputy"], t["deputy"]) if t["deputy"] else "",
            "current": term_now is not None and t["region"] == term_now.region and t["start"] == term_now.start.isoformat(),
        }
        for t in summary["presiding_terms"]
    ]
    gaps = [{"from": _day(g["from"], lang), "to": _day(g["to"], lang)} for g in summary["presiding_gaps"]]
    group_names = page.group_names
    groups = [
        {
            "key": g["key"], "name": group_names.get(g["key"], g["name"]), "chair": names.get(g["chair"], g["chair"]),
            "deputy": names.get(g["deputy_chair"], g["deputy_chair"]) if g["deputy_chair"] else "",
            "members": [names.get(h, h) for h in g["members"]],
        }
        for g in summary["working_groups"]
    ]
    wf = runtime.lifecycle.workflow
    actions = [
        {
            "name": a.name, "source": [page.ui.state(s) for s in a.source], "dest": page.ui.state(a.dest),
            "roles": [page.ui.gettext(ROLE_LABELS.get(r, r)) for r in a.roles],
            "not_author": a.not_author, "comment": a.comment_required, "percent": a.percent,
        }
        for a in wf.actions
    ]
    return page.render(
        "forum.html", member_states=states, terms=terms, gaps=gaps, groups=groups, workflow_states=wf.states,
        actions=actions, initial=wf.initial, counts=summary["proposals"], members=summary["members"],
        diagram=mermaid(runtime.lifecycle), today=format_date(now.date(), "long", locale=lang),
    )
