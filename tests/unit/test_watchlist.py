"""Watch lists match addresses and networks; only requests from them are notified."""

from __future__ import annotations

import pytest

from oriserver.domain.watchlist import WatchList, decide
from tests.support.events import calculation


@pytest.mark.parametrize(
    ("entries", "address", "watched"),
    [
        ("10.0.0.5", "10.0.0.5", True),
        ("10.0.0.5", "10.0.0.6", False),
        ("10.0.0.0/8", "10.200.3.4", True),
        ("192.168.1.0/24", "192.168.2.1", False),
        ("::1", "::1", True),
        ("2001:db8::/32", "2001:db8:abcd::1", True),
        ("127.0.0.1", "::ffff:127.0.0.1", True),  # IPv4 clients seen through a dual-stack socket
        ("10.0.0.0/8", "not-an-ip", False),
        ("10.0.0.0/8", None, False),
        ("", "10.0.0.1", False),
    ],
)
def test_matching(entries: str, address: str | None, watched: bool) -> None:
    assert (WatchList.parse(entries).matches(address) is not None) is watched


def test_a_bad_entry_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address"):
        WatchList.parse("10.0.0.1, 10.0.0.300")


def test_only_requests_from_watched_addresses_produce_a_notification() -> None:
    watch = WatchList.parse("203.0.113.0/24")
    requested, outcome = calculation(client_ip="203.0.113.9")
    notification = decide(watch, requested)
    assert notification is not None
    payload = notification.as_payload()
    assert payload["event_id"] == str(requested.event_id)
    assert payload["watched_network"] == "203.0.113.0/24"
    assert payload["inputs"] == {"first": 1, "last": 2}
    assert decide(watch, outcome) is None
    assert decide(watch, calculation(client_ip="198.51.100.1")[0]) is None
