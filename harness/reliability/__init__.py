"""Reliability scenarios: bounded faults and a soak against real oriserver processes on loopback.

``python -m harness.reliability`` (what ``scripts/reliability`` runs) prints one Markdown table;
``tests/reliability`` runs the same scenario functions with short durations.
"""
