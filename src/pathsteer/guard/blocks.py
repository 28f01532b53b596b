"""Blocks: CIDRs dropped by the guard beyond the config's deny list, and where they live.

A `Block` is manual (``pathsteer guard block``) or automatic (a heavy hitter); each may expire.
`BlockStore` keeps them in SQLite (``STATE_DIR/guard.db``) so they survive a restart; the
deny trie is rebuilt from config + store at start. Time is wall-clock seconds (expiry must
mean the same after a reboot), passed in explicitly.
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
from dataclasses import dataclass
from enum import Enum

from pathsteer.errors import PathsteerError
from pathsteer.guard.rules import Network

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    cidr     TEXT PRIMARY KEY,   -- normalised, e.g. 192.0.2.0/24
    origin   TEXT NOT NULL,      -- manual | auto
    reason   TEXT NOT NULL,
    created  REAL NOT NULL,      -- unix time, s
    expires  REAL                -- unix time, s; NULL = never
)
"""


class Origin(Enum):
    CONFIG = "config"
    MANUAL = "manual"
    AUTO = "auto"
    GATEWAY = "gateway"  # a gateway's abuse signal (pathsteer.gateways)


@dataclass(frozen=True)
class Block:
    cidr: Network
    origin: Origin
    reason: str
    created: float
    expires: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


class BlockStore:
    """The blocks in SQLite; every write is its own transaction (committed before the trie changes)."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "guard.db")
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise PathsteerError(f"guard state {self.path}: {exc}") from None

    def load(self) -> list[Block]:
        rows = self._db.execute("SELECT cidr, origin, reason, created, expires FROM blocks ORDER BY created").fetchall()
        out = []
        for cidr, origin, reason, created, expires in rows:
            try:
                out.append(Block(ipaddress.ip_network(cidr), Origin(origin), reason, created, expires))
            except ValueError:
                continue  # a row this version cannot read: ignored, not fatal
        return out

    def put(self, block: Block) -> None:
        self._db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?)",
                         (str(block.cidr), block.origin.value, block.reason, block.created, block.expires))

    def delete(self, cidr: Network) -> bool:
        return self._db.execute("DELETE FROM blocks WHERE cidr = ?", (str(cidr),)).rowcount > 0

    def delete_many(self, cidrs: list[Network]) -> int:
        """Delete many blocks in one transaction (expiry of a burst of auto-blocks)."""
        with self._db:  # isolation_level=None: make the transaction explicit
            self._db.execute("BEGIN")
            return self._db.executemany("DELETE FROM blocks WHERE cidr = ?", [(str(c),) for c in cidrs]).rowcount

    def close(self) -> None:
        self._db.close()
