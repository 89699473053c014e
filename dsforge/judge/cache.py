"""The judge's call cache: SQLite (WAL, one commit per call), keyed by a hash of the call's content."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import time

from dsforge.errors import UsageError


class Cache:
    """The SQLite call cache. The file is created at the first stored call, never before: a judge
    that fails before answering anything leaves no empty cache behind."""

    def __init__(self, path: str | None):
        self.path = path
        self.db = None
        self.hits = self.misses = 0

    def _connect(self, create: bool):
        if self.db is None and self.path and (create or os.path.exists(self.path)):
            if os.path.isdir(self.path):   # sqlite would only say 'unable to open database file'
                raise IsADirectoryError(errno.EISDIR, "Is a directory", self.path)
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            db = None
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL, t REAL)")
            except sqlite3.DatabaseError as err:   # another file given as --cache, or a damaged cache
                if db is not None:
                    db.close()
                what = "not a judge cache (SQLite)" if "not a database" in str(err) else f"cannot use it as the judge cache ({err})"
                raise UsageError(f"--cache {self.path}: {what}",
                                 "give --cache a new file path (dsforge creates it), or remove this file if it is a "
                                 "damaged cache") from None
            self.db = db
        return self.db

    @staticmethod
    def key(*parts) -> str:
        """sha256 hex of the JSON of `parts` (sorted keys): the cache key of a call, or a candidate's identity."""
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str):
        """The stored value of `key` (a dict), or None; never creates the cache file (UsageError as in put)."""
        if self._connect(create=False) is None:
            return None
        row = self.db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        """Store `value` under `key` (one autocommitted write); creates the file on first use, not without a path.
        Raises UsageError when the path is not a usable SQLite judge cache."""
        if self._connect(create=True) is not None:
            self.db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?)", (key, json.dumps(value), time.time()))

    def close(self):
        """Close the connection (a later get/put reopens it)."""
        if self.db is not None:
            self.db.close()
            self.db = None
