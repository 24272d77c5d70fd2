"""Images in three content-hashed layers: base OS + runtime, a shared environment, a thin instance.

A tag is a hash of everything that goes into its layer and of its parent's tag, so asking for an image
that exists is a no-op and a changed recipe gets a new tag. The base comes from a registry when one is
reachable, and otherwise from `debootstrap` + `docker import` (what the official images would give).
The upper layers are built by running their steps in a sandbox and committing it: that lets builds use
the host's CA bundle and proxies as read-only mounts that never end up inside the image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from pydantic import BaseModel, ConfigDict

from patchfleet.data.recipes import Recipe
from patchfleet.data.runtimes import (
    DEBIAN_MIRROR,
    DEBIAN_SECURITY_MIRROR,
    UBUNTU_MIRROR,
    UTF8_IMAGE_ENV,
    Distro,
    distro,
)
from patchfleet.data.sources import RepoSource
from patchfleet.data.task import Task
from patchfleet.errors import ImageBuildError
from patchfleet.sandbox import engine
from patchfleet.sandbox.base import REPO_DIR, Network, SandboxSpec
from patchfleet.sandbox.docker import ENGINE_ERRORS, DockerBackend
from patchfleet.sandbox.limits import human, parse_size
from patchfleet.sandbox.trust import HostTrust

REPOSITORY = "patchfleet"
LAYER_LABEL = engine.LAYER_LABEL
SPEC_LABEL = "patchfleet.spec"
# debootstrap checks Ubuntu's Release files against this (Debian hosts: the ubuntu-keyring package)
UBUNTU_KEYRING = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
# a base's packages as the release's updates and security pockets have them (runtimes: why it matters)
UPGRADE = "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get dist-upgrade -y -q"
BASE_PACKAGES = ("python3", "python3-venv", "git", "patch", "ca-certificates", "procps", "less")
BUILD_STEP_TIMEOUT = 3600.0
# Build containers must not leave our ownership labels behind in the image they become.
# host:pid of the process that committed a layer: lets a test session remove exactly what it built
BUILT_BY_LABEL = "patchfleet.built-by"
CLEARED_LABELS = dict.fromkeys((engine.MANAGED, engine.OWNER_PID, engine.OWNER_HOST, engine.CREATED), "")

Log = Callable[[str], None]


class _Layer(BaseModel):
    model_config = ConfigDict(frozen=True)
    # Bump when the way a layer kind is built changes, so that images built the old way are never reused.
    build_format: ClassVar[int] = 1

    def digest(self, parent: str = "") -> str:
        content = {"parent": parent, **self.model_dump(mode="json"), **self._derived()}
        if self.build_format > 1:
            content["format"] = self.build_format
        payload = json.dumps(content, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _derived(self) -> dict[str, object]:
        """What goes into the image besides the fields, when it is not what it has always been."""
        return {}


class BaseLayer(_Layer):
    """A Debian or Ubuntu release plus the packages every sandbox needs (Python for the exec server, git,
    patch). The fields, and so the tags of the Debian bases, are as they were before Ubuntu was added."""

    distro: str = "bookworm"  # a key of runtimes.DISTROS: bookworm 3.11, bullseye 3.9, jammy 3.10, ...
    packages: tuple[str, ...] = BASE_PACKAGES

    def tag(self) -> str:
        return f"{REPOSITORY}/base:{self.distro}-{self.digest()}"

    def all_packages(self) -> tuple[str, ...]:
        return (*self.packages, *distro(self.distro).image_packages)

    def _derived(self) -> dict[str, object]:
        # a release whose image differs from the historical LANG=C.UTF-8 and package list (bionic: the
        # official images' TZ, POSIX locale and tzdata) gets a tag of its own; the others keep theirs
        release = distro(self.distro)
        derived: dict[str, object] = {}
        if release.image_env != UTF8_IMAGE_ENV:
            derived["image_env"] = [list(pair) for pair in release.image_env]
        if release.image_packages:
            derived["image_packages"] = list(release.image_packages)
        if release.pockets:  # upgraded from <release>-updates/-security (runtimes: the official Pythons)
            derived["pockets"] = list(release.pockets)
        return derived


class EnvLayer(_Layer):
    """What every instance of one (repo, version) shares: system packages, a venv, pinned deps."""

    build_format: ClassVar[int] = 2  # 2: build containers no longer leak a VOLUME into the image

    key: str  # e.g. "sympy__sympy-1.12"
    steps: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # baked into the image (e.g. PATH with the venv first)


# As SWE-bench's set-up script ends: edits the install steps make to tracked files (sphinx pins its
# setup.py, adds -rA to tox.ini) become a commit of their own, so that an agent's diff() does not carry them
# and the harness's `git checkout -- .` between patch attempts does not undo them.
SETUP_COMMIT = (
    "git -c user.name=patchfleet -c user.email=setup@patchfleet.invalid "
    "commit --allow-empty --no-verify -q -am 'patchfleet: set-up edits'"
)


class InstanceLayer(_Layer):
    """The repository at its base commit in /testbed, plus per-instance install steps, whose edits to
    tracked files are committed on top (`SETUP_COMMIT`): the base commit is HEAD's root."""

    build_format: ClassVar[int] = 3  # 3: set-up edits committed

    key: str  # e.g. an instance id
    repo: str  # owner/name
    commit: str
    steps: tuple[str, ...] = ()
    workdir: str = REPO_DIR


