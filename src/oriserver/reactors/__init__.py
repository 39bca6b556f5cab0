"""Reactors: processes that act on stored events, each with its own checkpoint."""
