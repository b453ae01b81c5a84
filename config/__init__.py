"""Configuration: settings and the forum definition."""

from config.definition import ForumDefinition, ForumDefinitionError, load_definition
from config.settings import DEFAULT_FORUM_FILE, Settings

__all__ = ["DEFAULT_FORUM_FILE", "ForumDefinition", "ForumDefinitionError", "Settings", "load_definition"]
