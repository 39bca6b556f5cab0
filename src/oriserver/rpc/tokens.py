"""The accepted bearer tokens, re-read without a restart when their file changes.

Follows rpc/credentials.py (the TLS files): each events-API call stats the file
(a Secret volume's symlinks are followed), and reads it again only when its
inode, size or modification time changed. A new file that cannot be used (empty,
unreadable, world-readable, a malformed line) is logged and the previous tokens
stay accepted until the file changes again; a file that changes while it is read
is read again on the next call. Tokens are never logged.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from oriserver.config.access import TOKENS_FILE, read_tokens
from oriserver.config.env import ConfigError
from oriserver.recording.backoff import RateLimit
from oriserver.service.access import TokenSet

log = logging.getLogger("oriserver.access")

Signature = tuple[int, int, int]  # (inode, size, mtime_ns)


class TokenFile:
    """The tokens in one file; ``current()`` is the set to check a call against."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._warnings = RateLimit(60.0)
        try:  # checked at start-up (config/access.py); it may have changed since
            self._signature = self._stat()
            self._tokens = TokenSet(read_tokens(path))
        except OSError as error:
            raise ConfigError(TOKENS_FILE, f"cannot read {path}: {error.strerror}") from None
        except ValueError as error:
            raise ConfigError(TOKENS_FILE, str(error)) from None
        self._rejected: Signature | None = None
        self.reloads = 0

    def _stat(self) -> Signature:
        s = os.stat(self._path)
        return (s.st_ino, s.st_size, s.st_mtime_ns)

    def current(self) -> TokenSet:
        with self._lock:
            self._reload_if_changed()
            return self._tokens

    def _reload_if_changed(self) -> None:
        try:
            before = self._stat()
        except OSError as error:
            self._warn(f"cannot read {self._path}: {error.strerror}")
            return
        if before in (self._signature, self._rejected):
            return
        try:
            tokens = read_tokens(self._path)
            after = self._stat()
        except (ValueError, OSError) as error:
            self._rejected = before
            self._warn(str(error))
            return
        if after != before:
            return  # still being written; look again at the next call
        self._signature, self._tokens = after, TokenSet(tokens)
        self.reloads += 1
        log.info(
            "events API tokens file changed; its tokens are accepted now",
            extra={"tokens_file": str(self._path), "tokens": len(tokens), "reloads": self.reloads},
        )

    def _warn(self, problem: str) -> None:
        if self._warnings.allow():
            log.warning(
                "events API tokens file changed but cannot be used; keeping the previous tokens",
                extra={"problem": problem, "also_failed": self._warnings.take_suppressed()},
            )
