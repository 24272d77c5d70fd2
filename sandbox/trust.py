"""Pass-through of the host's CA bundle and proxy settings into builds and sandboxes.

Behind a TLS-intercepting proxy (corporate networks, these CI machines) a container reaches PyPI only
if it trusts the proxy's CA and knows the proxy. This is explicit configuration: the CLI builds it from
the environment once, and it is passed down; nothing reads the environment behind the caller's back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

CONTAINER_CA_PATH = "/etc/patchfleet/ca-certificates.crt"
CA_ENV_VARS = (
    "SSL_CERT_FILE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
)
PROXY_ENV_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


class HostTrust(BaseModel):
    """The CA bundle and proxies that containers should use; empty means "none configured"."""

    model_config = ConfigDict(frozen=True)

    ca_bundle: Path | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HostTrust:
        """Read PATCHFLEET_CA_BUNDLE (or the usual CA variables) and the standard proxy variables."""
        env = os.environ if environ is None else environ
        ca = None
        for var in ("PATCHFLEET_CA_BUNDLE", *CA_ENV_VARS):
            value = env.get(var)
            if value and Path(value).is_file():
                ca = Path(value)
                break

        def pick(name: str) -> str | None:
            return env.get(name) or env.get(name.lower()) or None

        return cls(
            ca_bundle=ca,
            http_proxy=pick("HTTP_PROXY"),
            https_proxy=pick("HTTPS_PROXY"),
            no_proxy=pick("NO_PROXY"),
        )

    def container_env(self) -> dict[str, str]:
        """Variables that make pip, requests, curl, git and node use the mounted CA and the proxies."""
        env: dict[str, str] = {}
        if self.ca_bundle is not None:
            env.update(dict.fromkeys(CA_ENV_VARS, CONTAINER_CA_PATH))
        for name, value in (
            ("HTTP_PROXY", self.http_proxy),
            ("HTTPS_PROXY", self.https_proxy),
            ("NO_PROXY", self.no_proxy),
        ):
            if value:
                env[name] = value
                env[name.lower()] = value
        return env

    def mounts(self) -> tuple[tuple[str, str], ...]:
        """Read-only bind mounts: the CA bundle, if any."""
        if self.ca_bundle is None:
            return ()
        return ((str(self.ca_bundle.resolve()), CONTAINER_CA_PATH),)

    def describe(self) -> str:
        parts = [f"CA bundle {self.ca_bundle}" if self.ca_bundle else "no CA bundle"]
        proxies = [f"{k}={v}" for k, v in self.container_env().items() if k in PROXY_ENV_VARS]
        parts.append(", ".join(proxies) if proxies else "no proxy")
        return "; ".join(parts)
