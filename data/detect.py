"""Environment detection for an arbitrary Python repository (`patchfleet fix`): which files say how to
install it, what to install in the sandbox, and which command runs its tests.

SWE-bench repositories have published recipes (`data.recipes`); a user's repository has none, so this
module reads the packaging files at the commit being fixed and writes a `Recipe` of the same shape, which
the image builder turns into layers like any other. `--setup` / `--test-cmd` replace what is guessed.
"""

from __future__ import annotations

import configparser
import hashlib
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from patchfleet.data.recipes import VENV, Recipe

PIP = f"{VENV}/bin/python -m pip install --no-input --progress-bar off"
VENV_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TEST_EXTRAS = ("test", "tests", "testing", "dev")
REQUIREMENT_NAMES = (
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-test.txt",
    "requirements_dev.txt",
    "requirements_test.txt",
    "dev-requirements.txt",
    "test-requirements.txt",
    "requirements/test.txt",
    "requirements/tests.txt",
    "requirements/dev.txt",
)
_IMPORTS_PYTEST = re.compile(r"^\s*(import pytest|from pytest\b|from _pytest\b)", re.M)
_IMPORTS_UNITTEST = re.compile(r"^\s*(import unittest|from unittest\b)", re.M)
_UNSUPPORTED_311 = re.compile(r"<\s*3\.(\d+)")


@dataclass(frozen=True)
class DetectedEnvironment:
    """What was found in a repository and what it implies; `describe()` is what the user is shown."""

    found: tuple[str, ...]  # the packaging and test files that were read
    install_steps: tuple[str, ...]  # run in /testbed, in the instance layer (with network)
    test_cmd: str  # "" when no test suite was found
    runner: str  # pytest, unittest, custom, none
    distro: str = "bookworm"
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> list[str]:
        lines = [f"found: {', '.join(self.found) or 'no packaging or test files'}"]
        lines += [f"install: {step}" for step in self.install_steps] or ["install: nothing to install"]
        lines.append(f"tests: {self.test_cmd or '(none found; selection relies on votes and the verifier)'}")
        return lines + [f"note: {note}" for note in self.notes]

    def recipe(self) -> Recipe:
        """A recipe of the same shape as the published ones: a venv in the env layer (named by its steps,
        so every detected repository with the same steps shares it), the installs in the instance layer."""
        env_steps = [f"python3 -m venv {VENV}"]
        if self.install_steps:  # only then is the network needed: an empty install builds offline
            env_steps.append(f"{PIP} --upgrade pip setuptools wheel")
        digest = hashlib.sha256("\n".join((self.distro, *env_steps)).encode()).hexdigest()[:12]
        return Recipe(
            repo="patchfleet/detected",
            version=digest,
            distro=self.distro,
            python="3.11" if self.distro == "bookworm" else "3.9",
            env_steps=tuple(env_steps),
            env_vars=(("PATH", VENV_PATH), ("VIRTUAL_ENV", VENV)),
            instance_steps=self.install_steps,
            test_cmd=self.test_cmd,
            parser="pytest" if self.runner == "pytest" else "exit-code",
            install=" && ".join(self.install_steps),
            notes=self.notes,
            origin="detected",
        )


