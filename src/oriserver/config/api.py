"""Limits of the events query and subscription API."""

from __future__ import annotations

from dataclasses import dataclass

from oriserver.config.env import EnvReader, variable

PAGE_SIZE = variable(
    "ORI_QUERY_DEFAULT_PAGE_SIZE", "100", "ListEvents page size when the request leaves it at 0."
)
MAX_PAGE_SIZE = variable(
    "ORI_QUERY_MAX_PAGE_SIZE", "1000", "Largest ListEvents page; bigger requests are capped to it."
)
MAX_SUBSCRIPTIONS = variable(
    "ORI_MAX_SUBSCRIPTIONS",
    "100",
    "Live SubscribeEvents streams per server process; more get RESOURCE_EXHAUSTED.",
)
WRITE_TIMEOUT = variable(
    "ORI_SUBSCRIBER_WRITE_TIMEOUT_SECONDS",
    "10",
    "A subscriber that accepts no event for this long is disconnected with RESOURCE_EXHAUSTED.",
)
POLL = variable(
    "ORI_SUBSCRIBE_POLL_INTERVAL_MS",
    "200",
    "How often live subscriptions look for events written by other instances.",
)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    default_page_size: int = 100
    max_page_size: int = 1000
    max_subscriptions: int = 100
    subscriber_write_timeout_s: float = 10.0
    poll_interval_s: float = 0.2


def load_api(env: EnvReader) -> ApiSettings:
    max_page = env.integer(MAX_PAGE_SIZE, 1, 100_000)
    return ApiSettings(
        default_page_size=env.integer(PAGE_SIZE, 1, max_page),
        max_page_size=max_page,
        max_subscriptions=env.integer(MAX_SUBSCRIPTIONS, 0, 100_000),
        subscriber_write_timeout_s=env.number(WRITE_TIMEOUT, 0.1, 3600),
        poll_interval_s=env.integer(POLL, 10, 60_000) / 1000,
    )
