"""Test and benchmark harness shared by tests/ and bench/: servers, load, faults, databases."""
