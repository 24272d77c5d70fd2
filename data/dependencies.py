"""A spec's dependency lists, turned into pip requirements: conda package strings, environment.yml files
and requirements files (read from the upstream repository at the environment setup commit).

The readings follow `swebench/harness/test_spec/python.py` (4.1.0): the same files in the same order,
`-r` includes inlined ahead of the file's own lines, editable self-installs dropped, yanked packages
replaced. Conda-only packages (the interpreter, C libraries) have no pip equivalent and are skipped.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Protocol

import yaml

from patchfleet.data.runtimes import lift_pin
from patchfleet.errors import ConfigError

# (yanked from PyPI, replacement), as the harness's REPLACE_REQ_PACKAGES
REPLACE_REQ_PACKAGES = (("types-pkg_resources", "types-setuptools"),)
CONDA_TO_PIP = {
    "matplotlib-base": "matplotlib",
    "dask-core": "dask",
    "iris": "scitools-iris",
    "pseudonetcdf": "PseudoNetCDF",
    "pytables": "tables",
}
# the interpreter and C libraries conda installs as packages; Debian or the wheels provide them instead
CONDA_ONLY = {"python", "pip", "hdf5", "cdms2", "libnetcdf", "nodejs", "cudatoolkit", "mkl"}
_EXCLUDED_PREFIXES = ("-e .", "#", ".[test")


class FileReader(Protocol):
    """The part of a repository source that recipes need (see `data.sources`)."""

    def read_file(self, repo: str, commit: str, path: str) -> str | None: ...


@dataclass(frozen=True)
class Requirements:
    """pip requirement lines, and what the translation had to change to get them."""

    lines: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def read_requirements(
    source: FileReader, repo: str, commit: str, paths: tuple[str, ...], python: str
) -> Requirements:
    """The first of `paths` that exists at `commit`, read as the harness reads it."""
    for path in paths:
        text = source.read_file(repo, commit, path)
        if text is not None:
            break
    else:
        raise ConfigError(f"no requirements file for {repo} at {commit} (tried {', '.join(paths)})")
    folder = path.rpartition("/")[0]
    included: list[str] = []
    own: list[str] = []
    for line in text.split("\n"):
        if line.strip().startswith("-r"):
            name = line.strip()[2:].strip()
            extra = source.read_file(repo, commit, f"{folder}/{name}" if folder else name)
            included.extend(x for x in (extra or "").split("\n") if not _excluded(x))
        elif not _excluded(line):
            own.append(line)
    return _lifted([*included, *own], python)


def conda_packages(packages: str, python: str) -> Requirements:
    """The space-separated conda package list of a spec (`"numpy scipy 'cython==3.0.10'"`) for pip."""
    wanted = [pip for token in shlex.split(packages) if (pip := conda_to_pip(token)) is not None]
    return _lifted(wanted, python)


def environment_yml(text: str, where: str, python: str) -> Requirements:
    """The dependencies of a conda environment.yml, its `pip:` section included, as pip requirements."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from exc
    dependencies = document.get("dependencies") if isinstance(document, dict) else None
    if not isinstance(dependencies, list):
        raise ConfigError(f"{where}: an environment.yml needs a `dependencies` list")
    wanted: list[str] = []
    skipped: list[str] = []
    for item in dependencies:
        if isinstance(item, dict):
            wanted.extend(_replace_yanked(str(x)) for x in item.get("pip", []))
        elif (pip := conda_to_pip(str(item))) is not None:
            wanted.append(pip)
        elif str(item).split("=")[0].strip() not in {"python", "pip"}:
            skipped.append(str(item))
    lifted = _lifted(wanted, python)
    notes = (f"conda-only, skipped: {', '.join(skipped)}",) if skipped else ()
    return Requirements(lifted.lines, lifted.notes + notes)


def conda_to_pip(token: str) -> str | None:
    """One conda match spec as a pip requirement; None for conda-only packages.

    conda's `x=1.2` means any 1.2.x (pip: `x==1.2.*`), `x=1.2=build` pins a build (dropped); comparison
    operators mean the same in both.
    """
    token = token.strip().split("::")[-1]
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", token)
    if match is None:
        return token
    name, spec = match[1], match[2].replace(" ", "")
    if name.lower() in CONDA_ONLY:
        return None
    name = CONDA_TO_PIP.get(name.lower(), name)
    if spec.startswith("=") and not spec.startswith("=="):
        version = spec[1:].split("=")[0]
        if not version:
            return name
        exact = version.endswith("*") or version.count(".") >= 2
        return f"{name}=={version}" if exact else f"{name}=={version}.*"
    return f"{name}{spec}"


def _lifted(lines: list[str], python: str) -> Requirements:
    out: list[str] = []
    notes: list[str] = []
    for line in lines:
        lifted, note = lift_pin(_replace_yanked(line), python)
        out.append(lifted)
        if note:
            notes.append(note)
    return Requirements(tuple(out), tuple(notes))


def _replace_yanked(line: str) -> str:
    for yanked, replacement in REPLACE_REQ_PACKAGES:
        # like the harness: the replacement drops the yanked package's version specifier
        line = re.sub(rf"^{re.escape(yanked)}([<>=!~]=?.*|$)", replacement, line)
    return line


def _excluded(line: str) -> bool:
    return line.strip().startswith(_EXCLUDED_PREFIXES)
