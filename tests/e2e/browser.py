"""Debian's chromium driven by Playwright, for the browser tests: their skip marks (no
/usr/bin/chromium, no playwright package) and where their screenshots go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is not installed (apt-get install -y chromium): no browser test")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def shots_dir(tmp_path: Path) -> Path:
    where = REPO / "docs" / "screenshots" if os.environ.get("CHEAPLM_SCREENSHOTS") == "1" else tmp_path
    where.mkdir(parents=True, exist_ok=True)
    return where
