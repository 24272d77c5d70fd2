"""Environment recipes: how to install and test a (repo, version), on our Debian images, without conda.

The facts (Python version, pinned packages, pre-install and install commands, test command) come from
the published SWE-bench specifications (`specs/swebench_python.json`). They are translated, not copied:

| SWE-bench spec            | patchfleet                                                               |
| ------------------------- | ------------------------------------------------------------------------ |
| `python: 3.9`             | Debian bullseye (3.9). 3.10 and 3.8 also map to 3.9: Debian has neither, |
|                           | and the pinned wheels of those specs all exist for 3.9; 3.11 -> bookworm |
| conda env `testbed`       | a venv at /opt/venv, first on PATH (env layer), with an up-to-date pip;  |
|                           | the system Python also sees its packages (tox-current-env re-execs it)   |
| `packages: "a b"` (conda) | `pip install a b` in the env layer                                       |
| `packages: requirements`  | the repo's requirements file at the environment setup commit, `-r`       |
|                           | includes resolved, `-e .` lines dropped (as the harness does)            |
| `packages: environment.yml` | each dependency pip-installed, best effort, under the pins as        |
|                           | constraints (conda-only packages are skipped and logged)                 |
| `pip_packages`            | `pip install` in the env layer                                           |
| (unpinned dependencies)   | resolved as of PACKAGES_AS_OF (pip's --uploaded-prior-to), not today     |
| `pre_install`, `install`  | instance layer, in /testbed, SETUPTOOLS_SCM_PRETEND_VERSION set, and     |
|                           | editable installs in `compat` mode (a sys.path entry, as conda-era gave) |
|                           | (our one-commit repository has no tags for setuptools-scm to read)       |
| `test_cmd` + directives   | run by the evaluator on the test files the test patch touches            |
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from swebench.harness.constants import NON_TEST_EXTS

from patchfleet.data.grading import parser_name
from patchfleet.data.sources import RepoSource
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError

VENV = "/opt/venv"
DISTRO_FOR_PYTHON = {"3.8": "bullseye", "3.9": "bullseye", "3.10": "bullseye", "3.11": "bookworm"}
REQUIREMENTS_PATHS = {"pylint-dev/pylint": ("requirements_test.txt",)}
SCM_VERSIONED = {
    "pytest-dev/pytest",
    "pydata/xarray",
    "pylint-dev/pylint",
    "mwaskom/seaborn",
    "astropy/astropy",
    "matplotlib/matplotlib",
    "pvlib/pvlib-python",
    "pydicom/pydicom",
}


# Unpinned dependencies resolve as they did when the official images were built, not as of today:
# pip >= 26 ignores releases uploaded after this moment (the upgraded pip of every env honours it).
PACKAGES_AS_OF = "2025-01-01T00:00:00Z"

# Tools that re-exec "the current interpreter" through a symlink (tox-current-env, as sphinx's test
# command uses) land in the system Python, which knows nothing of the venv; conda's one-interpreter
# environments never had that problem. A .pth in the system site dir appends the venv's packages there.
SYSTEM_PYTHON_SEES_VENV = (
    f"venv_site=$({VENV}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])') && "
    "system_site=$(/usr/bin/python3 -c 'import site; print(site.getsitepackages()[0])') && "
    'mkdir -p "$system_site" && '
    'echo "import site; site.addsitedir(\'$venv_site\')" > "$system_site/patchfleet-venv.pth"'
)


@dataclass(frozen=True)
class Recipe:
    """Everything needed to build and test one (repo, version)."""

    repo: str
    version: str
    distro: str
    python: str  # what the upstream spec asked for (kept for reports)
    env_steps: tuple[str, ...]
    env_vars: tuple[tuple[str, str], ...]
    instance_steps: tuple[str, ...]
    test_cmd: str
    parser: str
    eval_prelude: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.repo.replace('/', '__')}-{self.version}"

    def test_command(self, test_files: list[str]) -> str:
        return " ".join([self.test_cmd, *(shlex.quote(f) for f in test_files)])


@cache
def swebench_specs() -> dict[str, dict[str, dict]]:
    text = resources.files("patchfleet.data").joinpath("specs/swebench_python.json").read_text()
    return json.loads(text)


def _requirements(source: RepoSource, repo: str, commit: str) -> str:
    """The harness's reading of a requirements file: `-r` includes inlined, editable self-installs dropped."""
    for path in REQUIREMENTS_PATHS.get(repo, ("requirements.txt",)):
        text = source.read_file(repo, commit, path)
        if text is None:
            continue
        folder = path.rpartition("/")[0]
        lines: list[str] = []
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("-r"):
                included = source.read_file(repo, commit, f"{folder}/{stripped[2:].strip()}".lstrip("/"))
                lines.extend(x for x in (included or "").splitlines() if not _excluded(x))
            elif not _excluded(line):
                lines.append(line)
        return "\n".join(lines) + "\n"
    raise ConfigError(f"no requirements file for {repo} at {commit} (tried {REQUIREMENTS_PATHS.get(repo)})")


