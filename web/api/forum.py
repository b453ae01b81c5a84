"""The forum: member states, regions and their heads, presiding terms, working groups and the workflow in force."""

from __future__ import annotations

from fastapi import APIRouter

from models.queries import forum_summary
from web.api.schemas import ForumOut, StateOut, WorkflowActionOut, WorkflowOut
from web.deps import ApiMember, DbSession, Now, State
from web.errors import problem_responses
from web.routing import OneHopRoute

router = APIRouter(tags=["forum"], route_class=OneHopRoute)


@router.get("/forum", response_model=ForumOut, responses=problem_responses(401))
def get_forum(who: ApiMember, db: DbSession, now: Now, state: State) -> ForumOut:
    """Member states, regions with their heads, presiding terms (the current one marked), groups, the workflow."""
    lifecycle = state.runtime.lifecycle
    summary = forum_summary(db, lifecycle, now)
    current = summary["presiding_region_now"]
    today = now.date().isoformat()
    terms = [t | {"current": t["region"] == current and t["start"] <= today <= t["end"]} for t in summary["presiding_terms"]]
    wf = lifecycle.workflow
    workflow = WorkflowOut(
        initial=wf.initial,
        states=[StateOut(name=s.name, label=s.label or s.name, sla_days=s.sla_days, final=s.final) for s in wf.states],
        actions=[
            WorkflowActionOut(
                name=a.name, label=a.label or a.name, source=list(a.source), dest=a.dest, roles=list(a.roles),
                comment_required=a.comment_required,
            )
            for a in wf.actions
        ],
    )
    return ForumOut.model_validate(summary | {"presiding_terms": terms, "workflow": workflow})
