"""The pure core: arithmetic, events, the running totals and reactor decisions.

Nothing under this package performs I/O or imports anything outside the
standard library; tests/test_architecture.py enforces it.
"""
