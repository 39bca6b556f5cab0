"""Helpers shared by the tests: servers in threads and subprocesses, free ports."""
