"""Which Debian image and Python a SWE-bench spec's `python: X.Y` runs on, and what that costs.

No conda, no python.org and no GitHub are reachable from our build machines, so the interpreter is the
one Debian ships: bullseye has 3.9, bookworm 3.11. Every other version maps to the nearest of those two,
and the recipe says so (`Runtime.note`), because fidelity to the official verdicts may suffer.

A pin that has no wheel for the interpreter we use would be compiled from its sdist (slow, and usually
broken with today's compilers and setuptools); `lift_pin` moves it to the nearest release that has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchfleet.errors import ConfigError

DEBIAN_PYTHON = {"bullseye": "3.9", "bookworm": "3.11"}

# wanted -> (distro, why). Below 3.9 and 3.10 go to 3.9: older code breaks less on 3.9 than on 3.11
# (distutils, asyncio.coroutine, collections ABC aliases), and the pins of the 3.10 specs (xarray,
# sphinx 8) all have cp39 wheels, whereas some predate Python 3.11 (numpy 1.23.0; 1.23.2 was the first
# release with cp311 wheels).
PYTHON_CHOICES: dict[str, tuple[str, str]] = {
    "3.9": ("bullseye", ""),
    "3.11": ("bookworm", ""),
    "3.10": ("bullseye", "one minor version below the spec's; its pins have cp39 wheels"),
    "3.8": ("bullseye", "one minor version above the spec's"),
    "3.7": ("bullseye", "two minor versions above the spec's; expect some verdicts to differ"),
    "3.6": ("bullseye", "three minor versions above the spec's; expect some verdicts to differ"),
    "3.5": ("bullseye", "four minor versions above the spec's; the code predates 3.9: low fidelity"),
    "3.12": ("bookworm", "one minor version below the spec's"),
}

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


def runtime_for(wanted: str) -> Runtime:
    """The Debian image for a spec's Python version; ConfigError for versions we cannot approximate."""
    choice = PYTHON_CHOICES.get(wanted)
    if choice is None:
        raise ConfigError(
            f"Python {wanted} is not available: our images have "
            + ", ".join(f"{v} ({d})" for d, v in DEBIAN_PYTHON.items())
        )
    distro, why = choice
    python = DEBIAN_PYTHON[distro]
    note = f"spec asks for Python {wanted}; runs on {python} ({distro}): {why}" if why else ""
    return Runtime(wanted=wanted, python=python, distro=distro, note=note)


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
