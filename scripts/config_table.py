#!/usr/bin/env python3
"""Print the README's configuration table from the settings registry.

Usage: scripts/config_table.py [--write]  (--write replaces the table in README.md)
tests/test_docs.py fails when README.md and the registry disagree.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"

# Each module registers its variables when imported; the section is where they come from.
SECTIONS = (
    ("oriserver.config.serving", "Serving engine"),
    ("oriserver.config.transport", "Transport security and limits"),
    ("oriserver.config.api", "Events API"),
    ("oriserver.config.access", "Events API access"),
    ("oriserver.config.settings", None),  # split below: server, event store, notifications
    ("oriserver.cli.client_config", "Client (`ori`)"),
    ("oriserver.cli.client_tls", "Client (`ori`)"),
    ("oriserver.cli.client_token", "Client (`ori`)"),
)
ORDER = (
    "Server",
    "Serving engine",
    "Event store",
    "Watch-list notifications",
    "Events API",
    "Events API access",
    "Transport security and limits",
    "Client (`ori`)",
)


def _settings_section(name: str) -> str:
    if name.startswith(("ORI_WATCH_", "ORI_NOTIFY_")):
        return "Watch-list notifications"
    if name.startswith(("ORI_EVENTS_", "ORI_DB_", "ORI_DATABASE_", "ORI_PROJECTION_")):
        return "Event store"
    return "Server"


def sections() -> dict[str, list[str]]:
    from oriserver.config.env import REGISTRY

    grouped: dict[str, list[str]] = {title: [] for title in ORDER}
    titles = dict(SECTIONS)
    for module in titles:
        importlib.import_module(module)
    for name, variable in REGISTRY.items():
        if variable.module not in titles:
            raise SystemExit(f"{name} is registered in {variable.module}; add it to SECTIONS")
        grouped[titles[variable.module] or _settings_section(name)].append(name)
    return grouped


def table() -> str:
    from oriserver.config.env import REGISTRY

    parts: list[str] = []
    for title, names in sections().items():
        rows = [f"**{title}**", "", "| Variable | Default | Meaning |", "|---|---|---|"]
        for name in names:
            variable = REGISTRY[name]
            default = variable.documented_default
            shown = f"`{default}`" if default != "(empty)" and " " not in default else default
            rows.append(f"| `{name}` | {shown} | {variable.help} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def replaced(text: str) -> str:
    block = f"{START}\n{table()}\n{END}"
    return re.sub(f"{re.escape(START)}.*?{re.escape(END)}", lambda _: block, text, flags=re.S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    if parser.parse_args().write:
        README.write_text(replaced(README.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
