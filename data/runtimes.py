"""Which OS image and Python a SWE-bench spec's `python: X.Y` runs on, and what that costs.

No conda, no python.org and no GitHub are reachable from our build machines, so the interpreter is the
one a distribution ships: Debian bullseye has 3.9, bookworm 3.11; Ubuntu bionic 3.6, focal 3.8, jammy 3.10
(jammy is also the official images' base OS). A spec gets its own minor version wherever one of these
ships it; 3.5 and 3.7 go to the nearest, and the recipe says so (`Runtime.note`), because fidelity to the
official verdicts may suffer.

A pin that has no wheel for the interpreter we use would be compiled from its sdist (slow, and usually
broken with today's compilers and setuptools); `lift_pin` moves it to the nearest release that has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchfleet.errors import ConfigError

UBUNTU_MIRROR = "http://archive.ubuntu.com/ubuntu"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

# The official images' Python is conda's newest patch release of its minor version (3.9.20, 3.10.15 in
# the trajectories that ran there); a release pocket's is the one the distribution shipped with (bullseye
# 3.9.2, focal 3.8.2, jammy 3.10.4), years of fixes behind. Those fixes change verdicts: bpo-43882
# (urlsplit drops tab and newline, 3.8.11 / 3.9.5) is what django__django-14349's FAIL_TO_PASS test
# depends on, so on a release pocket's Python the bug does not show at the base commit and every
# candidate "resolves" it. The registry images (`ubuntu:focal`, `debian:bullseye-slim`) list their
# updates and security pockets, so a base made from them already had the patched builds; a debootstrapped
# base gets the same pockets and is upgraded from them (`Distro.pockets`, `ImageBuilder._debootstrap`).


# The environment a debootstrapped base image has always had. The official images (Ubuntu + conda) have
# `ENV TZ=Etc/UTC` and no LANG, i.e. the POSIX locale: Python >= 3.7 coerces that to UTF-8 (PEP 538/540),
# 3.6 does not, so there `locale.getpreferredencoding()` is ASCII and open() without an encoding fails on
# non-ASCII text, officially, where LANG=C.UTF-8 would read it. The Python 3.6 base (bionic) therefore
# gets the official environment, with tzdata (the official base installs it; without it TZ=Etc/UTC names
# the zone "Etc"); the other bases keep theirs, with their image tags (see `BaseLayer`).
UTF8_IMAGE_ENV: tuple[tuple[str, str], ...] = (("LANG", "C.UTF-8"),)
OFFICIAL_IMAGE_ENV: tuple[tuple[str, str], ...] = (("TZ", "Etc/UTC"),)
OFFICIAL_IMAGE_PACKAGES = ("tzdata",)


@dataclass(frozen=True)
class Distro:
    """A release the base layer can be made from, and where its packages come from."""

    name: str
    family: str  # "debian" or "ubuntu": the registry image to try and the archive to debootstrap from
    python: str  # the minor version of its python3 package
    components: tuple[str, ...] = ("main",)
    image_env: tuple[tuple[str, str], ...] = UTF8_IMAGE_ENV  # ENV of the base image
    image_packages: tuple[str, ...] = ()  # installed in the base image besides BaseLayer.packages
    pockets: tuple[str, ...] = ("updates", "security")  # suites beside the release's: <name>-<pocket>

    @property
    def mirror(self) -> str:
        return UBUNTU_MIRROR if self.family == "ubuntu" else DEBIAN_MIRROR

    def apt_sources(self, mirror: str, security_mirror: str = DEBIAN_SECURITY_MIRROR) -> str:
        """sources.list of the release and its pockets, as the registry images have it."""
        components = " ".join(self.components)
        lines = [f"deb {mirror} {self.name} {components}"]
        for pocket in self.pockets:
            # Debian keeps security updates in an archive of their own; Ubuntu in its main one
            where = security_mirror if self.family == "debian" and pocket == "security" else mirror
            lines.append(f"deb {where} {self.name}-{pocket} {components}")
        return "\n".join(lines) + "\n"

    @property
    def registry_image(self) -> str:
        return f"ubuntu:{self.name}" if self.family == "ubuntu" else f"debian:{self.name}-slim"


# Ubuntu's python3-venv and build tools for some releases live in universe.
DISTROS: dict[str, Distro] = {
    d.name: d
    for d in (
        Distro("bullseye", "debian", "3.9"),
        Distro("bookworm", "debian", "3.11"),
        Distro("bionic", "ubuntu", "3.6", ("main", "universe"), OFFICIAL_IMAGE_ENV, OFFICIAL_IMAGE_PACKAGES),
        Distro("focal", "ubuntu", "3.8", ("main", "universe")),
        Distro("jammy", "ubuntu", "3.10", ("main", "universe")),
    )
}
DISTRO_PYTHON = {name: d.python for name, d in DISTROS.items()}


def distro(name: str) -> Distro:
    """The release called `name`; ConfigError naming the ones we know."""
    found = DISTROS.get(name)
    if found is None:
        raise ConfigError(f"unknown base distribution {name!r}: one of {', '.join(DISTROS)}")
    return found


# wanted -> (distro, why). Versions no release here ships go to the nearest one above: code written for
# 3.5 or 3.7 breaks less on 3.6 or 3.8 than on anything older. Debian stays the choice for 3.9 and 3.11
# (and 3.12, one below), as before: those images and their tags are unchanged.
PYTHON_CHOICES: dict[str, tuple[str, str]] = {
    "3.6": ("bionic", ""),
    "3.8": ("focal", ""),
    "3.9": ("bullseye", ""),
    "3.10": ("jammy", ""),
    "3.11": ("bookworm", ""),
    "3.5": ("bionic", "one minor version above the spec's (no release with 3.5 is built here)"),
    "3.7": ("focal", "one minor version above the spec's (bionic's 3.7 is a beta in its release pocket)"),
    "3.12": ("bookworm", "one minor version below the spec's"),
}
# pip learnt --uploaded-prior-to (PIP_UPLOADED_PRIOR_TO) in 26.0, which needs Python >= 3.9; below that
# the environment's packages are installed with uv and its --exclude-newer (UV_EXCLUDE_NEWER) instead.
PIP_DATE_CAP_FROM = (3, 9)

# Earliest release with a manylinux wheel for the interpreter, checked with
# `pip download --only-binary=:all: --python-version 3.9 --no-deps` (numpy 1.19.2, scipy 1.5.2 and 1.5.3,
# pyerfa 1.7.0, numpy 1.16.0 have none). Only packages that need a C compiler are listed: a pure-Python
# sdist installs anywhere.
WHEEL_FLOOR: dict[str, dict[str, str]] = {
    "3.9": {"numpy": "1.19.3", "scipy": "1.5.4", "pyerfa": "1.7.1"},
}


@dataclass(frozen=True)
class Runtime:
    """The interpreter a spec asked for and the one it gets."""

    wanted: str
    python: str
    distro: str
    note: str = ""  # empty when the spec gets exactly what it asked for

    @property
    def exact(self) -> bool:
        return self.wanted == self.python

    @property
    def installer(self) -> str:
        """What installs the environment's packages with a date cut-off: "pip" (>= 26) or "uv"."""
        return "pip" if _numeric(self.python) >= PIP_DATE_CAP_FROM else "uv"


def runtime_for(wanted: str) -> Runtime:
    """The base image for a spec's Python version; ConfigError for versions we cannot approximate."""
    choice = PYTHON_CHOICES.get(wanted)
    if choice is None:
        raise ConfigError(
            f"Python {wanted} is not available: our images have "
            + ", ".join(f"{v} ({d})" for d, v in DISTRO_PYTHON.items())
        )
    name, why = choice
    python = DISTRO_PYTHON[name]
    note = f"spec asks for Python {wanted}; runs on {python} ({name}): {why}" if why else ""
    return Runtime(wanted=wanted, python=python, distro=name, note=note)


_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][0-9.]*)$")


def lift_pin(requirement: str, python: str) -> tuple[str, str]:
    """(requirement, note): an exact pin below the interpreter's wheel floor is raised to the floor."""
    match = _PIN.match(requirement.strip().strip("'\""))
    if match is None:
        return requirement, ""
    name, version = match["name"], match["version"]
    floor = WHEEL_FLOOR.get(python, {}).get(name.lower())
    if floor is None or _numeric(version) >= _numeric(floor):
        return requirement, ""
    return f"{name}=={floor}", f"{name}=={version} has no cp{python.replace('.', '')} wheel; uses {floor}"


def _numeric(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())