class ImageSpec(_Layer):
    base: BaseLayer = BaseLayer()
    env: EnvLayer | None = None
    instance: InstanceLayer | None = None

    def tags(self) -> list[str]:
        """Tags from the base up to the top layer."""
        tags = [self.base.tag()]
        if self.env is not None:
            tags.append(f"{REPOSITORY}/env:{_slug(self.env.key)}-{self.env.digest(tags[-1])}")
        if self.instance is not None:
            tags.append(f"{REPOSITORY}/inst:{_slug(self.instance.key)}-{self.instance.digest(tags[-1])}")
        return tags

    def tag(self) -> str:
        return self.tags()[-1]


def built_by() -> str:
    """The value of `BUILT_BY_LABEL` for layers this process commits."""
    return f"{socket.gethostname()}:{os.getpid()}"


def official_image_name(instance_id: str) -> str:
    """The name of the official SWE-bench evaluation image for an instance (`__` is written `_1776_`)."""
    return f"swebench/sweb.eval.x86_64.{instance_id.replace('__', '_1776_').lower()}:latest"


def _slug(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text.lower())
    return cleaned.strip(".-")[:80] or "x"


def unbounded_spec(image: str, *, role: str) -> SandboxSpec:
    """A sandbox that builds or measures an image: network, no CPU, memory, pids or disk bound (it writes
    what its recipe needs; the backend's host-disk reserve still holds)."""
    return SandboxSpec(
        image=image,
        labels={"role": role},
        network=Network.BRIDGE,
        cpus=None,
        memory=None,
        pids_limit=None,
        workdir="/",
        disk="0",
    )


