"""Command-line entrypoints: ``oriserver`` (the server and its admin tasks) and ``ori``."""
