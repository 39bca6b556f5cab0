"""``python -m oriserver.store.host_entry FD``: how HostedStore starts the event host process.

A module of its own so that host_process is imported under its real name, and what
the host pickles back (its stats) is named by that module rather than by __main__.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from oriserver.store.host_process import host_main

if __name__ == "__main__":
    host_main(Connection(int(sys.argv[1])))
