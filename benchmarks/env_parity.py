"""Do our environments give tests what the official images give them? SQLite and the locale, measured.

Django's suite runs on SQLite and skips tests by the library's version; the official conda envs link
conda's libsqlite (3.45 in October 2024), our distro Pythons the distro's. For each interpreter Django's
Verified versions run on (3.0-3.2 on 3.6, 4.0 on 3.8, 4.1-4.2 on 3.9, 5.0 on 3.11), in a bare base image
plus a venv made as the recipe makes it, this records before and after the recipe's SQLite steps
(`recipes.sqlite_steps`): the SQLite version, its compile options, the version-gated feature flags of
the Django release of each spec version (pip-installed under the recipe's date cut-off), and the tests
run and skipped by a few of that release's own test modules (from its PyPI sdist, which ships `tests/`).
It also records each base image's preferred encoding, the locale fix of Python 3.6 (`runtimes.Distro`;
`--old-bionic TAG` names a bionic base built before it, to measure that one too), and what the instance's
own pip install of a small project resolves below Python 3.9 without and with the date cut-off of
`recipes.instance_constraints_step`. `--parts` measures some of these and merges them into --out.

    python benchmarks/env_parity.py --out benchmarks/results/env_parity/env_parity.json \\
        [--parts sqlite encodings cutoff] [--old-bionic patchfleet/base:bionic-b3d8a81268b1a520] \\
        [--pythons 3.6 3.8] [--modules ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

from patchfleet.data.recipes import (
    INSTANCE_CONSTRAINTS,
    PACKAGES_AS_OF,
    PYSQLITE3,
    SQLITE_REPOS,
    UV,
    UV_BOOTSTRAP,
    VENV,
    installer,
    instance_constraints_step,
    recipe_for,
    sqlite_steps,
)
from patchfleet.data.runtimes import runtime_for
from patchfleet.data.task import Task
from patchfleet.data.upstream import published_specs
from patchfleet.sandbox.base import SandboxSpec
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import BaseLayer, ImageBuilder, ImageSpec, unbounded_spec
from patchfleet.sandbox.trust import HostTrust

DJANGO = "django/django"
VERIFIED_VERSIONS = ("3.0", "3.1", "3.2", "4.0", "4.1", "4.2", "5.0")
MODULES = ("expressions_window", "migrations.test_operations", "backends.sqlite")
# conda's defaults channel in October 2024 (the brief of issue 13; not measurable here: no conda)
OFFICIAL_SQLITE = "3.45.3"

# Runs in the container's venv Python (3.6 and up): what the interpreter and its sqlite3 are.
RUNTIME_PROBE = r"""
import json, locale, os, sys, time, sqlite3
con = sqlite3.connect(":memory:")
options = [row[0] for row in con.execute("PRAGMA compile_options")]
tmp = "/tmp/pf-utf8.txt"
with open(tmp, "wb") as f:
    f.write("caf\u00e9\n".encode("utf-8"))
try:
    with open(tmp) as f:
        f.read()
    reads_utf8 = True
except UnicodeDecodeError:
    reads_utf8 = False
print(json.dumps({
    "python": sys.version.split()[0],
    "sqlite_version": sqlite3.sqlite_version,
    "sqlite3_module": sqlite3.__name__,
    "compile_options": options,
    "preferred_encoding": locale.getpreferredencoding(),
    "filesystem_encoding": sys.getfilesystemencoding(),
    "open_reads_non_ascii_utf8": reads_utf8,
    "LANG": os.environ.get("LANG"),
    "TZ": os.environ.get("TZ"),
    "tzname": list(time.tzname),
}))
"""

# The feature flags of Django's SQLite backend whose definition reads the SQLite version.
FLAGS_PROBE = r"""
import inspect, json, re
import django
from django.conf import settings
settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
django.setup()
from django.db import connection
cls = type(connection.features)
source = inspect.getsource(cls)
names = re.findall(r"^    (\w+) = [^\n]*sqlite_version_info", source, re.M)
for name, value in vars(cls).items():
    func = getattr(value, "func", None) or getattr(value, "fget", None)
    try:
        if func is not None and "sqlite_version" in inspect.getsource(func):
            names.append(name)
    except TypeError:  # an attrgetter, not Python code
        pass
flags = {}
for name in sorted(set(names)):
    value = getattr(connection.features, name)
    flags[name] = value if isinstance(value, (bool, int, str, type(None))) else len(value)
