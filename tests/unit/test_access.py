"""The events API's access decision and its settings, without a server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oriserver.config import ConfigError, load_settings
from oriserver.config.access import read_tokens
from oriserver.domain.watchlist import WatchList
from oriserver.service.access import (
    AccessPolicy,
    Credentials,
    Outcome,
    TokenSet,
    peer_address,
    token_id,
)

LOOPBACK = WatchList.parse("127.0.0.0/8,::1/128")
EVERYWHERE = WatchList.parse("0.0.0.0/0,::/0")
TOKEN = "a-token-of-sixteen-or-more"  # noqa: S105 - a test token
OTHER = "another-token-of-sixteen"


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.7:5123", "10.0.0.7"),
        ("ipv6:%5B::1%5D:5123", "::1"),
        ("ipv6:[::1]:5123", "::1"),
        ("ipv6:[::ffff:127.0.0.1]:42424", "127.0.0.1"),
        ("unix:/run/socket", None),
        ("ipv4:not-an-ip:1", None),
    ],
)
def test_the_address_is_read_from_either_engines_peer_string(
    peer: str, address: str | None
) -> None:
    assert peer_address(peer) == address


def test_without_credentials_configured_the_network_decides() -> None:
    policy = AccessPolicy(LOOPBACK)
    assert policy.decide(Credentials("ipv4:127.0.0.1:1")).caller == "loopback"
    assert policy.decide(Credentials("ipv6:[::1]:1")).allowed
    refused = policy.decide(Credentials("ipv4:192.0.2.9:1", f"Bearer {TOKEN}"))
    assert refused.outcome is Outcome.DENIED
    assert "ORI_EVENTS_API_ALLOW_CIDRS" in refused.reason
    assert "192.0.2.9" in refused.reason


def test_an_allowed_network_that_is_not_loopback_is_named() -> None:
    policy = AccessPolicy(WatchList.parse("10.0.0.0/8"))
    assert policy.decide(Credentials("ipv4:10.1.2.3:1")).caller == "network:10.0.0.0/8"


def test_with_tokens_every_caller_needs_one_loopback_included() -> None:
    policy = AccessPolicy(EVERYWHERE, lambda: TokenSet((TOKEN,)))
    missing = policy.decide(Credentials("ipv4:127.0.0.1:1"))
    assert missing.outcome is Outcome.UNAUTHENTICATED
    assert "Bearer" in missing.reason
    assert policy.decide(Credentials("ipv4:127.0.0.1:1", "Basic abc")).outcome is (
        Outcome.UNAUTHENTICATED
    )
    wrong = policy.decide(Credentials("ipv4:127.0.0.1:1", f"Bearer {OTHER}"))
    assert wrong.outcome is Outcome.DENIED
    assert OTHER not in wrong.reason + wrong.caller
    right = policy.decide(Credentials("ipv4:198.51.100.1:1", f"bearer {TOKEN}"))
    assert right.allowed
    assert right.caller == f"token:{token_id(TOKEN)}"
    assert TOKEN not in right.caller


def test_a_token_from_outside_an_explicit_allow_list_is_refused() -> None:
    policy = AccessPolicy(LOOPBACK, lambda: TokenSet((TOKEN,)))
    assert policy.decide(Credentials("ipv4:192.0.2.9:1", f"Bearer {TOKEN}")).outcome is (
        Outcome.DENIED
    )


def test_tokens_are_asked_for_on_every_call_so_a_rotation_counts() -> None:
    current = [TokenSet((TOKEN,))]
    policy = AccessPolicy(EVERYWHERE, lambda: current[0])
    assert policy.decide(Credentials("ipv4:127.0.0.1:1", f"Bearer {TOKEN}")).allowed
    current[0] = TokenSet((OTHER,))
    assert not policy.decide(Credentials("ipv4:127.0.0.1:1", f"Bearer {TOKEN}")).allowed
    assert policy.decide(Credentials("ipv4:127.0.0.1:1", f"Bearer {OTHER}")).allowed


def test_a_client_certificate_name_grants_access_instead_of_a_token() -> None:
    policy = AccessPolicy(EVERYWHERE, None, frozenset({"reader.example"}))
    named = policy.decide(Credentials("ipv4:192.0.2.9:1", None, ("x.example", "reader.example")))
    assert named.allowed
    assert named.caller == "cert:reader.example"
    other = policy.decide(Credentials("ipv4:192.0.2.9:1", None, ("x.example",)))
    assert other.outcome is Outcome.DENIED
    assert "ORI_EVENTS_API_CLIENT_NAMES" in other.reason


def test_names_and_tokens_together_accept_either() -> None:
    policy = AccessPolicy(EVERYWHERE, lambda: TokenSet((TOKEN,)), frozenset({"reader.example"}))
    assert policy.decide(Credentials("ipv4:192.0.2.9:1", f"Bearer {TOKEN}", ("x.example",))).allowed
    assert policy.decide(Credentials("ipv4:192.0.2.9:1", None, ("reader.example",))).allowed
    unnamed = policy.decide(Credentials("ipv4:192.0.2.9:1", None, ("x.example",)))
    assert unnamed.outcome is Outcome.UNAUTHENTICATED


def _tokens_file(folder: Path, content: str, mode: int = 0o600) -> Path:
    path = folder / "tokens"
    path.write_text(content)
    os.chmod(path, mode)
    return path


def test_the_tokens_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = _tokens_file(tmp_path, f"# readers\n\n{TOKEN}\n  {OTHER}  \n")
    assert read_tokens(path) == (TOKEN, OTHER)


@pytest.mark.parametrize(
    ("content", "mode", "problem"),
    [
        ("# nothing\n\n", 0o600, "holds no token"),
        (f"{TOKEN}\n", 0o644, "readable by every user"),
        ("short\n", 0o600, "line 1"),
        (f"{TOKEN} {OTHER}\n", 0o400, "line 1"),
    ],
)
def test_an_unusable_tokens_file_stops_start_up_naming_the_problem_not_the_token(
    tmp_path: Path, content: str, mode: int, problem: str
) -> None:
    path = _tokens_file(tmp_path, content, mode)
    with pytest.raises(ConfigError) as caught:
        load_settings({"ORI_EVENTS_API_TOKENS_FILE": str(path)})
    message = str(caught.value)
    assert message.startswith("ORI_EVENTS_API_TOKENS_FILE: ")
    assert problem in message
    assert TOKEN not in message
    assert "\n" not in message


def test_the_allow_list_defaults_to_loopback_and_opens_once_credentials_are_required(
    tmp_path: Path,
) -> None:
    assert load_settings({}).access.networks == LOOPBACK
    path = _tokens_file(tmp_path, f"{TOKEN}\n")
    with_tokens = load_settings({"ORI_EVENTS_API_TOKENS_FILE": str(path)}).access
    assert with_tokens.networks == EVERYWHERE
    assert with_tokens.credentials_required
    narrowed = load_settings(
        {"ORI_EVENTS_API_TOKENS_FILE": str(path), "ORI_EVENTS_API_ALLOW_CIDRS": "10.0.0.0/8"}
    )
    assert narrowed.access.networks == WatchList.parse("10.0.0.0/8")


@pytest.mark.parametrize("value", ["10.0.0.0/33", "nonsense", " , "])
def test_a_bad_allow_list_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="ORI_EVENTS_API_ALLOW_CIDRS"):
        load_settings({"ORI_EVENTS_API_ALLOW_CIDRS": value})


def test_client_names_need_mtls() -> None:
    with pytest.raises(ConfigError, match=r"ORI_EVENTS_API_CLIENT_NAMES: .*mTLS"):
        load_settings({"ORI_EVENTS_API_CLIENT_NAMES": "reader.example"})


def test_client_names_are_refused_with_the_native_engine() -> None:
    with pytest.raises(ConfigError, match="ORI_EVENTS_API_CLIENT_NAMES: the native engine"):
        load_settings(
            {"ORI_SERVER_ENGINE": "native", "ORI_EVENTS_API_CLIENT_NAMES": "reader.example"}
        )
