"""Faults from outside a sandbox become infrastructure errors (retried, never scored as the agent's),
or are recovered from, and leave no container or image behind."""

from __future__ import annotations

import threading
import uuid

import pytest
from docker.errors import ImageNotFound

from patchfleet.agent.loop import error_kind
from patchfleet.errors import SandboxCrashed, SandboxStartError
from patchfleet.sandbox.base import SandboxSpec

pytestmark = pytest.mark.docker


def gone(client, container_id: str) -> bool:
    return not client.containers.list(all=True, filters={"id": container_id})


def test_container_killed_from_outside_is_a_crash_not_an_agent_outcome(docker_backend, base_image):
    sandbox = docker_backend.start(SandboxSpec(image=base_image, labels={"role": "test"}, workdir="/tmp"))
    killer = threading.Timer(1.0, lambda: docker_backend.client.containers.get(sandbox.id).kill())
    killer.start()
    try:
        with pytest.raises(SandboxCrashed) as info:  # rather than a result after a minute
            sandbox.exec("sleep 60", timeout=120)
        assert error_kind(info.value) == "infrastructure"
        assert "exited" in str(info.value) or "no longer exists" in str(info.value)
        assert not sandbox.alive()
    finally:
        killer.join()
        sandbox.close()
    assert gone(docker_backend.client, sandbox.id)


def test_exec_server_killed_from_outside_is_recovered(sandbox_factory, base_image):
    sandbox = sandbox_factory(base_image, workdir="/tmp")
    first_server = sandbox._server_pid

    def kill_server() -> None:
        sandbox.container.exec_run(["kill", "-9", str(first_server)], user="root")

    killer = threading.Timer(1.0, kill_server)
    killer.start()
    result = sandbox.exec("sleep 30; echo never", timeout=60)
    killer.join()
    assert result.exit_code == 255 and "exec server" in result.output and "never" not in result.output
    assert sandbox.exec("echo back").output == "back\n"
    assert sandbox._server_pid != first_server


def test_image_deleted_while_in_use(docker_backend, base_image):
    client = docker_backend.client
    repository, tag = "patchfleet-test/doomed", uuid.uuid4().hex[:12]
    with docker_backend.start(SandboxSpec(image=base_image, labels={"role": "test"}, workdir="/")) as maker:
        maker.exec("echo doomed > /doomed")
        image_id = maker.container.commit(repository=repository, tag=tag).id
    name = f"{repository}:{tag}"
    sandbox = docker_backend.start(SandboxSpec(image=name, labels={"role": "test"}, workdir="/"))
    try:
        client.images.remove(name, force=True)
        assert sandbox.exec("cat /doomed").output == "doomed\n"  # running sandboxes keep their layers
        with pytest.raises(SandboxStartError, match="does not exist locally") as info:
            docker_backend.start(SandboxSpec(image=name, labels={"role": "test"}))
        assert error_kind(info.value) == "infrastructure"
    finally:
        sandbox.close()
        try:  # close() removes the untagged remains; make sure of it even if it did not
            left = client.images.get(image_id)
        except ImageNotFound:
            left = None
        else:
            client.images.remove(image_id, force=True)
    assert left is None, "the deleted image's untagged layers leaked"
    assert gone(client, sandbox.id)