print(json.dumps({"django": django.get_version(), "flags": flags}))
"""

UTF8 = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
RAN = re.compile(r"^Ran (\d+) tests? in", re.M)
SUMMARY = re.compile(r"^(OK|FAILED)(?: \((.*)\))?\s*$", re.M)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="*", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--pythons", nargs="*", default=None, help="spec Pythons to measure (default all)")
    parser.add_argument("--modules", nargs="*", default=list(MODULES), help="Django test modules to run")
    parser.add_argument("--old-bionic", default=None, help="a bionic base image built before the locale fix")
    parser.add_argument("--pull", action="store_true", help="let the builder try a registry for bases")
    args = parser.parse_args()
    started = time.monotonic()
    backend = DockerBackend(trust=HostTrust.from_env(), reap_leaked=False)
    builder = ImageBuilder(backend, allow_pull=args.pull, log=print)
    if "sqlite" in args.parts:
        specs = published_specs().specs[DJANGO]
        by_python: dict[str, list[str]] = {}
        for version in VERIFIED_VERSIONS:
            by_python.setdefault(str(specs[version]["python"]), []).append(version)
        # --pythons measures some interpreters again: the others' rows stay as they were
        earlier = json.loads(args.out.read_text()).get("runtimes", []) if args.out.exists() else []
        runtimes = {row["python_spec"]: row for row in earlier}
        for python, versions in by_python.items():
            if args.pythons and python not in args.pythons:
                continue
            runtimes[python] = measure_runtime(backend, builder, python, versions, args.modules)
            write(args.out, sqlite_sections(list(runtimes.values())), started)
    if "encodings" in args.parts:
        encodings = [
            encoding_of(backend, builder.ensure(ImageSpec(base=BaseLayer(distro=d))), d) for d in BASES
        ]
        if args.old_bionic:
            encodings.insert(0, encoding_of(backend, args.old_bionic, "bionic (before: LANG=C.UTF-8)"))
        write(args.out, {"base_encodings": encodings}, started)
    if "cutoff" in args.parts:
        cutoffs = [instance_cutoff(backend, builder, python) for python in ("3.6", "3.8")]
        write(args.out, {"instance_cutoff": cutoffs}, started)


PARTS = ("sqlite", "encodings", "cutoff")
BASES = ("bionic", "focal", "bullseye", "jammy", "bookworm")


def sandbox_spec(image: str) -> SandboxSpec:
    return unbounded_spec(image, role="bench")


def run(sandbox: Any, command: str, env: dict[str, str], timeout: float = 1800) -> str:
    result = sandbox.exec(f"set -e\n{command}", timeout=timeout, env=env, output_limit=512 * 1024)
    if not result.ok:
        raise RuntimeError(f"{command[:200]!r} failed ({result.exit_code}):\n{result.output[-3000:]}")
    return result.output


def last_json(output: str) -> dict[str, Any]:
    line = [x for x in output.splitlines() if x.startswith("{")][-1]
    return json.loads(line)


def measure_runtime(
    backend: DockerBackend, builder: ImageBuilder, python: str, versions: list[str], modules: list[str]
) -> dict[str, Any]:
    """One interpreter: a venv made as the recipe makes it, measured before and after the SQLite steps."""
    runtime = runtime_for(python)
    task = Task(
        id="django__django-1", repo=DJANGO, base_commit="0" * 40, problem_statement="x", version=versions[0]
    )
    recipe = recipe_for(task, _NoRequirements())
    install = installer(runtime)
    steps = sqlite_steps(install)
    assert DJANGO in SQLITE_REPOS and all(step in recipe.env_steps for step in steps)
    image = builder.ensure(ImageSpec(base=BaseLayer(distro=runtime.distro)))
    env = {**backend.trust.container_env(), **dict(recipe.env_vars)}
    venv = [f"python3 -m venv {VENV}"]
    venv += list(UV_BOOTSTRAP) if runtime.installer == "uv" else [f"{install} --upgrade 'pip>=26'"]
    venv.append(f"{install} --upgrade setuptools wheel")
    entry: dict[str, Any] = {
        "python_spec": python,
        "python_runtime": runtime.python,
        "distro": runtime.distro,
        "base_image": image,
        "django_spec_versions": versions,
        "installer": runtime.installer,
        "packages_as_of": PACKAGES_AS_OF,
    }
    print(f"== Python {python} on {runtime.distro} ({image}): Django {', '.join(versions)}")
    with backend.start(sandbox_spec(image)) as sandbox:
        for step in venv:
            run(sandbox, step, env)
        sdists = {}
        for version in versions:
            run(sandbox, f"{install} 'Django~={version}.0'", env)
            found = last_json(run(sandbox, f"{VENV}/bin/python -c {shlex.quote(FLAGS_PROBE)}", env))
            release = found["django"]
            folder = f"/tmp/django-{release}"
            # the sdist ships tests/; pip download, not the installer: uv has no download command. Under
            # the POSIX locale, Python 3.6's pip cannot unpack its non-ASCII file names: C.UTF-8 here
            run(
                sandbox,
                f"{VENV}/bin/python -m pip download -q --no-deps --no-binary :all: -d /tmp/sdist "
                f"'Django=={release}' && mkdir -p {folder} && "
                f"tar -xzf /tmp/sdist/[Dd]jango-{release}.tar.gz -C {folder} --strip-components 1",
                {**env, **UTF8},
            )
            sdists[version] = (release, folder)
            run(sandbox, f"{VENV}/bin/python -m pip uninstall -q -y Django", env)
        entry["before"] = measure_state(sandbox, env, sdists, install, modules)
        for step in steps:
            print(run(sandbox, step, env).strip().splitlines()[-1])
        entry["after"] = measure_state(sandbox, env, sdists, install, modules)
    entry["changed_flags"] = {
        version: {
            name: [value, entry["after"]["django"][version]["flags"].get(name)]
            for name, value in entry["before"]["django"][version]["flags"].items()
            if entry["after"]["django"][version]["flags"].get(name) != value
        }
        for version in versions
    }
    return entry


def measure_state(
    sandbox: Any, env: dict[str, str], sdists: dict[str, tuple[str, str]], install: str, modules: list[str]
) -> dict[str, Any]:
    state = last_json(run(sandbox, f"{VENV}/bin/python -c {shlex.quote(RUNTIME_PROBE)}", env))
    print(f"   sqlite {state['sqlite_version']} ({state['sqlite3_module']})")
    state["django"] = {}
    for version, (release, folder) in sdists.items():
        run(sandbox, f"{install} 'Django=={release}'", env)
        found = last_json(run(sandbox, f"{VENV}/bin/python -c {shlex.quote(FLAGS_PROBE)}", env))
        found["tests"] = {module: django_tests(sandbox, env, folder, module) for module in modules}
        state["django"][version] = found
        tests = ", ".join(f"{m} {t.get('ran')}/{t.get('skipped')}" for m, t in found["tests"].items())
        print(f"   Django {release}: {sum(map(bool, found['flags'].values()))} flags on; ran/skipped {tests}")
        run(sandbox, f"{VENV}/bin/python -m pip uninstall -q -y Django", env)
    return state


def django_tests(sandbox: Any, env: dict[str, str], folder: str, module: str) -> dict[str, Any]:
    """One test module of the release's own suite on SQLite: tests run, skipped, failed."""
    # the UTF-8 locale Django's eval_commands export (C.UTF-8: en_US needs the locales package)
    command = f"cd {folder}/tests && {VENV}/bin/python runtests.py {module} --parallel 1 -v 2"
    result = sandbox.exec(command, timeout=1800, env={**env, **UTF8}, output_limit=2 * 1024 * 1024)
    output = result.output
    ran = RAN.search(output)
    summary = SUMMARY.findall(output)
    parts = (part.partition("=") for part in (summary[-1][1] if summary else "").split(","))
    counts = {key.strip(): int(value) for key, _, value in parts if value}
    skipped_names = sorted(set(re.findall(r"^(\w+ \([\w.]+\)) \.\.\. skipped", output, re.M)))
    return {
        "ran": int(ran.group(1)) if ran else None,
        "result": summary[-1][0] if summary else f"no summary (exit {result.exit_code})",
        "skipped": counts.get("skipped", 0),
        "failures": counts.get("failures", 0),
        "errors": counts.get("errors", 0),
        "expected_failures": counts.get("expected failures", 0),
        "skipped_tests": skipped_names,
        "tail": "" if summary else output[-1500:],
    }


