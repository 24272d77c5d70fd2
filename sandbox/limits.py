"""What a sandbox may do: its capabilities, the environment it may see, and sizes in Docker's notation.

A sandbox runs code a model wrote and patches from anyone's predictions file, so it gets only the
privileges a test run needs, and never the host's credentials, whoever passes them in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# What pip install, git, pytest and apt-get need as root; Docker's default set adds NET_RAW (raw
# sockets, spoofing), MKNOD, SETFCAP, SETPCAP, SYS_CHROOT, NET_BIND_SERVICE and AUDIT_WRITE.
# DAC_OVERRIDE and FOWNER stay: the official harness runs tests as root with them, and test outcomes
# that depend on root ignoring file modes must match. SETUID/SETGID let apt drop to `_apt`.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")
SECURITY_OPT = ("no-new-privileges",)

# Host credentials: LLM provider keys, GitHub tokens, cloud accounts. Matched on the variable's name.
_SECRET_NAME = re.compile(
    r"""(
        API_?KEY | _TOKEN$ | ^TOKEN$ | SECRET | PASSWORD | PASSWD | CREDENTIAL | _PAT$
      | ^(AWS|AMAZON|GOOGLE|GCLOUD|GCP|CLOUDSDK|AZURE|ARM|OPENAI|ANTHROPIC|GEMINI|MISTRAL|COHERE
          |GROQ|TOGETHER|DEEPSEEK|OPENROUTER|FIREWORKS|HF|HUGGING_?FACE|LITELLM|VERTEX|BEDROCK
          |GITHUB|GH|GITLAB|NPM|PYPI|TWINE|DOCKER|SSH_AUTH)_
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Names that look like credentials by the rules above but are the CA and proxy settings that
# `HostTrust` passes on purpose.
_ALLOWED = frozenset({"AWS_CA_BUNDLE"})


def is_secret(name: str) -> bool:
    """Whether an environment variable's name marks it as a host credential."""
    return name.upper() not in _ALLOWED and bool(_SECRET_NAME.search(name))


def scrub_env(env: Mapping[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """The variables that may enter a sandbox, and the names withheld (never their values)."""
    kept: dict[str, str] = {}
    withheld: list[str] = []
    for name, value in (env or {}).items():
        if is_secret(name):
            withheld.append(name)
        else:
            kept[name] = value
    return kept, sorted(withheld)


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(size: str | int | None) -> int | None:
    """Bytes of a size in Docker's notation ("4g", "512m", "100k", 1024); None or 0 mean no limit."""
    if size is None:
        return None
    if isinstance(size, int):
        return size or None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", size.lower())
    if not match:
        from patchfleet.errors import ConfigError

        raise ConfigError(f"not a size: {size!r} (write e.g. 4g, 512m, 100k, or 0 for no limit)")
    value = int(float(match.group(1)) * _UNITS[match.group(2)])
    return value or None


def human(size: int) -> str:
    """A byte count for messages: 4.0 GiB, 512.0 MiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} GiB"
