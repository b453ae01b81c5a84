"""Storage and the proposal lifecycle."""

from models.db import create_schema, make_engine, session_scope
from models.errors import ConflictError, ForumflowError, InvalidInputError, NotAllowedError, NotFoundError
from models.lifecycle import SYSTEM, AllowedAction, Lifecycle, events_of, presiding_region
from models.sync import sync_definition

__all__ = [
    "SYSTEM",
    "AllowedAction",
    "ConflictError",
    "ForumflowError",
    "InvalidInputError",
    "Lifecycle",
    "NotAllowedError",
    "NotFoundError",
    "create_schema",
    "events_of",
    "make_engine",
    "presiding_region",
    "session_scope",
    "sync_definition",
]