def encoding_of(backend: DockerBackend, image: str, label: str) -> dict[str, Any]:
    """The base image's own Python, with the image's environment (no LANG of ours)."""
    with backend.start(sandbox_spec(image)) as sandbox:
        state = last_json(run(sandbox, f"python3 -c {shlex.quote(RUNTIME_PROBE)}", {}))
    keep = ("python", "preferred_encoding", "filesystem_encoding", "open_reads_non_ascii_utf8", "LANG", "TZ")
    row = {"base": label, "image": image, **{k: state[k] for k in (*keep, "tzname")}}
    print(f"{label:32} {row['python']:7} {row['preferred_encoding']:15} LANG={row['LANG']} TZ={row['TZ']}")
    return row


# A project like the ones below Python 3.9 install editable: dependencies the env layer does not have
# (attrs and pytest-mock released versions that still support 3.8 after the cut-off).
TOY_SETUP = """from setuptools import setup
setup(name="toy", version="0.1", packages=[], install_requires=["six", "attrs>=17"],
      extras_require={"test": ["pytest-mock"]})
"""
TOY_INSTALL = "python -m pip install -e .[test]"


def instance_cutoff(backend: DockerBackend, builder: ImageBuilder, python: str) -> dict[str, Any]:
    """What the instance's own pip install resolves without and with `instance_constraints_step`."""
    runtime = runtime_for(python)
    image = builder.ensure(ImageSpec(base=BaseLayer(distro=runtime.distro)))
    env = {
        **backend.trust.container_env(),
        "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "VIRTUAL_ENV": VENV,
        "UV_EXCLUDE_NEWER": PACKAGES_AS_OF,
    }
    env_steps = [f"python3 -m venv {VENV}", *UV_BOOTSTRAP, f"{UV} --upgrade setuptools wheel 'six==1.10.0'"]
    step = instance_constraints_step(TOY_INSTALL)
    assert step is not None
    entry: dict[str, Any] = {
        "python": python,
        "distro": runtime.distro,
        "install": TOY_INSTALL,
        "setup": TOY_SETUP,
    }
    for label, steps in (
        ("before", [TOY_INSTALL]),
        ("after", [step, f"PIP_CONSTRAINT={INSTANCE_CONSTRAINTS} {TOY_INSTALL}"]),
    ):
        with backend.start(sandbox_spec(image)) as sandbox:
            sandbox.write_file("/testbed/setup.py", TOY_SETUP.encode())
            for command in env_steps:
                run(sandbox, command, env)
            for command in steps:
                sandbox_run = sandbox.exec(
                    f"set -e\n{command}", timeout=1800, cwd="/testbed", env={**env, **UTF8}
                )
                if not sandbox_run.ok:
                    raise RuntimeError(f"{command[:200]!r} failed:\n{sandbox_run.output[-3000:]}")
            frozen = run(sandbox, f"{VENV}/bin/python -m pip freeze", env)
        entry[label] = sorted(line for line in frozen.splitlines() if "==" in line)
    before = dict(line.split("==", 1) for line in entry["before"])
    after = dict(line.split("==", 1) for line in entry["after"])
    entry["changed"] = {
        name: [before.get(name), after.get(name)]
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    }
    print(f"instance install on {python}: changed by the cut-off {entry['changed']}")
    return entry


