"""Settings come from the environment once, typed, and bad values name their variable."""

from __future__ import annotations

import pytest

from oriserver.config import ConfigError, load_settings
from oriserver.config.env import REGISTRY


def test_defaults_need_no_environment_at_all() -> None:
    settings = load_settings({})
    assert settings.port == 50051
    assert settings.listen_host == "[::]"
    assert settings.reflection is True
    assert settings.log_format == "json"
    assert settings.events.database.dialect == "sqlite"
    assert settings.events.auto_migrate is True
    assert settings.events.durability == "async"
    assert settings.instance_id  # the host name


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("ORI_PORT", "abc", "whole number"),
        ("ORI_PORT", "70000", "between 0 and 65535"),
        ("ORI_PORT", "-1", "between 0 and 65535"),
        ("ORI_PORT", "5.5", "whole number"),
        ("ORI_REFLECTION", "yes", "true or false"),
        ("ORI_SHUTDOWN_GRACE_SECONDS", "soon", "number"),
        ("ORI_SHUTDOWN_GRACE_SECONDS", "nan", "between"),
        ("ORI_LOG_FORMAT", "xml", "json, text"),
        ("ORI_LOG_LEVEL", "LOUD", "debug, info"),
        ("ORI_DATABASE_URL", "mysql://x/y", "only sqlite"),
        ("ORI_DATABASE_URL", "sqlite:///:memory:", "file path"),
        ("ORI_DATABASE_URL", "oriserver.db", "must look like"),
        ("ORI_EVENTS_DURABILITY", "eventually", "async, sync"),
        ("ORI_EVENTS_BATCH_SIZE", "0", "between 1"),
        ("ORI_EVENTS_FLUSH_INTERVAL_MS", "0", "between 1"),
        ("ORI_WATCH_IPS", "10.0.0.1, not-an-ip", "'not-an-ip' is not an IP"),
        ("ORI_NOTIFY_WEBHOOK_URL", "ftp://x", "http:// or https://"),
        ("ORI_DB_AUTO_MIGRATE", "maybe", "true or false"),
    ],
)
def test_a_bad_value_fails_with_the_variable_name(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    assert fragment in message
    assert repr(value) in message
    assert "\n" not in message


def test_buffer_smaller_than_a_batch_is_refused() -> None:
    with pytest.raises(ConfigError, match="ORI_EVENTS_BUFFER_SIZE: must be at least"):
        load_settings({"ORI_EVENTS_BATCH_SIZE": "500", "ORI_EVENTS_BUFFER_SIZE": "100"})


def test_booleans_accept_only_plain_words() -> None:
    assert load_settings({"ORI_REFLECTION": "FALSE"}).reflection is False
    assert load_settings({"ORI_REFLECTION": "0"}).reflection is False
    assert load_settings({"ORI_REFLECTION": "on"}).reflection is True


def test_postgres_turns_auto_migrate_off_unless_asked() -> None:
    url = "postgresql://ori@db.internal:5432/ori"
    assert load_settings({"ORI_DATABASE_URL": url}).events.auto_migrate is False
    assert load_settings(
        {"ORI_DATABASE_URL": url, "ORI_DB_AUTO_MIGRATE": "true"}
    ).events.auto_migrate


def test_database_passwords_are_redacted_for_logs() -> None:
    settings = load_settings({"ORI_DATABASE_URL": "postgresql://ori:s3cret@db/ori"})
    assert "s3cret" not in settings.events.database.redacted()
    assert settings.events.database.redacted() == "postgresql://ori:***@db/ori"


def test_watch_list_parses_addresses_and_networks() -> None:
    settings = load_settings({"ORI_WATCH_IPS": "10.1.2.3, 192.168.0.0/16 ,::1"})
    assert settings.notify.watch_list.matches("192.168.44.1") is not None
    assert settings.notify.watch_list.matches("10.1.2.4") is None


def test_blank_values_mean_the_default() -> None:
    assert load_settings({"ORI_PORT": "  "}).port == 50051


def test_every_variable_is_documented_with_a_default_and_help() -> None:
    for variable in REGISTRY.values():
        assert variable.name.startswith("ORI_")
        assert variable.help.strip()
        assert variable.documented_default
