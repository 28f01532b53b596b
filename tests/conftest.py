"""Shared test helpers. Tiers: tests/unit (no root), tests/kernel (root, own netns), tests/lab."""

from __future__ import annotations

import os
import secrets

import pytest


def unique(prefix: str, length: int = 6) -> str:
    """A short name unique to this run (fits IFNAMSIZ when prefix is ≤ 8 characters)."""
    return f"{prefix}{secrets.token_hex(length // 2)}"


@pytest.fixture
def unique_name():
    """``unique_name("ps")`` → ``ps3fa9c1``: names that two concurrent runs never share."""
    return unique


def pytest_collection_modifyitems(config, items):
    """Tests under tests/kernel and tests/lab need root; skip them with the reason when not root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (kernel and lab tests run as root, as CI does)")
    for item in items:
        path = str(item.fspath)
        if "/tests/kernel/" in path or "/tests/lab/" in path:
            item.add_marker(skip)
