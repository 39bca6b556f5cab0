"""The archive file: gzip-compressed JSON lines, one event per line (docs/event-store.md).

Line 1 names the format and where the archive starts; then one object per event,
keyed by the events table's column names, in position order; the last line says
where it ends and how many events it holds, so a cut-short file is detected.
An archive is written to a temporary name and renamed into place once it is
complete and on disk: a file under the given name is always whole.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from oriserver.domain.events import CalculationFailed, CalculationSucceeded, StoredEvent
from oriserver.service.retention import Chain, RetentionError
from oriserver.store.rows import COLUMNS, from_row

FORMAT = "oriserver-events-archive"
VERSION = 1
_PAGE = 5000


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _event_line(stored: StoredEvent) -> str:
    """One event as an object keyed by the events table's columns (rows.py names them)."""
    event = stored.event
    inputs = event.inputs
    failed = event if isinstance(event, CalculationFailed) else None
    return _ENCODE({
        "position": stored.position, "created_at": stored.created_at.isoformat(),
        "event_id": str(event.event_id), "calculation_id": str(event.calculation_id),
        "event_type": type(event).__name__, "method": event.method.value,
        "input_first": inputs.first, "input_last": inputs.last, "input_base": inputs.base,
        "result": event.result if isinstance(event, CalculationSucceeded) else None,
        "status_code": failed.code.value if failed else None,
        "error_message": failed.message if failed else None,
        "client_ip": event.client_ip, "instance_id": event.instance_id,
        "trace_id": event.trace_id, "occurred_at": event.occurred_at.isoformat(),
    })  # fmt: skip


def _event(record: dict[str, Any]) -> StoredEvent:
    return from_row((record["position"], record["created_at"], *(record[c] for c in COLUMNS)))


class ArchiveWriter:
    """An ArchiveSink writing one file; the output must not exist yet (never overwritten)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._partial = path.with_name(f".{path.name}.partial")
        if path.exists():
            raise FileExistsError(f"{path} already exists; archives are never overwritten")
        self._raw: IO[bytes] = open(self._partial, "xb")  # noqa: SIM115 - closed in commit/abort
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)

    def _line(self, text: str) -> None:
        self._gzip.write(text.encode() + b"\n")

    def start(self, from_position: int) -> None:
        header = {"format": FORMAT, "version": VERSION, "from_position": from_position}
        self._line(json.dumps(header))

    def write(self, events: Sequence[StoredEvent]) -> None:
        self._gzip.write("".join(f"{_event_line(e)}\n" for e in events).encode())

    def commit(self, from_position: int, before_position: int, count: int) -> None:
        self._line(json.dumps({"before_position": before_position, "events": count}))
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        if self._path.exists():
            raise FileExistsError(f"{self._path} appeared while archiving; kept {self._partial}")
        self._partial.rename(self._path)
        with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
            directory = os.open(self._path.parent, os.O_RDONLY)
            os.fsync(directory)
            os.close(directory)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._gzip.close()
            self._raw.close()
        self._partial.unlink(missing_ok=True)


def _corrupt(path: Path, why: str) -> RetentionError:
    return RetentionError(f"{path} is not a complete {FORMAT} file: {why}")


def first_position(path: Path) -> int:
    """Where an archive starts, from its first line (cheap: the rest is not read)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            header = json.loads(lines.readline())
    except (OSError, EOFError, ValueError) as error:
        raise _corrupt(path, str(error)) from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _corrupt(path, "the first line does not name the format")
    if header.get("version") != VERSION:
        raise _corrupt(path, f"version {header.get('version')} (this version reads {VERSION})")
    return int(header["from_position"])


def read_events(path: Path, chain: Chain) -> Iterator[list[StoredEvent]]:
    """The archive's events that ``chain`` still needs, in pages; checks the last line."""
    start = chain.begin(str(path), first_position(path))
    page: list[StoredEvent] = []
    count, footer = 0, None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            next(lines)
            for line in lines:
                if footer is not None:
                    raise _corrupt(path, "events after the last line")
                record = json.loads(line)
                if "before_position" in record:
                    footer = record
                    continue
                count += 1
                if start <= record["position"] < chain.live_first:
                    page.append(_event(record))
                    if len(page) >= _PAGE:
                        yield page
                        page = []
    except (OSError, EOFError, ValueError, KeyError) as error:
        raise _corrupt(path, str(error)) from error
    if footer is None or footer["events"] != count:
        raise _corrupt(
            path, "it ends before its last line" if footer is None else "event count differs"
        )
    yield page
    chain.end(int(footer["before_position"]))


def archived_events(paths: Sequence[Path]) -> Callable[[int], Iterator[list[StoredEvent]]]:
    """For rebuild: the events of every archive that the live log (starting at the position
    passed in) no longer holds, each position once; RetentionError on a gap or a bad file."""

    def events(live_first: int) -> Iterator[list[StoredEvent]]:
        chain = Chain(live_first)
        for path in sorted(paths, key=first_position):
            yield from read_events(path, chain)
        chain.finish()

    return events
