"""Settings come from the environment once, typed, and bad values name their variable."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from oriserver.cli.client_config import ClientDefaults, client_defaults
from oriserver.config import ConfigError, Settings, load_settings
from oriserver.config.database import DatabaseUrl
from oriserver.config.env import REGISTRY, Variable
from oriserver.config.serving import SYNC_DURABILITY_THREADS, THREADS
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
        ("ORI_EVENTS_DURABILITY", "eventually", "async, sync"),
        ("ORI_EVENTS_BATCH_SIZE", "0", "between 1"),
        ("ORI_EVENTS_FLUSH_INTERVAL_MS", "0", "between 1"),
        ("ORI_WATCH_IPS", "10.0.0.1, not-an-ip", "'not-an-ip' is not an IP"),
        ("ORI_NOTIFY_WEBHOOK_URL", "ftp://x", "http:// or https://"),
        ("ORI_DB_AUTO_MIGRATE", "maybe", "true or false"),
        ("ORI_LISTEN_HOST", "256.1.1.1", "not a valid IPv4 address"),
        ("ORI_LISTEN_HOST", "1.2.3", "not a valid IPv4 address"),
        ("ORI_LISTEN_HOST", "[::1", "not a valid IPv6 address"),
        ("ORI_LISTEN_HOST", "[127.0.0.1]", "not a valid IPv6 address"),
        ("ORI_LISTEN_HOST", "::g", "not a valid IPv6 address"),
        ("ORI_LISTEN_HOST", "my host", "an IP address or a host name"),
        ("ORI_LISTEN_HOST", "oriserver.invalid", "does not resolve"),
        ("ORI_METRICS_LISTEN_HOST", "256.1.1.1", "not a valid IPv4 address"),
        ("ORI_METRICS_LISTEN_HOST", "[::1", "not a valid IPv6 address"),
        ("ORI_METRICS_LISTEN_HOST", "oriserver.invalid", "does not resolve"),
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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ori:s3cret@db/ori",
        "postgres://ori:s3cret@db/ori",
        "postgresql+psycopg://ori:s3cret@db/ori",
        "postgresql://ori:s3%63ret@db/ori",  # percent-encoded, as libpq allows
        "postgresql://ori@db/ori?password=s3cret",
        "postgresql://ori@db/ori?pass%77ord=s3cret",  # the key percent-encoded
        "postgresql://ori@db/ori?sslmode=require&sslpassword=s3cret&sslkey=/keys/ori.key",
        "postgresql://ori:s3cret@db/ori?password=s3cret",
        "postgresql://ori@db/ori?scram_client_key=czNjcmV0",  # authenticates like a password
    ],
)
def test_every_form_of_database_secret_is_redacted_for_logs(url: str) -> None:
    database = load_settings({"ORI_DATABASE_URL": url}).events.database
    shown = database.redacted()
    for secret in ("s3cret", "s3%63ret", "czNjcmV0"):
        assert secret not in shown
        assert secret not in repr(database)
    options = conninfo_to_dict(shown)  # still something libpq reads, with the rest intact
    assert options["dbname"] == "ori"
    assert options["host"] == "db"
    assert options["user"] == "ori"
    assert "***" in options.values()


def test_each_option_libpq_treats_as_a_password_is_redacted() -> None:
    passwords = [o.keyword.decode() for o in pq.Conninfo.get_defaults() if o.dispchar == b"*"]
    assert "password" in passwords
    assert "sslpassword" in passwords
    for keyword in passwords:
        database = DatabaseUrl.parse(f"postgresql://ori@db/ori?{keyword}=s3cret")
        assert conninfo_to_dict(database.redacted())[keyword] == "***"


def test_a_database_url_without_secrets_is_shown_as_given() -> None:
    url = "postgresql://ori@db.internal:5432/ori?sslmode=verify-full&sslkey=/keys/ori.key"
    assert load_settings({"ORI_DATABASE_URL": url}).events.database.redacted() == url


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("mysql://u:s3cret@x/y", "only sqlite"),
        ("sqlite:///:memory:", "file path"),
        ("oriserver.db", "must look like"),
        ("postgresql://", "names no database"),
        ("postgresql://u:s3cret@db.internal", "names no database"),
        ("postgresql://u:s3cret@127.0.0.1:notaport/x", "port must be a number"),
        ("postgresql://u@127.0.0.1:0/x?password=s3cret", "port must be a number"),
        ("postgresql://u@127.0.0.1/x?port=70000&password=s3cret", "port must be a number"),
        ("postgresql://u@a,b/x?port=5432,5433,5434", "3 ports for 2 hosts"),
        ("postgresql://u:s3cret@127.0.0.1:5432/db?sslmode=bogus", "sslmode must be one of"),
        ("postgresql://u@127.0.0.1/db?gssencmode=always", "gssencmode must be one of"),
        ("postgresql://u@127.0.0.1/db?connect_timeout=soon", "connect_timeout must be a whole"),
        ("postgresql://u:s3cret@127.0.0.1/db?bogus=1", 'invalid URI query parameter: "bogus"'),
        ("postgresql://u:s3cret%zz@127.0.0.1/db", "invalid percent-encoded token"),
        ("postgresql://u@127.0.0.1/db?password=s3cret%zz", "invalid percent-encoded token"),
        ("postgresql://u:s3cret@[::1/db", 'matching "]"'),
    ],
)
def test_a_bad_database_url_is_refused_without_showing_its_password(
    value: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"ORI_DATABASE_URL": value})
    message = str(caught.value)
    assert message.startswith("ORI_DATABASE_URL: ")
    assert fragment in message
    assert "s3cret" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "bind_address", "metrics_host"),
    [
        ("[::]", "[::]:50051", "::"),
        ("::", "[::]:50051", "::"),
        ("0.0.0.0", "0.0.0.0:50051", "0.0.0.0"),
        ("127.0.0.1", "127.0.0.1:50051", "127.0.0.1"),
        ("::1", "[::1]:50051", "::1"),
        ("[::1]", "[::1]:50051", "::1"),
        ("localhost", "localhost:50051", "localhost"),
    ],
)
def test_listen_hosts_take_addresses_and_resolvable_names_in_the_form_each_server_binds(
    value: str, bind_address: str, metrics_host: str
) -> None:
    settings = load_settings({"ORI_LISTEN_HOST": value, "ORI_METRICS_LISTEN_HOST": value})
    assert settings.bind_address == bind_address  # gRPC needs IPv6 in brackets
    assert settings.metrics_listen_host == metrics_host  # the socket API needs it bare


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


LOOPBACK = "127.0.0.0/8,::1/128"


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
        "ORI_TLS": {"ORI_TLS": "true"},
        "ORI_EVENTS_API_ALLOW_CIDRS": {"ORI_EVENTS_API_ALLOW_CIDRS": "10.0.0.0/8"},
        # The allow-list is given as its default: unset, credentials would also open it.
        "ORI_EVENTS_API_TOKENS_FILE": {
            "ORI_EVENTS_API_TOKENS_FILE": str(_tokens(pki)),
            "ORI_EVENTS_API_ALLOW_CIDRS": LOOPBACK,
        },
        "ORI_EVENTS_API_CLIENT_NAMES": {
            **server_tls,
            "ORI_EVENTS_API_ALLOW_CIDRS": LOOPBACK,
            "ORI_TLS_CLIENT_CA_FILE": str(pki.ca.cert_file),
            "ORI_EVENTS_API_CLIENT_NAMES": "reader.example",
        },
        "ORI_TOKEN_FILE": {"ORI_TOKEN_FILE": str(_tokens(pki))},
    }


def _tokens(pki: Pki) -> Path:
    """A tokens file as the server accepts it: a well-formed token, not world-readable."""
    path = pki.ca.folder / "tokens"
    path.write_text("a-probe-token-0123456789\n")
    path.chmod(0o600)
    return path


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


def test_sync_durability_runs_calculations_on_more_threads_unless_told() -> None:
    """Sync calls wait for commits, so more of them can share one; a set value stands."""
    fixed = int(THREADS.default)
    assert load_settings({}).serving.threads == fixed
    sync = {"ORI_EVENTS_DURABILITY": "sync"}
    assert load_settings(sync).serving.threads == SYNC_DURABILITY_THREADS > fixed
    assert load_settings({**sync, "ORI_SERVER_THREADS": str(fixed)}).serving.threads == fixed
