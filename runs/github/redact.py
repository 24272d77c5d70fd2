"""Secrets out of everything the bot writes: comments, pull request bodies, job summaries and logs.

Issue text is untrusted; a prompt may talk the agent into printing its environment. Whatever comes back
passes through a `Redactor` that knows the token, its Basic-auth form and every key-like environment value.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping

# Names of environment variables that hold credentials (OPENAI_API_KEY, GH_TOKEN, AWS_SECRET_ACCESS_KEY).
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)($|_)", re.IGNORECASE)
MIN_SECRET_LENGTH = 8  # shorter values ("1", "true") would redact ordinary words
MASK = "***"


def secrets_from_env(environ: Mapping[str, str]) -> list[str]:
    """Values of credential-named environment variables."""
    return [value for name, value in environ.items() if SECRET_NAME.search(name)]


class Redactor:
    """Replaces every known secret, and the Basic-auth encoding git uses for tokens, by `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            values.add(secret)
            values.add(base64.b64encode(f"x-access-token:{secret}".encode()).decode())
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        return text

    def leaks(self, text: str) -> bool:
        return any(value in text for value in self._values)
