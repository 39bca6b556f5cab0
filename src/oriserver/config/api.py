"""Limits of the events query and subscription API."""

from __future__ import annotations

from dataclasses import dataclass

from oriserver.config.env import ConfigError, EnvReader, integer, milliseconds, number, variable

PAGE_SIZE = variable(
    "ORI_QUERY_DEFAULT_PAGE_SIZE",
    "100",
    "ListEvents page size when the request leaves it at 0.",
    integer(1, 100_000),
)
MAX_PAGE_SIZE = variable(
    "ORI_QUERY_MAX_PAGE_SIZE",
    "1000",
    "Largest ListEvents page; bigger requests are capped to it.",
    integer(1, 100_000),
)
MAX_SUBSCRIPTIONS = variable(
    "ORI_MAX_SUBSCRIPTIONS",
    "100",
    "Live SubscribeEvents streams per server process; more get RESOURCE_EXHAUSTED.",
    integer(0, 100_000),
)
WRITE_TIMEOUT = variable(
    "ORI_SUBSCRIBER_WRITE_TIMEOUT_SECONDS",
    "10",
    "A subscriber that accepts no event for this long is disconnected with RESOURCE_EXHAUSTED.",
    number(0.1, 3600),
)
POLL = variable(
    "ORI_SUBSCRIBE_POLL_INTERVAL_MS",
    "200",
    "How often live subscriptions look for events written by other instances.",
    milliseconds(10, 60_000),
)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    default_page_size: int = PAGE_SIZE.value
    max_page_size: int = MAX_PAGE_SIZE.value
    max_subscriptions: int = MAX_SUBSCRIPTIONS.value
    subscriber_write_timeout_s: float = WRITE_TIMEOUT.value
    poll_interval_s: float = POLL.value


def load_api(env: EnvReader) -> ApiSettings:
    max_page = env.get(MAX_PAGE_SIZE)
    default_page = env.get(PAGE_SIZE)
    if default_page > max_page:
        raise ConfigError(
            PAGE_SIZE,
            f"must be at most ORI_QUERY_MAX_PAGE_SIZE ({max_page}) (got '{default_page}')",
        )
    return ApiSettings(
        default_page_size=default_page,
        max_page_size=max_page,
        max_subscriptions=env.get(MAX_SUBSCRIPTIONS),
        subscriber_write_timeout_s=env.get(WRITE_TIMEOUT),
        poll_interval_s=env.get(POLL),
    )
