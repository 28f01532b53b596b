"""Active probers pinned to a path, the TWAMP-light reflector, and their wire codecs.

- icmp.py, twamp.py: pure codecs (golden-byte tested).
- pinning.py: the per-path routing table + ip rule + socket mark that pin a probe to a path.
- sockets.py: opening pinned sockets, reading kernel receive timestamps.
- engine.py: one asyncio engine probing many paths × targets, feeding `pathsteer.telemetry`.
- reflector.py: the TWAMP-light Session-Reflector.
- oneshot.py, cli.py: `pathsteer probe` (one pinned measurement) and `pathsteer reflector`.
"""
