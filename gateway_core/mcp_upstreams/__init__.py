"""MCP servers as services (spec/mcp.md §3): the gateway starts each (stdio) or dials it (Streamable HTTP),
keeps it alive, and serves its tools as the service's operations through the same pipeline as any other.

`launch` reads their settings, `tools` turns a listing into operations, `child` keeps one session alive,
`handler` is the service handler. Only `connection` uses the MCP SDK, which is slow to import (about a second):
it is imported in a thread the first time an upstream starts, never on the console's way to its first frame."""

from gateway_core.mcp_upstreams.handler import McpUpstreamHandler, UpstreamHooks
from gateway_core.mcp_upstreams.launch import UpstreamLaunch, resolve_upstreams, upstream_specs

__all__ = ["McpUpstreamHandler", "UpstreamHooks", "UpstreamLaunch", "resolve_upstreams", "upstream_specs"]
