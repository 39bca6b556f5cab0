"""``python -m oriserver.eventhost.main FD``: the body of an event host child process.

An entrypoint like the CLI's: it reads its Settings from the socket ProcessHost
gave it, builds its EventHost through the one composition root
(bootstrap.build_event_host), answers ``Done`` when ready, then serves requests
until told to stop or until its server process disappears (end of file).
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection

from oriserver.eventhost.messages import Done, Stop


def serve(connection: Connection) -> None:
    # A terminal's Ctrl-C reaches the whole process group; the server decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from oriserver.bootstrap import build_event_host
    from oriserver.logs import configure_logging

    settings = connection.recv()
    configure_logging(settings.log_format, settings.log_level)
    host = build_event_host(settings)
    host.start()
    try:
        connection.send(Done(host.stats()))
        while True:
            try:
                request = connection.recv()
            except (EOFError, OSError):
                break  # the server process is gone
            reply = host.handle(request)
            try:
                connection.send(reply)
            except OSError:
                break  # the server process died while we worked; nobody is waiting
            if isinstance(request, Stop):
                break
    finally:
        host.stop()
        connection.close()


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