def detect_environment(
    root: Path, *, setup: str | None = None, test_cmd: str | None = None
) -> DetectedEnvironment:
    """Read the packaging files of the checkout at `root`; `setup` and `test_cmd` override the guesses."""
    found: list[str] = []
    notes: list[str] = []
    steps: list[str] = []
    pyproject = _read_toml(root / "pyproject.toml", notes)
    setup_cfg = _read_cfg(root / "setup.cfg", notes)

    for name in REQUIREMENT_NAMES:
        if (root / name).is_file():
            found.append(name)
            steps.append(f"{PIP} -r {shlex.quote(name)}")
    installable = pyproject is not None and ("project" in pyproject or "build-system" in pyproject)
    for name in ("pyproject.toml", "setup.py", "setup.cfg"):
        if (root / name).is_file():
            found.append(name)
    installable = (
        installable or (root / "setup.py").is_file() or (setup_cfg is not None and "metadata" in setup_cfg)
    )
    if installable:
        extras = [e for e in _extras(pyproject, setup_cfg) if e in TEST_EXTRAS]
        target = f".[{','.join(extras)}]" if extras else "."
        steps.append(f"{PIP} -e {shlex.quote(target)}")
        if extras:
            notes.append(f"installed with the test extras {', '.join(extras)}")
    groups = [g for g in ((pyproject or {}).get("dependency-groups") or {}) if g in TEST_EXTRAS]
    if groups:
        steps.append(f"{PIP} " + " ".join(f"--group {g}" for g in groups))

    runner, guessed = _test_runner(root, pyproject, setup_cfg, found)
    if runner == "pytest":
        steps.append(f"{PIP} pytest")  # a no-op when the requirements already brought it
    if setup is not None:
        steps = [setup] if setup.strip() else []
        notes.append("install steps given by --setup")
    if test_cmd is not None:
        runner, guessed = ("custom", test_cmd) if test_cmd.strip() else ("none", "")
    return DetectedEnvironment(
        found=tuple(found),
        install_steps=tuple(steps),
        test_cmd=guessed,
        runner=runner,
        distro=_distro(pyproject, notes),
        notes=tuple(notes),
    )


def _test_runner(
    root: Path, pyproject: dict | None, setup_cfg: configparser.ConfigParser | None, found: list[str]
) -> tuple[str, str]:
    """pytest when the repository configures it or its tests import it; unittest when the tests use only
    unittest (then nothing needs installing); else pytest when there is a tests folder."""
    configured = bool(((pyproject or {}).get("tool") or {}).get("pytest"))
    configured |= setup_cfg is not None and setup_cfg.has_section("tool:pytest")
    for name in ("pytest.ini", "conftest.py", "tox.ini"):
        if (root / name).is_file():
            found.append(name)
            if name != "tox.ini" or "[pytest]" in (root / name).read_text(errors="replace"):
                configured = True
    test_files = _test_files(root)
    folders = sorted({p.relative_to(root).parts[0] for p in test_files if len(p.relative_to(root).parts) > 1})
    found.extend(f"{folder}/" for folder in folders[:3])
    texts = [path.read_text(errors="replace") for path in test_files[:200]]
    if configured or any(_IMPORTS_PYTEST.search(text) for text in texts):
        return "pytest", "python -m pytest -q -p no:cacheprovider"
    if texts and all(_IMPORTS_UNITTEST.search(text) for text in texts):
        start = "tests" if (root / "tests").is_dir() else "test" if (root / "test").is_dir() else "."
        return "unittest", f"python -m unittest discover -s {start} -t ."
    if texts:
        return "pytest", "python -m pytest -q -p no:cacheprovider"
    return "none", ""


def _test_files(root: Path) -> list[Path]:
    skip = {".git", ".venv", "venv", "node_modules", "build", "dist", ".tox"}
    files = []
    for pattern in ("test_*.py", "*_test.py"):
        for path in root.rglob(pattern):
            if not skip.intersection(path.relative_to(root).parts):
                files.append(path)
    return sorted(set(files))


def _extras(pyproject: dict | None, setup_cfg: configparser.ConfigParser | None) -> list[str]:
    extras = list(((pyproject or {}).get("project") or {}).get("optional-dependencies") or {})
    if setup_cfg is not None and setup_cfg.has_section("options.extras_require"):
        extras += list(setup_cfg["options.extras_require"])
    return list(dict.fromkeys(extras))


def _distro(pyproject: dict | None, notes: list[str]) -> str:
    """bookworm (Python 3.11) unless the project caps Python below 3.11, then bullseye (3.9)."""
    requires = str(((pyproject or {}).get("project") or {}).get("requires-python") or "")
    capped = _UNSUPPORTED_311.search(requires)
    if capped and int(capped.group(1)) <= 11:
        notes.append(f"requires-python {requires!r}: Python 3.9 (Debian bullseye)")
        return "bullseye"
    return "bookworm"


def _read_toml(path: Path, notes: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        notes.append(f"{path.name} does not parse ({exc}); read as empty")
        return {}


def _read_cfg(path: Path, notes: list[str]) -> configparser.ConfigParser | None:
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(errors="replace"))
    except configparser.Error as exc:
        notes.append(f"{path.name} does not parse ({exc}); read as empty")
        return configparser.ConfigParser()
    return parser