class ImageBuilder:
    """Makes sure the images of an `ImageSpec` exist, building the missing layers bottom-up."""

    def __init__(
        self,
        backend: DockerBackend,
        *,
        repo_source: RepoSource | None = None,
        allow_pull: bool = True,
        debian_mirror: str = DEBIAN_MIRROR,
        ubuntu_mirror: str = UBUNTU_MIRROR,
        debian_security_mirror: str = DEBIAN_SECURITY_MIRROR,
        ubuntu_keyring: str = UBUNTU_KEYRING,
        log: Log | None = None,
        min_free_disk: str | None = None,
    ) -> None:
        self.backend = backend
        # a layer does not start with less free space than this where Docker stores it; None: the
        # backend's setting (DockerConfig.min_free_disk), "0": no check
        self.min_free_disk = parse_size(min_free_disk if min_free_disk is not None else backend.min_free_disk)
        self.client: docker.DockerClient = backend.client
        self.trust: HostTrust = backend.trust
        self.repo_source = repo_source
        self.allow_pull = allow_pull
        self.debian_mirror = debian_mirror
        self.ubuntu_mirror = ubuntu_mirror
        self.debian_security_mirror = debian_security_mirror
        self.ubuntu_keyring = ubuntu_keyring
        self.log = log or (lambda line: None)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def exists(self, tag: str) -> bool:
        try:
            self.client.images.get(tag)
        except ImageNotFound:
            return False
        return True

    def official(self, instance_id: str) -> str | None:
        """The official SWE-bench image of an instance if it is here or can be pulled, else None."""
        name = official_image_name(instance_id)
        if self.exists(name) or (self.allow_pull and self._pull(name)):
            return name
        return None

    def ensure(self, spec: ImageSpec) -> str:
        """The top tag of `spec`, after building whatever layer is missing (a no-op when all exist)."""
        tags = spec.tags()
        self._ensure_one(tags[0], lambda: self._build_base(spec.base, tags[0]))
        layers = [layer for layer in (spec.env, spec.instance) if layer is not None]
        for parent, tag, layer in zip(tags[:-1], tags[1:], layers, strict=True):
            if isinstance(layer, EnvLayer):
                self._ensure_one(tag, lambda p=parent, t=tag, lay=layer: self._build_env(lay, p, t))
            else:
                self._ensure_one(tag, lambda p=parent, t=tag, lay=layer: self._build_instance(lay, p, t))
        return tags[-1]

    def _ensure_one(self, tag: str, build: Callable[[], None]) -> None:
        with self._locks_guard:
            lock = self._locks.setdefault(tag, threading.Lock())
        with lock:  # two workers asking for one layer build it once
            if not self.exists(tag):
                self.check_free_disk(tag)
                started = time.monotonic()
                build()
                self.log(f"built {tag} in {time.monotonic() - started:.1f}s")

    def check_free_disk(self, tag: str) -> None:
        """Refuse to start a layer on a nearly full disk: a clear error now, not a half-built layer
        (or a full host) after minutes of work. Checks Docker's data root and our temp directory."""
        if self.min_free_disk is None:
            return
        places = [tempfile.gettempdir()]
        try:
            root = self.client.info().get("DockerRootDir")
        except ENGINE_ERRORS as exc:
            raise ImageBuildError(f"cannot ask the engine where it stores images: {exc}") from exc
        if root and Path(root).is_dir():  # a remote engine's disk is not ours to see
            places.insert(0, root)
        for place in places:
            free = shutil.disk_usage(place).free
            if free < self.min_free_disk:
                raise ImageBuildError(
                    f"not building {tag}: {place} has {human(free)} free, under the "
                    f"{human(self.min_free_disk)} a build needs (DockerConfig.min_free_disk); free space "
                    "with `patchfleet images prune` or `docker system df`, or lower the threshold"
                )

    # -- base ------------------------------------------------------------------------------------

    def _build_base(self, layer: BaseLayer, tag: str) -> None:
        release = distro(layer.distro)
        if self.allow_pull and self._pull(release.registry_image):
            packages = " ".join(layer.all_packages())
            steps = (
                f"{UPGRADE} && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                f"--no-install-recommends {packages} && rm -rf /var/lib/apt/lists/*",
            )
            # registry images bring no LANG of their own: only a release with its own environment sets one
            env = () if release.image_env == UTF8_IMAGE_ENV else release.image_env
            self._commit_steps(release.registry_image, tag, steps, env=env, workdir="/", layer_name="base")
            return
        self._debootstrap(layer, tag)

    def _pull(self, reference: str) -> bool:
        try:
            self.client.images.pull(reference)
        except (APIError, DockerException) as exc:
            self.log(f"cannot pull {reference} ({str(exc).splitlines()[0][:160]}); building locally")
            return False
        return True

    def _debootstrap(self, layer: BaseLayer, tag: str) -> None:
        if shutil.which("debootstrap") is None:
            raise ImageBuildError(
                f"cannot make base image {tag}: no registry is reachable and `debootstrap` is not installed "
                "(on Debian/Ubuntu: `sudo apt-get install debootstrap`; it must run as root)"
            )
        release = distro(layer.distro)
        extra = [f"--components={','.join(release.components)}"]
        if release.family == "ubuntu":
            if not Path(self.ubuntu_keyring).is_file():
                raise ImageBuildError(
                    f"cannot make base image {tag}: debootstrap of Ubuntu {release.name} needs Ubuntu's "
                    f"archive keyring at {self.ubuntu_keyring} (Debian: `apt-get install ubuntu-keyring`)"
                )
            extra.append(f"--keyring={self.ubuntu_keyring}")
        with tempfile.TemporaryDirectory(prefix="patchfleet-rootfs-") as tmp:
            root = Path(tmp) / "rootfs"
            cmd = [
                "debootstrap",
                "--variant=minbase",
                *(extra if release.family == "ubuntu" else []),
                f"--include={','.join(layer.all_packages())}",
                layer.distro,
                str(root),
                self._mirror(release),
            ]
            self.log(f"$ {' '.join(cmd)}")
            done = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
            if done.returncode != 0:
                raise ImageBuildError(
                    f"debootstrap of {layer.distro} failed", log=done.stdout[-4000:] + done.stderr[-4000:]
                )
            if release.pockets:
                self._upgrade_in_chroot(root, release, tag)
            for junk in ("var/cache/apt", "var/cache/apt/archives", "var/lib/apt/lists"):
                for child in (root / junk).glob("*"):
                    if child.is_file():
                        child.unlink()
            archive = Path(tmp) / "rootfs.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(root, arcname=".")
            repository, _, version = tag.rpartition(":")
            env = [f"ENV {name}={value}" for name, value in release.image_env]
            changes = [*env, 'CMD ["bash"]', f"LABEL {LAYER_LABEL}=base"]
            try:
                self.client.api.import_image_from_file(
                    str(archive), repository=repository, tag=version, changes=changes
                )
            except APIError as exc:
                raise ImageBuildError(f"docker import of {tag} failed: {exc}") from exc
        if not self.exists(tag):
            raise ImageBuildError(f"docker import reported success but {tag} does not exist")

    def _mirror(self, release: Distro) -> str:
        return self.ubuntu_mirror if release.family == "ubuntu" else self.debian_mirror

    def _upgrade_in_chroot(self, root: Path, release: Distro, tag: str) -> None:
        """List the release's updates and security pockets, as the registry images do, and upgrade from
        them inside the debootstrapped tree (one layer: an upgrade committed on top would store every
        upgraded file twice)."""
        sources = release.apt_sources(self._mirror(release), self.debian_security_mirror)
        (root / "etc/apt/sources.list").write_text(sources)
        self.log(f"upgrading {tag} from {', '.join(f'{release.name}-{p}' for p in release.pockets)}")
        resolv = root / "etc/resolv.conf"
        kept = resolv.read_bytes() if resolv.is_file() and not resolv.is_symlink() else None
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
        (root / "proc").mkdir(exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], capture_output=True)
        try:
            done = subprocess.run(
                ["chroot", str(root), "sh", "-c", UPGRADE],
                capture_output=True,
                text=True,
                errors="replace",
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        finally:
            if mounted.returncode == 0:
                subprocess.run(["umount", "-l", str(root / "proc")], capture_output=True)
            resolv.unlink(missing_ok=True)
            if kept is not None:
                resolv.write_bytes(kept)
        if done.returncode != 0:
            raise ImageBuildError(
                f"upgrading {tag} from its updates and security pockets failed",
                log=done.stdout[-4000:] + done.stderr[-4000:],
            )

    # -- env and instance ------------------------------------------------------------------------

    def _build_env(self, layer: EnvLayer, parent: str, tag: str) -> None:
        self._commit_steps(parent, tag, layer.steps, env=layer.env, workdir="/", layer_name="env")

    def _build_instance(self, layer: InstanceLayer, parent: str, tag: str) -> None:
        if self.repo_source is None:
            raise ImageBuildError(f"cannot build {tag}: no repository source configured")
        with tempfile.TemporaryDirectory(prefix="patchfleet-repo-") as tmp:
            checkout = Path(tmp) / "repo"
            self.repo_source.materialize(layer.repo, layer.commit, checkout)
            archive = Path(tmp) / "repo.tar"
            workdir = layer.workdir.rstrip("/")
            with tarfile.open(archive, "w") as tar:
                tar.add(checkout, arcname=workdir.rsplit("/", 1)[-1])
            self._commit_steps(
                parent,
                tag,
                (*layer.steps, SETUP_COMMIT),
                env=(),
                workdir=layer.workdir,
                layer_name="instance",
                upload=(archive, workdir.rsplit("/", 1)[0] or "/"),
            )

    def _commit_steps(
        self,
        parent: str,
        tag: str,
        steps: tuple[str, ...],
        *,
        env: tuple[tuple[str, str], ...],
        workdir: str,
        layer_name: str,
        upload: tuple[Path, str] | None = None,
    ) -> None:
        """Run `steps` in a sandbox from `parent` with network and host trust, then commit it as `tag`."""
        spec = unbounded_spec(parent, role="build")
        exec_env = {**self.trust.container_env(), **dict(env)}
        with self.backend.start(spec) as sandbox:
            if upload is not None:
                archive, target = upload
                sandbox.exec(f"mkdir -p {target}", timeout=60)
                if not sandbox.container.put_archive(target, archive.read_bytes()):
                    raise ImageBuildError(f"cannot copy the repository into {tag}")
            for step in steps:
                self.log(f"[{tag}] $ {step}")
                result = sandbox.exec(
                    f"set -e\n{step}",
                    timeout=BUILD_STEP_TIMEOUT,
                    cwd=workdir,
                    env=exec_env,
                    output_limit=64 * 1024,
                )
                if not result.ok:
                    reason = "timed out" if result.timed_out else f"exit code {result.exit_code}"
                    raise ImageBuildError(
                        f"building {tag}: step {step!r} failed ({reason})", log=result.output[-8000:]
                    )
            parent_env = self.client.images.get(parent).attrs["Config"].get("Env") or []
            repository, _, version = tag.rpartition(":")
            conf = {
                "Labels": {
                    **CLEARED_LABELS,
                    "patchfleet.role": "",
                    LAYER_LABEL: layer_name,
                    SPEC_LABEL: version,
                    BUILT_BY_LABEL: built_by(),
                },
                "Env": [*parent_env, *(f"{k}={v}" for k, v in env)],
                "Cmd": ["bash"],
                "WorkingDir": workdir,
            }
            try:
                sandbox.container.commit(repository=repository, tag=version, conf=conf)
            except APIError as exc:
                raise ImageBuildError(f"docker commit of {tag} failed: {exc}") from exc

    # -- listing and pruning ---------------------------------------------------------------------

    def list(self) -> list[dict[str, object]]:
        """patchfleet's images with layer kind, size and creation time, biggest first."""
        rows = []
        for image in self.client.images.list(filters={"label": LAYER_LABEL}):
            rows.append(
                {
                    "tags": image.tags,
                    "layer": image.labels.get(LAYER_LABEL, ""),
                    "size": image.attrs.get("Size", 0),
                    "created": image.attrs.get("Created", ""),
                    "id": image.short_id,
                }
            )
        return sorted(rows, key=lambda r: -int(r["size"]))  # type: ignore[call-overload]

    def prune(self, layers: tuple[str, ...] = ("instance",), keep: set[str] | None = None) -> list[str]:
        """Remove images of the given layer kinds (instances by default: cheap to rebuild)."""
        removed = []
        for row in self.list():
            if row["layer"] not in layers:
                continue
            for tag in row["tags"]:  # type: ignore[union-attr]
                if keep and tag in keep:
                    continue
                try:
                    self.client.images.remove(tag)
                    removed.append(tag)
                except (NotFound, APIError) as exc:
                    self.log(f"cannot remove {tag}: {exc}")
        return removed


def image_spec(task: Task, recipe: Recipe) -> ImageSpec:
    """The three layers of a task's image: the recipe's base and environment, the repository at its commit."""
    return ImageSpec(
        base=BaseLayer(distro=recipe.distro),
        env=EnvLayer(key=recipe.key, steps=recipe.env_steps, env=recipe.env_vars),
        instance=InstanceLayer(
            key=task.id, repo=task.repo, commit=task.base_commit, steps=recipe.instance_steps
        ),
    )
