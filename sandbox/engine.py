"""Connecting to the Docker engine, and the labels by which patchfleet finds its own containers."""

from __future__ import annotations

import os
import socket
import time

import docker
import requests
from docker.errors import DockerException

from patchfleet.errors import DockerUnavailable

MANAGED = "patchfleet.managed"
OWNER_PID = "patchfleet.owner-pid"
OWNER_HOST = "patchfleet.owner-host"
CREATED = "patchfleet.created"
LABEL_PREFIX = "patchfleet."
LAYER_LABEL = "patchfleet.layer"  # on every image patchfleet builds: base, env or instance

FIX_HINT = (
    "Start the Docker engine (`sudo systemctl start docker`, or `sudo dockerd &` where there is no "
    "systemd), make sure your user can reach its socket (the `docker` group), or point DOCKER_HOST at "
    "a running engine. Then run `patchfleet doctor`."
)


def connect(base_url: str | None = None, timeout: int = 120) -> docker.DockerClient:
    """A client that has answered a ping; otherwise `DockerUnavailable` with what to do about it."""
    where = base_url or os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    try:
        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout)
            if base_url
            else docker.from_env(timeout=timeout)
        )
        client.ping()
    except (DockerException, requests.RequestException, OSError) as exc:
        raise DockerUnavailable(f"Cannot reach the Docker engine at {where}: {exc}. {FIX_HINT}") from exc
    return client


def ownership_labels() -> dict[str, str]:
    """Labels that let the reaper tell a leaked container (its owner process is gone) from a live one."""
    return {
        MANAGED: "true",
        OWNER_PID: str(os.getpid()),
        OWNER_HOST: socket.gethostname(),
        CREATED: str(int(time.time())),
    }


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the process that started a container still runs (unknowable for other hosts: assume so)."""
    if labels.get(OWNER_HOST) != socket.gethostname():
        return True
    try:
        pid = int(labels.get(OWNER_PID, ""))
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
