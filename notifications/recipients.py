"""Who must hear about an event: rules per action, overridable in the forum definition.

A rule is a list of targets (see ``config.definition.NOTIFY_TARGETS``): roles resolved against the
proposal at the time of the event, ``recipients`` for the handles a scheduler notice names, or
``@handle``. The built-in rules below apply unless the definition's ``notifications`` mapping has a key
for the action. The actor of an event never hears about their own action.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from config.definition import ForumDefinition

# Notices that must reach their recipients whatever their mail preference.
CRITICAL = frozenset({"remind", "escalate", "progress_due"})

DEFAULT_RULES: Mapping[str, tuple[str, ...]] = {
    "create": (),  # a draft is the author's own business
    "edit": (),  # so is every new text of a draft
    "submit": ("group_chair", "group_members"),
    # The endorsement round opens; those who endorsed the previous round's text are asked again.
    "recommend": ("author", "heads_of_region", "earlier_endorsers"),
    "return": ("author",),
    "reject": ("author", "group_members"),
    "endorse": ("author", "group_chair"),
    "object": ("author", "group_chair", "heads_of_region"),  # the round ends for everybody
    "consensus": ("author", "group_chair", "heads_of_region", "presiding_head"),
    "silence": ("author", "group_chair", "heads_of_region", "presiding_head"),
    "approve": ("author", "group_members", "heads_of_region"),
    "refer_back": ("author", "group_chair"),
    "report_progress": ("author", "group_chair", "presiding_head"),
    "complete": ("author", "group_members", "heads_of_region"),
    "withdraw": ("group_chair", "group_members"),
    "remind": ("recipients",),
    "escalate": ("recipients",),
    "progress_due": ("recipients",),
    "handover": ("recipients",),
}
# For actions of other workflows that have no rule of their own.
FALLBACK_RULE: tuple[str, ...] = ("author", "group_chair")


@dataclass
class Audience:
    """The people a rule can name, as of one event."""

    author: str
    chair: str
    group_members: Sequence[str]
    heads: Mapping[str, str]  # handle -> region
    secretariat: Sequence[str]
    presiding_region: str | None
    recipients: Sequence[str] = field(default_factory=list)
    earlier_endorsers: Sequence[str] = field(default_factory=list)
    # The deputies who take the chair's or the presiding head's step when that holder wrote the proposal.
    deputy_chair: str | None = None
    presiding_deputy: str | None = None


class RecipientRules:
    """The rules of one forum definition."""

    def __init__(self, definition: ForumDefinition) -> None:
        self.rules: dict[str, tuple[str, ...]] = dict(DEFAULT_RULES)
        handover = definition.workflow.handover_action
        if handover != "handover":
            self.rules[handover] = self.rules.pop("handover")
        self.rules |= {action: tuple(targets) for action, targets in definition.notifications.items()}

    def rule(self, action: str) -> tuple[str, ...]:
        """The targets for ``action``."""
        return self.rules.get(action, FALLBACK_RULE)

    def resolve(self, action: str, actor: str, audience: Audience) -> list[str]:
        """Handles that must hear about ``action`` taken by ``actor``, in a stable order, without the actor."""
        out: dict[str, None] = {}
        for target in self.rule(action):
            for handle in _expand(target, audience):
                out[handle] = None
        out.pop(actor, None)
        return list(out)


def _expand(target: str, a: Audience) -> Iterable[str]:
    if target.startswith("@"):
        return [target[1:]]
    if target == "author":
        return [a.author]
    if target == "group_chair":
        # When the chair wrote the proposal, the deputy chair holds the chair's steps and hears of them too.
        return [a.chair] + ([a.deputy_chair] if a.deputy_chair and a.chair == a.author else [])
    if target == "group_members":
        return sorted(a.group_members)
    if target == "heads_of_region":
        return sorted(a.heads)
    if target == "presiding_head":
        presiding = sorted(h for h, region in a.heads.items() if region == a.presiding_region)
        # When a presiding head wrote the proposal, the term's deputy approves it and hears of it too.
        return presiding + ([a.presiding_deputy] if a.presiding_deputy and a.author in presiding else [])
    if target == "secretariat":
        return sorted(a.secretariat)
    if target == "recipients":
        return list(a.recipients)
    if target == "earlier_endorsers":
        return list(a.earlier_endorsers)
    raise ValueError(f"unknown notification target {target!r}")


def is_critical(action: str) -> bool:
    """Reminders and escalations go out whatever the member's preference."""
    return action in CRITICAL

