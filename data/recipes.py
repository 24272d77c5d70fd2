"""Environment recipes: how to install and test a (repo, version), on our Debian images, without conda.

The facts come from the published SWE-bench specifications (`data.upstream`); they are translated, not
copied. How each field of a spec maps:

| SWE-bench spec               | patchfleet                                                                  |
| ---------------------------- | --------------------------------------------------------------------------- |
| `python: X.Y`                | `runtimes.runtime_for`: Ubuntu bionic (3.6), focal (3.8), jammy (3.10),     |
|                              | Debian bullseye (3.9), bookworm (3.11); 3.5, 3.7 and 3.12 go to the nearest |
|                              | and the recipe's `notes` say so                                             |
| base image (Ubuntu + conda)  | that base layer; the env layer adds what a spec's steps need from the       |
|                              | official base (compilers for repos that build C code, locales, wget)        |
| `ENV TZ=Etc/UTC`, no LANG    | Python 3.6's base (bionic) has exactly that, and tzdata: the POSIX locale,  |
|                              | where 3.6 reads files as ASCII (`runtimes.OFFICIAL_IMAGE_ENV`); the others  |
|                              | keep LANG=C.UTF-8, which Python >= 3.7 makes of POSIX anyway (PEP 538/540)  |
| conda's own libsqlite        | Django (`SQLITE_REPOS`): pysqlite3-binary's SQLite 3.46.1 as `sqlite3`, by  |
|  (3.45 in October 2024)      | a .pth in the venv; the distros' (3.22-3.40) made Django skip the tests of  |
|                              | window functions, RETURNING, DROP COLUMN, ...                               |
| conda env `testbed`          | a venv at /opt/venv, first on PATH, with pip 26 (needed for the date        |
|                              | cut-off below; below Python 3.9 the newest pip there is, and uv installs    |
|                              | the packages), setuptools and wheel; the system Python also sees the venv   |
|                              | (tox-current-env re-execs "the current interpreter" through a symlink)      |
| `packages: "a 'b==1'"`       | conda match specs translated to pip (`x=1.2` -> `x==1.2.*`), in the env     |
| `packages: requirements.txt` | the harness's requirements file (`MAP_REPO_TO_REQS_PATHS`) at the env setup |
|                              | commit, read from the repo source, `-r` inlined, `-e .` dropped             |
| `packages: environment.yml`  | each dependency pip-installed, best effort, the spec's pins as constraints  |
|                              | (conda-only packages are skipped and noted)                                 |
| `pip_packages`               | pip-installed last in the env layer; pins without a wheel for our Python    |
|                              | are lifted to the nearest release that has one (`runtimes.lift_pin`)       |
| (unpinned dependencies)      | resolved as of `packages_as_of` (when the official images were built: pip's |
|                              | --uploaded-prior-to, or uv's --exclude-newer below Python 3.9), not today   |
| `pre_install`                | apt-get lines: their packages go to the env layer (no `upgrade`); locale    |
|                              | setup becomes `locales locales-all`; the rest runs in the instance layer,   |
|                              | in /testbed, as one shell step (later steps use earlier steps' variables)   |
| `install`                    | instance layer, SETUPTOOLS_SCM_PRETEND_VERSION set (our one-commit repo has |
|                              | no tags to read a version from), editable installs in `compat` mode (a      |
|                              | sys.path entry, as conda-era setuptools gave; PEP 660 hooks hide the source |
|                              | tree from tools that search sys.path, such as pylint and astroid); without  |
|                              | build isolation where the backend predates PEP 660 (`needs_legacy_develop`) |
|                              | below Python 3.9, pip installs new dependencies as uv resolves them as of   |
|                              | the cut-off (PIP_CONSTRAINT, `INSTANCE_CUTOFF_REPOS` so far), here and in   |
|                              | the eval script's reinstall                                                 |
| `eval_commands`              | `eval_prelude`, run before the tests                                        |
| (git submodules)             | astropy < 4.1's astropy-helpers, which ah_bootstrap fetches from GitHub:    |
|                              | filled from the PyPI release of its commit (`astropy_env`)                  |
| (internet services)          | local stand-ins (`standins`): httpbin for requests' suites, in its own venv |
|                              | in the env layer, started by the eval prelude                               |
| `test_cmd` + directives      | `test_command(files)`; the files come from the test patch (`evalscript`)    |
| log parser                   | the `swebench` package's parser for the repo (`grading.parser_name`)        |
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from patchfleet.data import astropy_env
from patchfleet.data.dependencies import FileReader, conda_packages, environment_yml, read_requirements
from patchfleet.data.evalscript import get_test_directives
from patchfleet.data.grading import parser_name
from patchfleet.data.runtimes import Runtime, lift_pin, runtime_for
from patchfleet.data.standins import standins_for
from patchfleet.data.task import Task
from patchfleet.data.upstream import PublishedSpecs, Specs, published_specs
from patchfleet.errors import ConfigError

VENV = "/opt/venv"
# Unpinned dependencies resolve as they did when the official images were built, not as of today: pip
# >= 26 (26.0.1 is the last for Python 3.9) ignores releases uploaded after this moment, and so does uv
# (--exclude-newer) for the Pythons below 3.9. The moment is evidence, not a guess:
# benchmarks/official_env_versions.py reads the versions of pytest, its plugins, hypothesis and docutils
# printed in trajectories that ran in the official images and bounds each image's build by PyPI upload
# times. Most were built in October 2024; 2024-10-10T00:00Z lies inside the build window of 36 of the 41
# instances with evidence (2025-01-01 inside 6: it resolved hypothesis 6.123.2 where the official images
# have 6.114.0, pytest-cov 6.0.0 for 5.0.0, pytest-benchmark 5.1.0 for 4.0.0, pytest 8.3.4 for 8.3.3).
PACKAGES_AS_OF = "2024-10-10T00:00:00Z"
# (repo, version) whose official environment was built at another time, by the same evidence: every
# instance of xarray 2022.06 and 2022.09 has hypothesis 6.115.5 (uploaded 2024-10-23T22:28, next release
# 10-29), the one of 2022.03 was rebuilt between 2024-12-27 and 2025-01-06. sphinx 3.2's two instances
# disagree (one each side), so it keeps the default.
PACKAGES_AS_OF_BY_VERSION: dict[tuple[str, str], str] = {
    ("pydata/xarray", "2022.03"): "2025-01-01T00:00:00Z",
    ("pydata/xarray", "2022.06"): "2024-10-24T00:00:00Z",
    ("pydata/xarray", "2022.09"): "2024-10-24T00:00:00Z",
}
PIP = f"{VENV}/bin/python -m pip install --no-input --progress-bar off"
# Below Python 3.9 (no pip 26 there), uv installs into the venv (VIRTUAL_ENV) with UV_EXCLUDE_NEWER. uv's
# static binary comes from its PyPI wheel, fetched by the venv's own pip (the newest that runs there) for
# a Python uv supports and unpacked, so no second interpreter is needed. uv supports 3.8+ officially but
# installs into bionic's 3.6.5 without complaint (checked: benchmarks/results/python_runtimes/).
UV_VERSION = "0.13.9"
UV = "uv pip install"
UV_EXCLUDE_NEWER_NOTE = "uv --exclude-newer: pip has no date cut-off below 26, which needs Python 3.9"
UV_BOOTSTRAP = (
    # pip 9 (bionic's) has no --progress-bar and looks for pypi.python.org, which no longer resolves here
    f'{VENV}/bin/python -m pip install -q -i "${{PIP_INDEX_URL:-https://pypi.org/simple}}" --upgrade pip',
    f"{VENV}/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.8 "
    f"-d /tmp/uv-wheel 'uv=={UV_VERSION}' && "
    f"{VENV}/bin/python -m zipfile -e /tmp/uv-wheel/uv-*.whl /tmp/uv-wheel/x && "
    "install -m 755 /tmp/uv-wheel/x/uv-*.data/scripts/uv /usr/local/bin/uv && rm -rf /tmp/uv-wheel && "
    "uv --version",
)
# sets $venv_site to the venv's site-packages, where a .pth reaches every interpreter that reads the venv
VENV_SITE = f"venv_site=$({VENV}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')"
# Tools that re-exec "the current interpreter" through a symlink (tox-current-env, as sphinx's test
# command uses) land in the system Python, which knows nothing of the venv; conda's one-interpreter
# environments never had that problem. A .pth in the system site dir appends the venv's packages there.
SYSTEM_PYTHON_SEES_VENV = (
    f"{VENV_SITE} && "
    "system_site=$(/usr/bin/python3 -c 'import site; print(site.getsitepackages()[0])') && "
    'mkdir -p "$system_site" && '
    'echo "import site; site.addsitedir(\'$venv_site\')" > "$system_site/patchfleet-venv.pth"'
)
# Django's test suite runs on SQLite and skips tests by the library's version (window functions from 3.25,
# RETURNING from 3.35, DROP COLUMN from 3.35.5, ...); a skipped test is neither failure nor success to the
# grader. The official conda envs link conda's own libsqlite (3.45 in October 2024), our distro Pythons the
# distro's (3.22 on bionic up to 3.40 on bookworm), so a candidate that breaks a gated feature would pass
# here and fail there. pysqlite3-binary bundles a recent SQLite (0.5.3.post1, the last release before
# PACKAGES_AS_OF: SQLite 3.46.1, manylinux wheels cp36 to cp312), and a .pth in the venv makes it the
# `sqlite3` module (and `sqlite3.dbapi2`, which Django imports) of every interpreter that reads the venv.
# benchmarks/env_parity.py measures the versions and Django's feature flags before and after.
SQLITE_REPOS = frozenset({"django/django"})
PYSQLITE3 = "pysqlite3-binary==0.5.3.post1"
SQLITE_MIN = (3, 45)  # the build fails if the alias does not give at least this
SQLITE_ALIAS = (
    "import sys, pysqlite3, pysqlite3.dbapi2; "
    'sys.modules["sqlite3"] = pysqlite3; sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2'
)
SQLITE_PTH = "patchfleet-sqlite3.pth"


def sqlite_steps(install_with: str = PIP) -> tuple[str, ...]:
    """Env steps that give the venv's `sqlite3` the SQLite of `PYSQLITE3` (see `SQLITE_REPOS`)."""
    check = (
        'import sqlite3, sys; print("sqlite3:", sqlite3.sqlite_version); '
        f"sys.exit(sqlite3.sqlite_version_info < {SQLITE_MIN})"
    )
    return (
        f"{install_with} {shlex.quote(PYSQLITE3)}",
        f"{VENV_SITE} && "
        f'echo {shlex.quote(SQLITE_ALIAS)} > "$venv_site/{SQLITE_PTH}" && '
        f"{VENV}/bin/python -c {shlex.quote(check)}",
    )


