"""What must not reach an operator's screen or a log: values under secret-looking keys, and the
credentials written into URLs."""

from __future__ import annotations

import re
from typing import Any

SECRET_WORDS = ("password", "secret", "token", "key", "credential")
MASK = "********"
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/:@\s]*:)[^/@\s]+@", re.IGNORECASE)


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
