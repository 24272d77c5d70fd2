"""The official SWE-bench instance images, used when present or pullable (`--images auto|official`).

What users with a registry expect, and the official environment exactly: the repository in /testbed and
the conda env `testbed`, which the harness's eval script activates itself (`source
/opt/miniconda3/bin/activate; conda activate testbed`), so evaluation starts it as the harness does. The
agent's commands must see that env too, but a `docker exec` does not read the image's `.bashrc`; so the
environment that activation gives is read from the image once (`OfficialImage.env`) and passed to the
agent's sandboxes, as our own images carry their venv on PATH.
"""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from docker.errors import ImageNotFound

from patchfleet.errors import ConfigError, ImageBuildError
from patchfleet.sandbox.base import REPO_DIR, Network, SandboxSpec
from patchfleet.sandbox.images import ImageBuilder, official_image_name

CONDA_ENV = "testbed"
ACTIVATE = f"source /opt/miniconda3/bin/activate && conda activate {CONDA_ENV}"
# what a shell sets for itself, not what activation gives
_SHELL_OWN = frozenset({"_", "SHLVL", "PWD", "OLDPWD", "PS1"})
PROBE_TIMEOUT = 120.0


class ImageMode(StrEnum):
    AUTO = "auto"  # the official image when present or pullable, else ours
    OFFICIAL = "official"  # the official image or an error
    LOCAL = "local"  # always ours


def image_mode(value: str) -> ImageMode:
    try:
        return ImageMode(value)
    except ValueError:
        choices = ", ".join(mode.value for mode in ImageMode)
        raise ConfigError(f"--images {value!r}: expected one of {choices}") from None


@dataclass(frozen=True)
class OfficialImage:
    name: str
    image_id: str  # content identity, for verdict keys (a re-pulled image with new content is new)
    env: dict[str, str] = field(default_factory=dict)  # what `conda activate testbed` sets in it


class OfficialImages:
    """Finds each instance's official image once per process (and the environment its conda env gives);
    thread-safe, so every worker shares one."""

    def __init__(self, builder: ImageBuilder, mode: ImageMode | str = ImageMode.LOCAL) -> None:
        self.builder = builder
        self.mode = ImageMode(mode)
        self._found: dict[str, OfficialImage | None] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def for_task(self, instance_id: str) -> OfficialImage | None:
        """The official image to use for `instance_id`, or None when ours should be built."""
        if self.mode is ImageMode.LOCAL:
            return None
        with self._guard:
            lock = self._locks.setdefault(instance_id, threading.Lock())
        with lock:
            if instance_id not in self._found:
                name = self.builder.official(instance_id)
                self._found[instance_id] = self._describe(name) if name else None
        found = self._found[instance_id]
        if found is None and self.mode is ImageMode.OFFICIAL:
            raise ImageBuildError(
                f"--images official: {official_image_name(instance_id)} is not here and cannot be pulled"
            )
        return found

    def missing(self, instance_ids: list[str]) -> list[str]:
        """Instances with no official image (for an up-front check of `--images official`)."""
        if self.mode is not ImageMode.OFFICIAL:
            return []
        missing = []
        for instance_id in instance_ids:
            try:
                self.for_task(instance_id)
            except ImageBuildError:
                missing.append(instance_id)
        return missing

    def _describe(self, name: str) -> OfficialImage:
        try:
            image_id = self.builder.client.images.get(name).id
        except ImageNotFound as exc:
            raise ImageBuildError(f"{name} disappeared while it was being used") from exc
        return OfficialImage(name, image_id, activated_env(self.builder, name))


def activated_env(builder: ImageBuilder, image: str) -> dict[str, str]:
    """The variables `conda activate testbed` sets or changes in `image` (PATH, CONDA_PREFIX, ...)."""
    spec = SandboxSpec(image=image, labels={"role": "probe"}, network=Network.NONE, workdir=REPO_DIR)
    probe = f"env -0 && printf '\\0--activated--\\0' && {ACTIVATE} >/dev/null 2>&1 && env -0"
    with builder.backend.start(spec) as sandbox:
        result = sandbox.exec(f"bash -c {shlex.quote(probe)}", timeout=PROBE_TIMEOUT)
    before, marker, after = result.output.partition("\0--activated--\0")
    if not result.ok or not marker:
        raise ImageBuildError(
            f"{image}: `{ACTIVATE}` fails in it (exit {result.exit_code}); not an official-layout image?",
            log=result.output[-2000:],
        )
    plain, active = _parse_env(before), _parse_env(after)
    return {k: v for k, v in active.items() if k not in _SHELL_OWN and plain.get(k) != v}


def _parse_env(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in text.split("\0") if "=" in item)
    return {key: value for key, _, value in pairs}