CONDA_TO_PIP = {"matplotlib-base": "matplotlib", "iris": "scitools-iris", "pseudonetcdf": "PseudoNetCDF"}
CONDA_ONLY = {"python", "pip", "hdf5", "cdms2", "libnetcdf", "nodejs"}
ENV_YML_PATHS = ("ci/requirements/environment.yml", "environment.yml")


def _conda_environment(source: RepoSource, repo: str, commit: str) -> list[str]:
    """pip requirement strings for the dependencies of a conda environment.yml (pip section included)."""
    for path in ENV_YML_PATHS:
        text = source.read_file(repo, commit, path)
        if text is not None:
            break
    else:
        raise ConfigError(f"no environment.yml for {repo} at {commit} (tried {ENV_YML_PATHS})")
    try:
        dependencies = (yaml.safe_load(text) or {}).get("dependencies") or []
    except yaml.YAMLError as exc:
        raise ConfigError(f"{repo}@{commit}:{path} is not valid YAML: {exc}") from exc
    wanted: list[str] = []
    for item in dependencies:
        if isinstance(item, dict):
            wanted.extend(str(x) for x in item.get("pip", []))
            continue
        name, _, rest = str(item).partition("=")
        name = name.strip().split("::")[-1]
        if name.lower() in CONDA_ONLY:
            continue
        name = CONDA_TO_PIP.get(name, name)
        # conda's `x=1.2` is pip's `x==1.2.*`; ranges (`>=`) pass through unchanged
        if rest and not rest.startswith("="):
            wanted.append(f"{name}=={rest}.*" if rest[0].isdigit() else name)
        elif rest:
            wanted.append(f"{name}={rest}")
        else:
            wanted.append(name)
    return wanted


def _excluded(line: str) -> bool:
    return line.strip().startswith(("-e .", "#", ".[test"))


