"""What a call costs: the catalog's constants, or an estimate of what the call put into the agent's context."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gateway_core.catalog import ServiceSpec
from gateway_core.config import CostSettings
from gateway_core.operations import Operation


def catalog_cost(spec: ServiceSpec, operation: Operation, data: Mapping[str, Any] | None = None) -> tuple[int, float]:
    """The operation's override where it has one (zero included), else the service's numbers; with a call's
    result `data`, the tokens the operation counts from it where it does (a file's size, a listing's length)."""
    if data is not None and operation.tokens_of is not None:
        tokens = operation.tokens_of(data)
    else:
        tokens = operation.tokens if operation.tokens is not None else spec.avg_tokens_per_call
    cost = operation.cost_usd if operation.cost_usd is not None else spec.cost_per_call
    return tokens, cost


def measured_cost(settings: CostSettings, request_chars: int, response_chars: int) -> tuple[int, float]:
    tokens = math.ceil((request_chars + response_chars) / settings.chars_per_token)
    return tokens, tokens * settings.usd_per_million_tokens / 1_000_000