# Below Python 3.9 the instance's own install (`pip install -e .`, rerun by the eval script) runs the venv's
# pip, which has no date cut-off: a dependency the env layer lacks would come as of today. Before it, uv
# resolves the project (its metadata built with the env's packages, which stay as they are) as of the
# cut-off, and pip gets the result as constraints (PIP_CONSTRAINT), the file kept in the image so that the
# eval script's reinstall uses it too. If uv cannot resolve the project the file stays empty and the build
# log says so: the install then runs as before. Only these repositories so far (the others' images are in
# use by a running batch; they should follow).
INSTANCE_CUTOFF_REPOS = frozenset(
    {"django/django", "scikit-learn/scikit-learn", "matplotlib/matplotlib", "astropy/astropy"}
)
INSTANCE_CONSTRAINTS = f"{VENV}/patchfleet-constraints.txt"
_EDITABLE_TARGET = re.compile(
    r"""(?:^|\s)(?:-e|--editable)\s+["']?\.(?P<extras>\[[^\]\s"']*\])?["']?(?:\s|$)"""
)
_PINNED_LINE = "^[A-Za-z0-9][A-Za-z0-9._-]*=="


def instance_constraints_step(install: str) -> str | None:
    """The instance step that writes `INSTANCE_CONSTRAINTS` for a pip editable install of the repository
    (see `INSTANCE_CUTOFF_REPOS`); None for installs that are not one (`setup.py install`, ...)."""
    match = _EDITABLE_TARGET.search(install)
    if " pip install " not in f" {install} " or match is None:
        return None
    project = shlex.quote(match["extras"] or "")
    return (
        f'echo "$PWD"{project} > /tmp/pf-project.in && '
        f"uv pip freeze | grep -E '{_PINNED_LINE}' > /tmp/pf-env.txt || true\n"
        "if uv pip compile --quiet --no-header --no-annotate --no-build-isolation -c /tmp/pf-env.txt "
        "/tmp/pf-project.in -o /tmp/pf-resolved.txt; then\n"
        f"  grep -E '{_PINNED_LINE}' /tmp/pf-resolved.txt > {INSTANCE_CONSTRAINTS} || true\n"
        "else\n"
        f"  : > {INSTANCE_CONSTRAINTS}\n"
        "  echo 'patchfleet: uv could not resolve the project as of the cut-off; install unconstrained'\n"
        "fi\n"
        f"rm -f /tmp/pf-project.in /tmp/pf-env.txt /tmp/pf-resolved.txt && cat {INSTANCE_CONSTRAINTS}"
    )


