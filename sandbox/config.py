"""Sandbox configuration: a union tagged by `type`, each with a factory that imports its backend lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field

from patchfleet.sandbox.base import Network
from patchfleet.sandbox.trust import HostTrust

if TYPE_CHECKING:
    from patchfleet.sandbox.docker import DockerBackend


class DockerConfig(BaseModel):
    """Local (or DOCKER_HOST) Docker engine."""

    type: Literal["docker"] = "docker"
    docker_host: str | None = None
    max_concurrent_starts: int = 4
    network: Network = Network.NONE
    cpus: float | None = 1.0
    memory: str | None = "4g"
    pids_limit: int | None = 1024
    pool_size: int = 0  # warm sandboxes kept ready per image; 0 disables the pool
    allow_pull: bool = True  # try a registry before building base images locally

    def backend(self, trust: HostTrust | None = None) -> DockerBackend:
        from patchfleet.sandbox import engine
        from patchfleet.sandbox.docker import DockerBackend

        client = engine.connect(self.docker_host)
        return DockerBackend(client, max_concurrent_starts=self.max_concurrent_starts, trust=trust)


SandboxConfig = Annotated[DockerConfig, Field(discriminator="type")]
