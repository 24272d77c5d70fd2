"""Sandbox configuration: a union tagged by `type`, each with a factory that imports its backend lazily,
and the per-sandbox settings (network, CPU, memory, pids) that every `SandboxSpec` it makes carries.

Agents' sandboxes are made by `spec`; code that makes its own specs (selection's matrix, regression
discovery, test writers) starts them through `limited(backend)`, so the same limits hold there too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

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
    # Containment (sandbox/limits.py, sandbox/watchdog.py); sizes in Docker's notation, "0" for none.
    disk: str | None = "4g"  # what one sandbox may write (writable layer, /tmp, volumes)
    files: int | None = 1_000_000  # files one sandbox may create (inodes run out before bytes do)
    host_reserve: str | None = "2g"  # free space on Docker's disk below which the biggest writer stops
    min_free_disk: str | None = "10g"  # free space an image layer needs before its build starts
    watchdog_interval: float = 1.0  # seconds between disk measurements where the driver cannot cap
    tmp_size: str | None = None  # /tmp on a tmpfs of this size (charged to memory); None: on the layer
    user: str | None = None  # run sandbox commands as this user where the image allows it
    reap_leaked: bool = True  # remove containers of dead patchfleet processes before the first start
    allow_host_network: bool = False  # network "host" exposes the host's loopback services: opt in

    def backend(self, trust: HostTrust | None = None) -> DockerBackend:
        from patchfleet.sandbox import engine
        from patchfleet.sandbox.docker import DockerBackend

        client = engine.connect(self.docker_host)
        return DockerBackend(
            client,
            max_concurrent_starts=self.max_concurrent_starts,
            trust=trust,
            disk=self.disk,
            files=self.files,
            host_reserve=self.host_reserve,
            min_free_disk=self.min_free_disk,
            watchdog_interval=self.watchdog_interval,
            reap_leaked=self.reap_leaked,
            allow_host_network=self.allow_host_network,
        )

    def spec(self, image: str, labels: dict[str, str] | None = None, **fields: object) -> SandboxSpec:
        """A sandbox of `image` with this config's network and resource limits (`fields` override them)."""
        limits = {
            "network": self.network,
            "cpus": self.cpus,
            "memory": self.memory,
            "pids_limit": self.pids_limit,
            "tmp_size": self.tmp_size,
            "user": self.user,
        }
        return SandboxSpec(image=image, labels=labels or {}, **{**limits, **fields})  # type: ignore[arg-type]

    def limit(self, spec: SandboxSpec) -> SandboxSpec:
        """`spec` with this config's resource limits and user. Its network stays the caller's: selection
        runs candidates' tests offline whatever network the agents have."""
        return dataclasses.replace(
            spec,
            cpus=self.cpus,
            memory=self.memory,
            pids_limit=self.pids_limit,
            tmp_size=self.tmp_size,
            user=self.user,
        )

    def limited(self, backend: Any) -> LimitedStarter:
        return LimitedStarter(backend, self)


@dataclass(frozen=True)
class LimitedStarter:
    """`start(spec)` on `backend` (a DockerBackend, or a Ray `OnNode` of one) with `config.limit(spec)`:
    the backend that selection gets. Picklable when the backend is."""

    backend: Any
    config: DockerConfig

    def start(self, spec: SandboxSpec) -> Any:
        return self.backend.start(self.config.limit(spec))


SandboxConfig = Annotated[DockerConfig, Field(discriminator="type")]
