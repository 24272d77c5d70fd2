"""Sandbox configuration: a union tagged by `type`, each with a factory that imports its backend lazily,
and the per-sandbox settings (network, CPU, memory, pids) that every `SandboxSpec` it makes carries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patchfleet.sandbox.base import Network, SandboxSpec
from patchfleet.sandbox.trust import HostTrust

if TYPE_CHECKING:
    from patchfleet.sandbox.docker import DockerBackend


class DockerConfig(BaseModel):
    """Local (or DOCKER_HOST) Docker engine."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["docker"] = "docker"
    docker_host: str | None = None
    max_concurrent_starts: int = 4
    network: Network = Network.NONE
    cpus: float | None = 1.0
    memory: str | None = "4g"
    pids_limit: int | None = 1024
    allow_pull: bool = True  # try a registry before building base images locally

    def backend(self, trust: HostTrust | None = None) -> DockerBackend:
        from patchfleet.sandbox import engine
        from patchfleet.sandbox.docker import DockerBackend

        client = engine.connect(self.docker_host)
        return DockerBackend(client, max_concurrent_starts=self.max_concurrent_starts, trust=trust)

    def spec(self, image: str, labels: dict[str, str] | None = None, **fields: object) -> SandboxSpec:
        """A sandbox of `image` with this config's network and resource limits (`fields` override them)."""
        limits = {
            "network": self.network,
            "cpus": self.cpus,
            "memory": self.memory,
            "pids_limit": self.pids_limit,
        }
        return SandboxSpec(image=image, labels=labels or {}, **{**limits, **fields})  # type: ignore[arg-type]


SandboxConfig = Annotated[DockerConfig, Field(discriminator="type")]
