"""What must not reach an operator's screen or a log (values under secret-looking keys, credentials written
into URLs, characters a terminal would act on), and what must not reach an agent (our secrets and internal
addresses, in upstreams' errors)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

from gateway_core.config import McpServerSettings

SECRET_WORDS = ("password", "secret", "token", "key", "credential", "authorization")
MASK = "********"
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/:@\s]*:)[^/@\s]+@", re.IGNORECASE)


def printable(text: str) -> str:
    """Someone else's text for a screen or a log line: each character that does not print written out as Python
    writes it (`\\x1b`, `\\n`, `\\u202e`), so that none acts and the reader sees it was there. ESC starts a
    sequence a terminal obeys (clear the screen, retitle the window, set the clipboard), a newline draws a line
    of its own, a bidi override turns the text after it around."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def shown_url(url: str) -> str:
    """A URL as messages, logs and screens show it: no `user:password@` (up to the last `@` of the authority, so
    a password written with an `@` in it goes too), no query and no fragment (either may carry a key)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    if lowered == "key" or lowered.endswith("_uuid"):  # a name (an env variable's) or a reference, not a secret
        return False
    return any(word in lowered for word in SECRET_WORDS)


def redacted(value: Any) -> Any:
    """A copy of `value` with secrets masked, however deep."""
    if isinstance(value, dict):
        return {key: MASK if isinstance(key, str) and is_secret_key(key) and value[key] not in (None, "")
                else redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted(item) for item in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(rf"\g<1>{MASK}@", value)
    return value


_CREDENTIAL_WORDS = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_OUR_TOKENS = re.compile(r"\bmcp[ao]_[A-Za-z0-9_-]{16,}")


class AgentFacingScrubber:
    """Takes out of what an agent is told (error messages and data, health messages) what only operators may
    see: the values of configured secrets, the configured upstream addresses, credentials after `Bearer`
    and the like, our own tokens, and credentials written into URLs. Upstreams echo requests back in their
    errors; this is where that stops."""

    def __init__(self, secrets: Iterable[str], addresses: Mapping[str, str]) -> None:
        """`addresses`: a configured URL (or host) → the name it is shown as, e.g. `<COOLIFY_API_URL>`."""
        self._secrets = sorted({value for value in secrets if len(value) >= 4}, key=len, reverse=True)
        self._addresses = sorted(addresses.items(), key=lambda item: len(item[0]), reverse=True)

    @classmethod
    def from_settings(cls, settings: BaseModel, more_secrets: Iterable[str] = ()) -> AgentFacingScrubber:
        """Secrets are the settings' SecretStr values, however deep (a configured database's URL), and
        `more_secrets` (an MCP server's env and headers, filled from the environment); addresses, the URL
        settings (`*_url`, `*_endpoint`, a section's `url`), shown by their setting's name: `<COOLIFY_API_URL>`,
        `<MCP_SERVERS.DOCS.URL>`."""
        secrets: list[str] = []
        addresses: dict[str, str] = {}

        def walk(value: Any, name: str, leaf: str) -> None:
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                secrets.append(secret)
                if "://" in secret:  # a database URL: its password is a secret alone, its address internal
                    with contextlib.suppress(ValueError):
                        secrets.append(urlsplit(secret).password or "")
                    addresses.update(_address_forms(secret, f"<{name.upper()}>"))
            elif isinstance(value, str):
                if leaf.endswith(("_url", "_endpoint")) or leaf == "url":
                    addresses.update(_address_forms(value, f"<{name.upper()}>"))
            elif isinstance(value, McpServerSettings):  # its env and headers come in more_secrets, as filled
                walk(value.url, f"{name}.url", "url")
            elif isinstance(value, BaseModel):
                for field in type(value).model_fields:
                    walk(getattr(value, field), f"{name}.{field}" if name else field, field)
            elif isinstance(value, Mapping):
                for key, item in value.items():
                    walk(item, f"{name}.{key}", leaf)
            elif isinstance(value, list | tuple):
                for item in value:
                    walk(item, name, leaf)

        walk(settings, "", "")
        return cls([*secrets, *more_secrets], addresses)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for address, shown in self._addresses:
            if address in text:
                text = text.replace(address, shown)
        text = _CREDENTIAL_WORDS.sub(lambda match: f"{match.group(1)} {MASK}", text)
        text = _OUR_TOKENS.sub(MASK, text)
        return _URL_CREDENTIALS.sub(rf"\g<1>{MASK}@", text)

    def value(self, value: Any) -> Any:
        """A copy of `value` with every string in it scrubbed, however deep."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value


def _address_forms(url: str, shown: str) -> dict[str, str]:
    """A configured URL as it may appear in an upstream's text: whole (with and without credentials and a
    trailing slash), and its host:port; a bare host only where it cannot be an ordinary word."""
    parsed = urlsplit(url.strip())
    if not parsed.hostname:
        return {}
    forms = {url.strip().rstrip("/"): shown}
    host_port = parsed.netloc.rpartition("@")[2]
    forms[urlunsplit((parsed.scheme, host_port, parsed.path, "", "")).rstrip("/")] = shown
    if parsed.port is not None:
        forms[host_port] = shown
    if "." in parsed.hostname or ":" in parsed.hostname:
        forms[parsed.hostname] = shown
    return forms
