"""Finding and removing leaked sandbox containers by label (the cleanup of last resort).

Context managers close sandboxes in normal operation; a killed process cannot, so its containers carry
the owner's pid and host, and anything whose owner is gone is fair game.
"""

from __future__ import annotations

from dataclasses import dataclass

import docker
from docker.errors import APIError, NotFound

from patchfleet.sandbox import engine


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str
    image: str
    labels: dict[str, str]

    @property
    def leaked(self) -> bool:
        return not engine.owner_alive(self.labels)


def list_sandboxes(client: docker.DockerClient, run: str | None = None) -> list[ContainerInfo]:
    """Every patchfleet container, running or not, optionally of one run."""
    filters = {"label": [f"{engine.MANAGED}=true"]}
    if run:
        filters["label"].append(f"{engine.LABEL_PREFIX}run={run}")
    rows = []
    # ignore_removed: a container removed between the listing and its inspection (another run closing its
    # sandboxes) is skipped instead of raising NotFound into whoever asked
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        image = container.attrs.get("Config", {}).get("Image", "")
        rows.append(ContainerInfo(container.id, container.name, container.status, image, container.labels))
    return rows


def prune(client: docker.DockerClient, *, everything: bool = False, run: str | None = None) -> list[str]:
    """Remove leaked containers (or all of patchfleet's, with `everything`); return their ids."""
    removed = []
    for info in list_sandboxes(client, run=run):
        if not (everything or info.leaked):
            continue
        try:
            client.containers.get(info.id).remove(force=True)
        except NotFound:
            continue  # gone meanwhile: that is what we wanted
        except APIError as exc:
            if exc.status_code != 409:
                raise
        removed.append(info.id)
    return removed
