"""The archive file: events come back equal, the format is the documented one, and a
file that is cut short, foreign or missing a part of the log is refused."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from oriserver.domain.events import FailureCode, Inputs, Method, StoredEvent
from oriserver.service.retention import Chain, RetentionError
from oriserver.store.archive_file import ArchiveWriter, archived_events, read_events
from oriserver.store.rows import COLUMNS
from tests.strategies import INT64_MAX, INT64_MIN
from tests.support.events import calculation

STORED_AT = datetime(2026, 10, 31, 23, 59, 59, 123456, tzinfo=UTC)


def _stored(first_position: int) -> list[StoredEvent]:
    events = [
        *calculation(inputs=Inputs(first=INT64_MIN, last=INT64_MAX), result=-1, client_ip="2001:db8::7"),
        *calculation(Method.FACTORIAL, inputs=Inputs(base=-3), client_ip=None, trace_id="ab" * 16,
                     failure=(FailureCode.INVALID_ARGUMENT, "négatif ✗ \"quoted\"\nline")),
    ]  # fmt: skip
    return [StoredEvent(first_position + i, STORED_AT, e) for i, e in enumerate(events)]


def _write(path: Path, events: list[StoredEvent], before: int) -> Path:
    writer = ArchiveWriter(path)
    writer.start(events[0].position)
    writer.write(events)
    writer.commit(events[0].position, before, len(events))
    return path


def test_archived_events_read_back_equal(tmp_path: Path) -> None:
    events = _stored(1)
    path = _write(tmp_path / "a.jsonl.gz", events, before=5)
    chain = Chain(live_first=5)
    assert [e for page in read_events(path, chain) for e in page] == events
    chain.finish()


def test_the_file_is_gzip_json_lines_keyed_by_the_table_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl.gz", _stored(7), before=11)
    lines = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    assert lines[0] == {"format": "oriserver-events-archive", "version": 1, "from_position": 7}
    assert lines[-1] == {"before_position": 11, "events": 4}
    assert [list(line) for line in lines[1:-1]] == [["position", "created_at", *COLUMNS]] * 4
    assert lines[4]["error_message"] == 'négatif ✗ "quoted"\nline'
    assert lines[1]["created_at"] == "2026-10-31T23:59:59.123456+00:00"


def test_an_archive_is_never_overwritten_and_appears_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    writer = ArchiveWriter(path)
    writer.start(1)
    writer.write(_stored(1))
    assert not path.exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    _write(path, _stored(1), before=5)
    with pytest.raises(FileExistsError):
        ArchiveWriter(path)


def test_a_cut_short_file_is_refused(tmp_path: Path) -> None:
    whole = _write(tmp_path / "a.jsonl.gz", _stored(1), before=5)
    lines = gzip.decompress(whole.read_bytes()).decode().splitlines()
    cut = tmp_path / "cut.jsonl.gz"
    with gzip.open(cut, "wt", encoding="utf-8") as out:
        out.write("\n".join(lines[:-1]) + "\n")
    with pytest.raises(RetentionError, match="ends before its last line"):
        list(read_events(cut, Chain(live_first=5)))
    other = tmp_path / "other.gz"
    with gzip.open(other, "wt") as out:
        out.write('{"hello": 1}\n')
    with pytest.raises(RetentionError, match="does not name the format"):
        list(read_events(other, Chain(live_first=5)))


def test_archives_must_cover_every_position_below_the_live_log(tmp_path: Path) -> None:
    first = _write(tmp_path / "1.jsonl.gz", _stored(1), before=5)
    third = _write(tmp_path / "3.jsonl.gz", _stored(9), before=13)
    with pytest.raises(RetentionError, match="covers positions 5 to 8"):
        [e for page in archived_events([third, first])(13) for e in page]
    with pytest.raises(RetentionError, match="live log begins at position 13"):
        [e for page in archived_events([first])(13) for e in page]


def test_overlapping_archives_give_each_position_once(tmp_path: Path) -> None:
    """As after an archive whose removal was cut short, followed by another."""
    first = _write(tmp_path / "1.jsonl.gz", _stored(1), before=5)
    overlapping = _write(tmp_path / "2.jsonl.gz", _stored(3), before=7)  # holds 3 to 6
    events = [e for page in archived_events([overlapping, first])(7) for e in page]
    assert [e.position for e in events] == [1, 2, 3, 4, 5, 6]