def load_specs(extra: Path | None = None) -> dict[str, dict[str, dict]]:
    """The published specs, with the (repo, version) entries of a user's JSON file laid over them."""
    specs = {repo: dict(versions) for repo, versions in swebench_specs().items()}
    if extra is not None:
        try:
            added = json.loads(extra.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read recipe specs from {extra}: {exc}") from exc
        for repo, versions in added.items():
            specs.setdefault(repo, {}).update(versions)
    return specs


def recipe_for(
    task: Task, source: RepoSource | None = None, specs: dict[str, dict[str, dict]] | None = None
) -> Recipe:
    """The recipe of a SWE-bench task's (repo, version); `source` reads requirements files when needed."""
    spec = (specs or swebench_specs()).get(task.repo, {}).get(task.version)
    if spec is None:
        raise ConfigError(f"no environment recipe for {task.repo} {task.version}")
    python = str(spec.get("python", "3.9"))
    distro = DISTRO_FOR_PYTHON.get(python)
    if distro is None:
        raise ConfigError(f"{task.repo} {task.version} wants Python {python}, which no Debian base provides")
    pip = f"{VENV}/bin/python -m pip install --no-input --progress-bar off"
    env_steps = [f"python3 -m venv {VENV}", f"{pip} --upgrade pip", SYSTEM_PYTHON_SEES_VENV]
    notes = []
    if python != {"bullseye": "3.9", "bookworm": "3.11"}[distro]:
        notes.append(f"upstream asks for Python {python}; built on {distro}")
    packages = spec.get("packages")
    if packages == "requirements.txt":
        if source is None:
            raise ConfigError(f"{task.repo} {task.version} needs its requirements file: pass a repo source")
        commit = task.environment_setup_commit or task.base_commit
        requirements = _requirements(source, task.repo, commit)
        env_steps.append(f"cat > /tmp/requirements.txt <<'PATCHFLEET_EOF'\n{requirements}PATCHFLEET_EOF")
        env_steps.append(f"{pip} -r /tmp/requirements.txt && rm /tmp/requirements.txt")
    elif packages == "environment.yml":
        if source is None:
            raise ConfigError(f"{task.repo} {task.version} needs its environment.yml: pass a repo source")
        commit = task.environment_setup_commit or task.base_commit
        wanted = _conda_environment(source, task.repo, commit)
        pins = "\n".join(spec.get("pip_packages", ())) + "\n"
        env_steps.append(f"cat > /tmp/constraints.txt <<'PATCHFLEET_EOF'\n{pins}PATCHFLEET_EOF")
        # conda packages one by one and best effort: a conda-only package must not sink the environment,
        # and the spec's pins (installed after, and as constraints here) always win
        env_steps.extend(
            f"timeout 600 {pip} -c /tmp/constraints.txt {shlex.quote(name)} "
            f"|| echo 'patchfleet: skipped {name} (not installable with pip here)'"
            for name in wanted
        )
        notes.append(f"environment.yml translated to pip, best effort ({len(wanted)} packages)")
    elif packages:
        env_steps.append(f"{pip} {packages}")
    if spec.get("pip_packages"):
        env_steps.append(f"{pip} " + " ".join(shlex.quote(p) for p in spec["pip_packages"]))
    scm = f"SETUPTOOLS_SCM_PRETEND_VERSION={shlex.quote(_scm_version(task.version))} "
    install = spec.get("install", "")
    if " -e " in f"{install} ":
        # a path entry on sys.path, as conda-era setuptools gave; PEP 660 import hooks hide the source
        # tree from tools that search sys.path themselves (pylint, astroid)
        install += " --config-settings editable_mode=compat"
    instance_steps = [*spec.get("pre_install", ()), *([scm + install] if install else [])]
    if task.repo not in SCM_VERSIONED:
        instance_steps = [step.removeprefix(scm) for step in instance_steps]
    return Recipe(
        repo=task.repo,
        version=task.version,
        distro=distro,
        python=python,
        env_steps=tuple(env_steps),
        env_vars=(
            ("PATH", f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ("VIRTUAL_ENV", VENV),
            ("PIP_UPLOADED_PRIOR_TO", PACKAGES_AS_OF),
        ),
        instance_steps=tuple(instance_steps),
        test_cmd=spec["test_cmd"] if isinstance(spec["test_cmd"], str) else " ".join(spec["test_cmd"]),
        parser=parser_name(task.repo),
        eval_prelude=tuple(spec.get("eval_commands", ())),
        notes=tuple(notes),
    )


def _scm_version(version: str) -> str:
    return version if re.fullmatch(r"\d+\.\d+\.\d+", version) else f"{version}.0"


def touched_test_files(repo: str, test_patch: str) -> list[str]:
    """The test files a test patch touches, as the official harness selects them (evaluation only)."""
    files = re.findall(r"diff --git a/.* b/(.*)", test_patch)
    files = [f for f in files if not f.endswith(tuple(NON_TEST_EXTS))]
    if repo == "django/django":
        files = [f.removesuffix(".py").removeprefix("tests/").replace("/", ".") for f in files]
    return files
