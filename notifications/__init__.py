"""Notifications: a projection of the event log into mail, through an outbox of deliveries.

``plan_deliveries`` turns new events into ``Delivery`` rows (who, in which mode); ``send_pending``
renders and sends the due ones over SMTP; ``dispatch_once`` does both; ``retry_deliveries`` queues failed
or dead ones again. ``notifications.sink`` is the
local mail server that stores everything in a Maildir.
"""

from notifications.dispatch import DispatchReport, RetryPolicy, SendReport, bundle_digests, dispatch_once, send_pending
from notifications.planning import plan_deliveries
from notifications.recipients import CRITICAL, DEFAULT_RULES, RecipientRules
from notifications.render import Renderer, environment
from notifications.retry import retry_deliveries

__all__ = [
    "CRITICAL",
    "DEFAULT_RULES",
    "DispatchReport",
    "RecipientRules",
    "Renderer",
    "RetryPolicy",
    "SendReport",
    "bundle_digests",
    "dispatch_once",
    "environment",
    "plan_deliveries",
    "retry_deliveries",
    "send_pending",
]