class _NoRequirements:
    """The recipe reads Django's requirements file; the measurement installs Django itself."""

    def read_file(self, repo: str, commit: str, path: str) -> str | None:
        return ""


def sqlite_sections(runtimes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "compared": "a bare base image + venv as the django recipe makes it, before and after the recipe's "
        f"SQLite steps ({PYSQLITE3} aliased as sqlite3); the official images' conda sqlite is "
        f"{OFFICIAL_SQLITE} (defaults channel, October 2024; not measured here)",
        "sqlite": {
            r["python_spec"]: {"before": r["before"]["sqlite_version"], "after": r["after"]["sqlite_version"]}
            for r in runtimes
            if "after" in r
        },
        "skipped": {
            f"{r['python_spec']}/{v}": {
                m: [r[state]["django"][v]["tests"][m]["skipped"] for state in ("before", "after")]
                for m in r["before"]["django"][v]["tests"]
            }
            for r in runtimes
            if "after" in r
            for v in r["django_spec_versions"]
        },
        "runtimes": runtimes,
    }


def write(path: Path, sections: dict[str, Any], started: float) -> None:
    """Merge this run's sections into the results file (a part measured alone keeps the others)."""
    summary = json.loads(path.read_text()) if path.exists() else {"benchmark": "env_parity"}
    summary |= {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        **sections,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
