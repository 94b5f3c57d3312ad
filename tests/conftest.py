from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.servers import RunningGateway, run_gateway


@pytest.fixture(autouse=True)
def _clean_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide every setting themselves: nothing leaks in from the developer's shell."""
    import os

    for name in list(os.environ):
        if name.startswith(("COOLIFY_", "POSTGRES_", "MEM0_", "N8N_", "CLOUDFLARE_", "GITHUB_", "MINIO_",
                            "ORCHESTRATOR_", "SERVER__", "STORE__", "AUTH__", "COST__", "RATE_LIMIT__")):
            monkeypatch.delenv(name)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with run_gateway(tmp_path / "gw.db") as running:
        yield running
