"""One line that says what an event did: whom a notice went to, the percent of a progress report, and so on.

The demo's timeline and ``show``/``history`` print the same note, so both call ``event_note``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _names(values: Any) -> str:
    return ", ".join(str(v) for v in values or [])


def event_note(action: str, comment: str | None, payload: Mapping[str, Any] | None) -> str:
    """The note for an event: its recipients, percent or change, else its comment (plain text, not escaped)."""
    p = payload or {}
    comment = comment or ""
    if action == "remind":
        before = f"{p['offset_days']} d before deadline " if p.get("offset_days") is not None else ""
        note = f"{before}→ {_names(p.get('recipients'))}"
    elif action in ("escalate", "progress_due"):
        level = f"level {p['level']} " if "level" in p else ""
        note = f"{level}→ {_names(p.get('recipients'))}"
    elif action == "handover":
        to = f" → {_names(p['recipients'])}" if p.get("recipients") else ""
        note = f"{p.get('from_region')} → {p.get('to_region')}{to}"
    elif action == "silence":
        return f"nobody objected; endorsed by {_names(p.get('endorsed_by'))}"
    elif action == "report_progress":
        return f"{p.get('percent')}% {comment}".rstrip()
    elif action == "edit":
        return f"text version {p.get('text_version')} ({_names(p.get('fields'))})"
    elif p.get("earlier_endorsers"):
        change = p.get("text_change", {})
        versions = f"text v{change.get('from_version')} → v{change.get('to_version')}"
        asked = f"{versions}; asked again: {_names(p['earlier_endorsers'])}"
        return f"{comment} ({asked})" if comment else asked
    else:
        return comment
    return f"{comment} ({note})" if comment else note