# Repositories whose install compiles C/Cython code: the official base image has build-essential.
COMPILES_C = {"astropy/astropy", "scikit-learn/scikit-learn", "matplotlib/matplotlib"}
COMPILER_PACKAGES = ("build-essential", "python3-dev", "pkg-config")
LOCALE_PACKAGES = ("locales", "locales-all")
_APT_INSTALL = re.compile(r"apt-get\s+(?:-\S+\s+)*install\s+(?P<args>[^&|;]+)")
_SYSTEM_STEP = re.compile(r"^\s*(apt-get|(DEBIAN_FRONTEND=\S+\s+)?apt-get|locale-gen|echo .*>\s*/etc/)")


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
    runtime_python: str = ""  # the interpreter it really gets ("" in hand-written recipes: = python)
    system_packages: tuple[str, ...] = ()
    install: str = ""  # the install command as run in the instance layer (the eval script reruns it)
    origin: str = ""  # which publication of the specs this was translated from

    @property
    def key(self) -> str:
        return f"{self.repo.replace('/', '__')}-{self.version}"

    def test_command(self, test_files: list[str]) -> str:
        return " ".join([self.test_cmd, *(shlex.quote(f) for f in test_files)])


def load_specs(extra: Path | None = None) -> Specs:
    """The published specs, with the (repo, version) entries of a user's JSON file laid over them."""
    specs = {repo: dict(versions) for repo, versions in published_specs().specs.items()}
    if extra is not None:
        try:
            added = json.loads(extra.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read recipe specs from {extra}: {exc}") from exc
        if not isinstance(added, dict):
            raise ConfigError(f"{extra}: expected {{repo: {{version: spec}}}}")
        for repo, versions in added.items():
            specs.setdefault(repo, {}).update(versions)
    return specs


def spec_for(repo: str, version: str, specs: Specs | None = None) -> dict[str, Any]:
    """The published spec of (repo, version); ConfigError naming both when there is none."""
    spec = (specs if specs is not None else published_specs().specs).get(repo, {}).get(version)
    if spec is None:
        raise ConfigError(f"no environment recipe for {repo} {version}")
    return spec


def runtime_of(repo: str, version: str, specs: Specs | None = None) -> Runtime:
    """The interpreter and image of (repo, version), without reading anything from the repository."""
    return runtime_for(str(spec_for(repo, version, specs).get("python", "3.9")))


def packages_as_of(repo: str, version: str) -> str:
    """The moment the environment of (repo, version) resolves its unpinned packages as of."""
    return PACKAGES_AS_OF_BY_VERSION.get((repo, version), PACKAGES_AS_OF)


def installer(runtime: Runtime) -> str:
    """The install command of the environment layer: pip 26 where it runs, else uv (see UV_BOOTSTRAP)."""
    return PIP if runtime.installer == "pip" else UV


def recipe_for(task: Task, source: FileReader | None = None, specs: Specs | None = None) -> Recipe:
    """The recipe of a task's (repo, version); `source` reads requirements files when the spec needs them."""
    published = published_specs()
    spec = spec_for(task.repo, task.version, specs)
    runtime = runtime_for(str(spec.get("python", "3.9")))
    install_with = installer(runtime)
    as_of = packages_as_of(task.repo, task.version)
    notes = [runtime.note] if runtime.note else []
    system, pre_install, system_notes = _split_pre_install(spec)
    notes += system_notes
    if task.repo in COMPILES_C:
        system = [*system, *COMPILER_PACKAGES]
    if any("locale" in step for step in spec.get("eval_commands", ())):
        system = [*system, *LOCALE_PACKAGES]
    system = list(dict.fromkeys(system))

    if runtime.installer == "pip":
        env_steps = [f"python3 -m venv {VENV}", f"{PIP} --upgrade 'pip>=26'"]
        date_cap = ("PIP_UPLOADED_PRIOR_TO", as_of)
    else:
        env_steps = [f"python3 -m venv {VENV}", *UV_BOOTSTRAP]
        date_cap = ("UV_EXCLUDE_NEWER", as_of)
        instance = (
            "pip, constrained to what uv resolves as of the same date"
            if task.repo in INSTANCE_CUTOFF_REPOS
            else "the venv's pip, which has no date cut-off"
        )
        notes.append(
            f"Python {runtime.python}: uv installs the environment ({UV_EXCLUDE_NEWER_NOTE}); the "
            f"instance's own install runs {instance}"
        )
    if system:
        env_steps.insert(
            0,
            "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
            f"--no-install-recommends {' '.join(system)} && rm -rf /var/lib/apt/lists/*",
        )
    env_steps += [f"{install_with} --upgrade setuptools wheel", SYSTEM_PYTHON_SEES_VENV]
    env_steps += _dependency_steps(task, spec, source, published, runtime, notes, install_with)
    if spec.get("pip_packages"):
        pins = [_lift(p, runtime, notes) for p in spec["pip_packages"]]
        before, flags = astropy_env.old_sdist_build(task.repo, pins, runtime)
        env_steps.append(before + f"{install_with} " + " ".join([*flags, *(shlex.quote(p) for p in pins)]))
    if astropy_env.builds_in_env(task.repo, task.version, runtime):
        build_tools = astropy_env.setup_requires(spec.get("pip_packages", []))
        env_steps.append(f"{install_with} " + " ".join(shlex.quote(p) for p in build_tools))
        notes.append("astropy-helpers era: built in the env, setup.py's Cython and Jinja2 installed in it")
    if task.repo in SQLITE_REPOS:
        env_steps += sqlite_steps(install_with)
        notes.append(f"SQLite as recent as the official env's conda libsqlite: {PYSQLITE3} as sqlite3")
    standins = standins_for(task.repo)
    env_steps += [step for standin in standins for step in standin.env_steps]
    notes += [standin.note for standin in standins]

    install = _install_command(task, spec, published, source, runtime)
    test_cmd = spec.get("test_cmd")
    if not test_cmd:
        raise ConfigError(f"the spec of {task.repo} {task.version} has no test_cmd")
    if astropy_env.uses_helpers(task.repo, task.version):
        pre_install = [astropy_env.fill_helpers_step(), *pre_install]
        notes.append("astropy-helpers submodule filled from its PyPI release (GitHub is not reachable)")
    constrain = None
    if runtime.installer == "uv" and task.repo in INSTANCE_CUTOFF_REPOS and install:
        constrain = instance_constraints_step(install)
        if constrain is not None:
            install = f"PIP_CONSTRAINT={INSTANCE_CONSTRAINTS} {install}"
    # one step, so that later lines see earlier lines' shell variables (matplotlib's QHULL_*); the image
    # builder runs each step under `set -e`, so a failing line still fails the step
    instance_steps = [
        *(["\n".join(pre_install)] if pre_install else []),
        *([constrain] if constrain else []),
        *([install] if install else []),
    ]
    return Recipe(
        repo=task.repo,
        version=task.version,
        distro=runtime.distro,
        python=runtime.wanted,
        runtime_python=runtime.python,
        env_steps=tuple(env_steps),
        env_vars=(
            ("PATH", f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ("VIRTUAL_ENV", VENV),
            date_cap,
        ),
        instance_steps=tuple(instance_steps),
        install=install,
        test_cmd=test_cmd if isinstance(test_cmd, str) else " ".join(test_cmd),
        parser=parser_name(task.repo),
        eval_prelude=(
            *spec.get("eval_commands", ()),
            *(line for standin in standins for line in standin.start),
        ),
        system_packages=tuple(system),
        notes=tuple(dict.fromkeys(notes)),
        origin=published.origin,
    )


def _dependency_steps(
    task: Task,
    spec: dict[str, Any],
    source: FileReader | None,
    published: PublishedSpecs,
    runtime: Runtime,
    notes: list[str],
    install_with: str = PIP,
) -> list[str]:
    packages = spec.get("packages") or ""
    commit = task.environment_setup_commit or task.base_commit
    if packages == "requirements.txt":
        if source is None:
            raise ConfigError(f"{task.repo} {task.version} needs its requirements file: pass a repo source")
        paths = published.requirements_paths.get(task.repo, ("requirements.txt",))
        requirements = read_requirements(source, task.repo, commit, paths, runtime.python)
        notes.extend(requirements.notes)
        return [
            f"cat > /tmp/requirements.txt <<'PATCHFLEET_EOF'\n{requirements.text()}PATCHFLEET_EOF",
            f"{install_with} -r /tmp/requirements.txt && rm /tmp/requirements.txt",
        ]
    if packages == "environment.yml":
        if source is None:
            raise ConfigError(f"{task.repo} {task.version} needs its environment.yml: pass a repo source")
        paths = published.environment_yml_paths.get(task.repo, ("environment.yml",))
        text = next((t for p in paths if (t := source.read_file(task.repo, commit, p)) is not None), None)
        if text is None:
            raise ConfigError(f"no environment.yml for {task.repo} at {commit} (tried {', '.join(paths)})")
        wanted = environment_yml(text, f"{task.repo}@{commit}", runtime.python)
        notes.extend(wanted.notes)
        notes.append(f"environment.yml translated to pip, best effort ({len(wanted.lines)} packages)")
        pins = "".join(f"{_lift(p, runtime, notes)}\n" for p in spec.get("pip_packages", ()))
        # one by one and best effort: a package pip cannot install must not sink the environment,
        # and the spec's pins (constraints here, installed last) always win
        return [
            f"cat > /tmp/constraints.txt <<'PATCHFLEET_EOF'\n{pins}PATCHFLEET_EOF",
            *(
                f"timeout 600 {install_with} -c /tmp/constraints.txt {shlex.quote(name)} "
                f"|| echo 'patchfleet: skipped {name} (not installable with pip here)'"
                for name in wanted.lines
            ),
        ]
    if packages:
        wanted = conda_packages(packages, runtime.python)
        notes.extend(wanted.notes)
        return [f"{install_with} " + " ".join(shlex.quote(p) for p in wanted.lines)] if wanted.lines else []
    return []


def _install_command(
    task: Task,
    spec: dict[str, Any],
    published: PublishedSpecs,
    source: FileReader | None = None,
    runtime: Runtime | None = None,
) -> str:
    parts = (published.repo_install.get(task.repo, ""), spec.get("install", ""))
    install = " && ".join(x for x in parts if x)
    if not install:
        return ""
    # pip 21.3 (the last for Python 3.6) has no --config-settings, and needs none: the setuptools there
    # (59.6) predates PEP 660, so its editable installs are `setup.py develop`, the old way
    old_pip = runtime is not None and runtime.python == "3.6"
    if " -e " in f"{install} " and "--no-use-pep517" not in install and not old_pip:
        install += " --config-settings editable_mode=compat"
        if (source is not None and needs_legacy_develop(source, task.repo, task.base_commit)) or (
            runtime is not None and astropy_env.builds_in_env(task.repo, task.version, runtime)
        ):
            install += " --no-build-isolation"
    # harmless for repositories that do not use setuptools-scm, needed by those that do
    return f"SETUPTOOLS_SCM_PRETEND_VERSION={shlex.quote(scm_version(task.version))} {install}"


# setuptools releases with PEP 660 editable installs (64.0 onwards), enough to test a pin against
PEP_660_SETUPTOOLS = [
    f"{major}.{minor}.{patch}" for major in range(64, 81) for minor in range(10) for patch in (0, 1, 2)
]


def needs_legacy_develop(source: FileReader, repo: str, commit: str) -> bool:
    """Whether a commit pins its build backend below PEP 660 (setuptools < 64) and has no setup.py.

    Conda-era pip installed such a project editable through `setup.py develop` with the environment's
    setuptools; pip 26 refuses ("missing the 'build_editable' hook"). Building without isolation, with
    the environment's recent setuptools, is the same thing done by hand (pylint 2.15 needs it).
    """
    text = source.read_file(repo, commit, "pyproject.toml")
    if text is None or source.read_file(repo, commit, "setup.py") is not None:
        return False
    try:
        requires = tomllib.loads(text).get("build-system", {}).get("requires", [])
    except tomllib.TOMLDecodeError:
        return False
    for line in requires:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.name == "setuptools" and requirement.specifier:
            return not any(requirement.specifier.contains(v) for v in PEP_660_SETUPTOOLS)
    return False


def _split_pre_install(spec: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(apt packages for the env layer, repository steps for the instance layer, notes)."""
    system: list[str] = []
    steps: list[str] = []
    notes: list[str] = []
    for step in spec.get("pre_install", ()):
        step = step.replace("&& &&", "&&")  # a typo in a published spec that no shell accepts
        if not _SYSTEM_STEP.match(step):
            steps.append(step)
            continue
        for match in _APT_INSTALL.finditer(step):
            system.extend(a for a in match["args"].split() if not a.startswith("-"))
        if "locale" in step:
            system.extend(LOCALE_PACKAGES)
            notes.append("locale setup replaced by Debian's locales-all")
        if "upgrade" in step:
            notes.append("apt-get upgrade dropped (layers must not depend on the day they were built)")
    return system, steps, notes


def _lift(requirement: str, runtime: Runtime, notes: list[str]) -> str:
    lifted, note = lift_pin(requirement, runtime.python)
    if note:
        notes.append(note)
    return lifted


def scm_version(version: str) -> str:
    """A PEP 440 version for setuptools-scm from a SWE-bench version string ("5.4" -> "5.4.0")."""
    return version if re.fullmatch(r"\d+\.\d+\.\d+", version) else f"{version}.0"


def touched_test_files(repo: str, test_patch: str) -> list[str]:
    """The harness's test directives for a test patch (evaluation only; see `evalscript`)."""
    return get_test_directives(repo, test_patch)
