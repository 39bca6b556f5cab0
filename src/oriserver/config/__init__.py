"""Configuration: every setting comes from the environment, parsed once at start-up."""

from __future__ import annotations

from oriserver.config.env import ConfigError
from oriserver.config.settings import Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
