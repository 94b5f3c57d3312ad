"""Permissions and the live event feed: the orchestrator client, and our embedded orchestrator."""
