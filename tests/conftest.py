from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_core.config import settings_environment
from tests.servers import RunningGateway, run_gateway

# Both change what the console draws: snapshots are taken in colour, in the default theme. NO_COLOR is read by
# each app; TEXTUAL_THEME when Textual is imported (by the snapshot plugin, before this file): unset it in your shell.
os.environ.pop("NO_COLOR", None)
os.environ.pop("TEXTUAL_THEME", None)


@pytest.fixture(autouse=True)
def _clean_settings_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide every setting themselves: no settings variable leaks in from the developer's shell (the
    names come from the settings model, so a setting added there is cleared here too)."""
    environment = settings_environment()
    for name in list(os.environ):
        if environment.covers(name):
            monkeypatch.delenv(name)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with run_gateway(tmp_path / "gw.db") as running:
        yield running
