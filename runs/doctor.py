"""`patchfleet doctor`: check what patchfleet needs from this machine and say, in plain words, what to fix."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from patchfleet.data.runtimes import DISTROS
from patchfleet.errors import DockerUnavailable
from patchfleet.sandbox import engine
from patchfleet.sandbox.images import UBUNTU_KEYRING, BaseLayer
from patchfleet.sandbox.trust import HostTrust

MIN_FREE_GB = 20


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def run_checks(trust: HostTrust, docker_host: str | None = None) -> list[Check]:
    checks = [_check_git()]
    try:
        client = engine.connect(docker_host, timeout=15)
    except DockerUnavailable as exc:
        checks.append(Check("docker engine", Status.FAIL, str(exc).split(". Start")[0], engine.FIX_HINT))
        checks.append(_check_trust(trust))
        return checks
    info = client.info()
    checks.append(
        Check(
            "docker engine",
            Status.OK,
            f"{info.get('ServerVersion')} ({info.get('Driver')} storage, "
            f"cgroup v{info.get('CgroupVersion')}, "
            f"{info.get('NCPU')} CPUs, {info.get('MemTotal', 0) / 2**30:.0f} GiB)",
        )
    )
    checks.append(_check_disk(Path(info.get("DockerRootDir") or "/")))
    checks.append(_check_base_images(client))
    checks.append(_check_trust(trust))
    return checks


def _check_git() -> Check:
    if shutil.which("git"):
        return Check("git", Status.OK, shutil.which("git") or "")
    return Check("git", Status.FAIL, "git is not installed", "install git (`sudo apt-get install git`)")


def _check_disk(root: Path) -> Check:
    where = root if root.exists() else Path("/")
    free_gb = shutil.disk_usage(where).free / 2**30
    if free_gb < MIN_FREE_GB:
        return Check(
            "disk",
            Status.WARN,
            f"{free_gb:.1f} GiB free at {where}",
            f"free at least {MIN_FREE_GB} GiB: `patchfleet images prune`, `docker system prune`",
        )
    return Check("disk", Status.OK, f"{free_gb:.0f} GiB free at {where}")


def _check_base_images(client: object) -> Check:
    from docker.errors import ImageNotFound

    present, missing = [], []
    for distro in DISTROS:  # the Ubuntu ones carry the specs that ask for Python 3.6, 3.8 and 3.10
        tag = BaseLayer(distro=distro).tag()
        try:
            client.images.get(tag)  # type: ignore[attr-defined]
            present.append(tag)
        except ImageNotFound:
            missing.append(distro)
    if not missing:
        return Check("base images", Status.OK, ", ".join(present))
    can_build = shutil.which("debootstrap") is not None and os.geteuid() == 0
    how = "they will be built on first use (pull, else debootstrap), or now with " + " ; ".join(
        f"`patchfleet images build --distro {d}`" for d in missing
    )
    if not can_build:
        how += (
            ". Without a reachable registry the local build needs `debootstrap` and root "
            "(`sudo apt-get install debootstrap`)"
        )
    if any(DISTROS[d].family == "ubuntu" for d in missing) and not Path(UBUNTU_KEYRING).is_file():
        how += (
            f"; debootstrapping Ubuntu also needs its archive keyring at {UBUNTU_KEYRING} (`ubuntu-keyring`)"
        )
    return Check("base images", Status.WARN, f"missing: {', '.join(missing)}", how)


def _check_trust(trust: HostTrust) -> Check:
    if trust.ca_bundle is not None and not os.access(trust.ca_bundle, os.R_OK):
        return Check(
            "CA bundle / proxy",
            Status.FAIL,
            f"{trust.ca_bundle} is not readable",
            "set PATCHFLEET_CA_BUNDLE to a readable PEM bundle, or unset it",
        )
    if trust.ca_bundle is None and (trust.https_proxy or trust.http_proxy):
        return Check(
            "CA bundle / proxy",
            Status.WARN,
            trust.describe(),
            "a proxy is set without a CA bundle; if it intercepts TLS, set PATCHFLEET_CA_BUNDLE",
        )
    return Check(
        "CA bundle / proxy",
        Status.OK,
        trust.describe() + " (passed into builds and sandboxes)",
    )
