"""Reads a server's /metrics endpoint: the one scraper for the bench, the reliability
scenarios and the tests."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _text(port: int, timeout_s: float) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as reply:
        text: str = reply.read().decode(errors="replace")
        return text


def scrape(port: int, timeout_s: float = 5.0) -> Samples:
    """Every sample by name and labels; raises OSError when nothing answers."""
    samples: Samples = {}
    for family in text_string_to_metric_families(_text(port, timeout_s)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def read_value(port: int, name: str, **labels: str) -> float | None:
    """One sample's value, or None when it is absent or nothing answers."""
    try:
        return value(scrape(port, timeout_s=3.0), name, **labels)
    except OSError:
        return None


def sample_count(port: int) -> int | None:
    """How many samples the endpoint serves, or None when nothing answers there."""
    try:
        text = _text(port, timeout_s=3.0)
    except OSError:
        return None
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def wait_for_value(
    port: int, name: str, expected: float, timeout: float = 15, **labels: str
) -> float | None:
    """Scrape until the sample equals expected (the sampler copies stats once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        found = value(scrape(port), name, **labels)
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
