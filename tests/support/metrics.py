"""Scrapes a /metrics endpoint and reads sample values by name and labels."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


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
