"""mcp-console's gateway core: the MCP gateway, usable without any UI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mcp-console")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
