"""The history: every daemon event and per-path rollups in SQLite under the state dir
(``<state_dir>/history.sqlite``), kept for ``history.retention`` and within
``history.max_size``; see docs/history.md.

- `pathsteer.history.rollup`: per-path samples → rollups (pure).
- `pathsteer.history.store`: the SQLite file (schema, writes, queries, pruning, set-aside).
- `pathsteer.history.service`: the daemon component (``history.events``, ``history.rollups``,
  ``history.stats``).
"""
