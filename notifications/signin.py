"""Sign-in links by mail: render the link in the member's language and queue it in the outbox.

A sign-in mail is not about an event, so it is a ``message`` delivery: rendered now, stored in its
outbox row, sent by the normal dispatch, and wiped from the row once sent or given up.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import urlencode

from sqlmodel import Session

from config.definition import ForumDefinition
from config.settings import Settings
from models.auth import RateLimit, SignInGrant, request_sign_in
from models.outbox import Delivery, DeliveryKind, DeliveryStatus
from models.tables import Member
from notifications.render import FALLBACK_LANGUAGE, Rendered, environment, format_when, header_text, language_of, member_zone

log = logging.getLogger(__name__)

# The web app serves this path (GET shows "Continue as ...", POST signs in).
SIGN_IN_PATH = "/sign-in/continue"


def sign_in_url(base_url: str, token: str, next_path: str = "/") -> str:
    """The absolute link that carries a sign-in token (and the app's page to go to after signing in)."""
    query = {"token": token} | ({"next": next_path} if next_path != "/" else {})
    return f"{base_url.rstrip('/')}{SIGN_IN_PATH}?{urlencode(query)}"


def sign_in_message(definition: ForumDefinition, member: Member, *, link: str, expires: dt.datetime) -> Rendered:
    """The sign-in mail for ``member``, in their language, the expiry in their time zone."""
    lang = language_of(member)
    env = environment()
    ctx = {
        "lang": lang, "name": member.name, "forum": definition.forum.name_in(lang), "link": link,
        "expires": format_when(expires, lang, member_zone(member)),
    }
    names = [f"{lng}/sign_in" for lng in dict.fromkeys((lang, FALLBACK_LANGUAGE))]
    module = env.select_template([f"{n}.txt" for n in names]).make_module(ctx)
    subject = header_text(f"[{definition.forum.key}] {str(module.subject).strip()}")  # type: ignore[attr-defined]
    html = env.select_template([f"{n}.html" for n in names]).render(ctx | {"subject": subject})
    return Rendered(subject, str(module).lstrip(), html, lang)


def queue_message(session: Session, member: Member, rendered: Rendered, *, now: dt.datetime, expires: dt.datetime) -> Delivery:
    """Put a rendered mail in the outbox for ``member`` (sent by the next dispatch, wiped after)."""
    delivery = Delivery(
        recipient=member.handle, email=member.email, kind=DeliveryKind.MESSAGE, critical=True,
        status=DeliveryStatus.PENDING, next_attempt_at=now, created_at=now,
        message={
            "subject": rendered.subject, "text": rendered.text, "html": rendered.html, "language": rendered.language,
            "expires_at": expires.isoformat(),
        },
    )
    session.add(delivery)
    session.flush()
    return delivery


def mail_sign_in_link(
    session: Session, definition: ForumDefinition, settings: Settings, address: str, *, client: str, now: dt.datetime,
    next_path: str = "/",
) -> list[SignInGrant]:
    """Mail a sign-in link to each active member with ``address`` (none when nobody has it); rate-limited.

    Raises InvalidInputError for something that is no address and RateLimitedError past a limit; the
    caller answers the same way whether or not links went out.
    """
    grants = request_sign_in(
        session, address, client=client, now=now, valid=dt.timedelta(minutes=settings.sign_in_link_minutes),
        per_address=RateLimit(settings.sign_in_per_address), per_client=RateLimit(settings.sign_in_per_client),
    )
    for grant in grants:
        link = sign_in_url(settings.base_url, grant.token, next_path)
        rendered = sign_in_message(definition, grant.member, link=link, expires=grant.expires_at)
        queue_message(session, grant.member, rendered, now=now, expires=grant.expires_at)
    return grants
