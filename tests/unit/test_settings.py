"""Settings come from the environment once, typed, and bad values name their variable."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from oriserver.cli.client_config import ClientDefaults, client_defaults
from oriserver.config import ConfigError, Settings, load_settings
from oriserver.config.env import REGISTRY, Variable
from tests.security.pki import Pki, make_pki


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


def test_every_variable_is_documented_with_help() -> None:
    for variable in REGISTRY.values():
        assert variable.name.startswith("ORI_")
        assert variable.help.strip()


def _configuration(environ: Mapping[str, str]) -> tuple[Settings, ClientDefaults]:
    """Everything the server and ``ori`` read from the environment."""
    return load_settings(environ), client_defaults(environ)


def _leaves(value: object, path: str = "") -> dict[str, object]:
    """The configuration flattened to its scalar fields, keyed by their dotted path."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return {path: value}
    leaves: dict[str, object] = {}
    for item in dataclasses.fields(value):
        leaves.update(_leaves(getattr(value, item.name), f"{path}.{item.name}"))
    return leaves


def _leaves_of(configuration: tuple[Settings, ClientDefaults]) -> dict[str, object]:
    server, client = configuration
    return _leaves(server, "server") | _leaves(client, "client")


def _fixed_defaults() -> list[Variable]:
    return [v for v in REGISTRY.values() if v.default and not v.shown_default]


@pytest.mark.parametrize("variable", _fixed_defaults(), ids=lambda v: v.name)
def test_a_documented_default_is_the_value_in_effect_when_unset(variable: Variable) -> None:
    """Setting a variable to the default the README shows changes nothing."""
    assert _configuration({variable.name: variable.default}) == _configuration({})


def _probes(pki: Pki) -> dict[str, dict[str, str]]:
    """A valid setting for each variable without a fixed default (TLS files come in pairs)."""
    server_tls = {
        "ORI_TLS_CERT_FILE": str(pki.server.cert_file),
        "ORI_TLS_KEY_FILE": str(pki.server.key_file),
    }
    return {
        "ORI_TLS_CERT_FILE": server_tls,
        "ORI_TLS_KEY_FILE": server_tls,
        "ORI_TLS_CLIENT_CA_FILE": {**server_tls, "ORI_TLS_CLIENT_CA_FILE": str(pki.ca.cert_file)},
        "ORI_INSTANCE_ID": {"ORI_INSTANCE_ID": "probe"},
        "ORI_DB_AUTO_MIGRATE": {"ORI_DB_AUTO_MIGRATE": "false"},
        "ORI_WATCH_IPS": {"ORI_WATCH_IPS": "192.0.2.1"},
        "ORI_NOTIFY_WEBHOOK_URL": {"ORI_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:9/hook"},
        "ORI_TLS_CA_FILE": {"ORI_TLS_CA_FILE": str(pki.ca.cert_file)},
        "ORI_TLS_CLIENT_CERT_FILE": {"ORI_TLS_CLIENT_CERT_FILE": str(pki.client.cert_file)},
        "ORI_TLS_CLIENT_KEY_FILE": {"ORI_TLS_CLIENT_KEY_FILE": str(pki.client.key_file)},
        "ORI_TLS_SERVER_NAME": {"ORI_TLS_SERVER_NAME": "probe.example"},
    }


def test_a_variable_documented_as_empty_leaves_its_settings_empty(tmp_path: Path) -> None:
    """ "(empty)" in the README is true: unset, the settings it controls hold nothing.

    A default computed in the code (the host name, true for SQLite) must be described
    with ``shown=``, or the README would claim the variable is empty.
    """
    probes = _probes(make_pki(tmp_path))
    unset = _leaves_of(_configuration({}))
    for variable in REGISTRY.values():
        if variable.default:
            continue
        assert variable.name in probes, f"add a valid value for {variable.name} to _probes"
        probed = _leaves_of(_configuration(probes[variable.name]))
        controlled = [path for path, value in probed.items() if unset[path] != value]
        assert controlled, f"{variable.name}: the probe changed no setting"
        if variable.documented_default == "(empty)":
            filled = {path: unset[path] for path in controlled if unset[path]}
            assert not filled, f"{variable.name} is documented as empty, but unset gives {filled}"
