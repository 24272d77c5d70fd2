"""What the official images give tests, ours give too: conda's recent SQLite (Django), the POSIX locale of
Python 3.6, and a date cut-off for the instance's own install below Python 3.9."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from patchfleet.data import recipes
from patchfleet.data.evalscript import eval_script
from patchfleet.data.recipes import (
    INSTANCE_CONSTRAINTS,
    PIP,
    PYSQLITE3,
    SQLITE_ALIAS,
    SQLITE_PTH,
    UV,
    instance_constraints_step,
    recipe_for,
    runtime_of,
    sqlite_steps,
)
from patchfleet.data.runtimes import OFFICIAL_IMAGE_ENV, UTF8_IMAGE_ENV, distro
from patchfleet.data.task import Task
from patchfleet.sandbox.images import BaseLayer


def task(repo: str, version: str) -> Task:
    return Task(id="x", repo=repo, base_commit="0" * 40, problem_statement="x", version=version)


class Files:
    """A repository source whose requirements files all say `asgiref`."""

    def read_file(self, repo: str, commit: str, path: str) -> str | None:
        return "asgiref\n" if path.endswith(".txt") else None


# -- SQLite ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "installer"), [("3.0", UV), ("4.0", UV), ("4.2", PIP), ("5.0", PIP)])
def test_django_environments_get_a_recent_sqlite_as_sqlite3(version, installer):
    recipe = recipe_for(task("django/django", version), Files())
    steps = sqlite_steps(installer)
    assert installer == recipes.installer(runtime_of("django/django", version))
    assert steps[0] == f"{installer} {PYSQLITE3}" and all(step in recipe.env_steps for step in steps)
    assert SQLITE_PTH in steps[1] and "sqlite_version_info < (3, 45)" in steps[1]
    # after the dependencies, so that none of them can bring another sqlite3 over it
    requirements = max(i for i, step in enumerate(recipe.env_steps) if "-r /tmp/requirements.txt" in step)
    assert recipe.env_steps.index(steps[0]) > requirements
    assert any("pysqlite3-binary" in note for note in recipe.notes)


def test_repositories_whose_tests_do_not_use_sqlite_keep_the_distros():
    for repo, version in (
        ("astropy/astropy", "1.3"),
        ("scikit-learn/scikit-learn", "0.20"),
        ("pytest-dev/pytest", "5.4"),
    ):
        assert not any(PYSQLITE3 in step for step in recipe_for(task(repo, version), Files()).env_steps)


def test_the_pth_line_makes_sqlite3_and_its_dbapi2_the_bundled_module(tmp_path):
    # a stand-in for the wheel (the real one is measured by benchmarks/env_parity.py)
    package = tmp_path / "pysqlite3"
    package.mkdir()
    (package / "__init__.py").write_text("from pysqlite3.dbapi2 import *\n")
    (package / "dbapi2.py").write_text("sqlite_version = '3.46.1'\nsqlite_version_info = (3, 46, 1)\n")
    (tmp_path / SQLITE_PTH).write_text(SQLITE_ALIAS + "\n")
    probe = (
        "import site, sys; site.addsitedir(sys.argv[1]); "
        "from sqlite3 import dbapi2 as Database; import sqlite3, sqlite3.dbapi2; "
        "print(Database.__name__, sqlite3.__name__, sqlite3.dbapi2.sqlite_version)"
    )
    done = subprocess.run([sys.executable, "-S", "-c", probe, str(tmp_path)], capture_output=True, text=True)
    assert done.stdout.split() == ["pysqlite3.dbapi2", "pysqlite3", "3.46.1"], done.stderr


# -- locale ----------------------------------------------------------------------------------------


def test_only_the_python_3_6_base_takes_the_official_images_environment():
    assert distro("bionic").image_env == OFFICIAL_IMAGE_ENV == (("TZ", "Etc/UTC"),)
    assert "tzdata" in BaseLayer(distro="bionic").all_packages()
    for name in ("focal", "bullseye", "jammy", "bookworm"):
        assert (
            distro(name).image_env == UTF8_IMAGE_ENV and "tzdata" not in BaseLayer(distro=name).all_packages()
        )
    # only bionic's digest takes them (the other bases' images, in use, keep theirs)
    assert {"image_env", "image_packages"} <= BaseLayer(distro="bionic")._derived().keys()
    for name in ("focal", "bullseye", "jammy", "bookworm"):
        assert not {"image_env", "image_packages"} & BaseLayer(distro=name)._derived().keys()


def test_django_exports_its_own_utf8_locale_for_the_tests():
    script = eval_script(
        recipe_for(task("django/django", "3.0"), Files()), test_patch="", base_commit="0" * 40
    )
    assert "export LANG=en_US.UTF-8" in script and "export LC_ALL=en_US.UTF-8" in script


# -- the instance install's date cut-off -----------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "version", "extras"),
    [("astropy/astropy", "1.3", "'[test]'"), ("scikit-learn/scikit-learn", "0.21", "''"),
     ("django/django", "3.2", "''"), ("matplotlib/matplotlib", "3.3", "''")],
)  # fmt: skip
def test_below_python_3_9_pip_installs_the_instance_under_uvs_cut_off(repo, version, extras):
    recipe = recipe_for(task(repo, version), Files())
    assert dict(recipe.env_vars).get("UV_EXCLUDE_NEWER")
    assert recipe.install.startswith(f"PIP_CONSTRAINT={INSTANCE_CONSTRAINTS} ")
    constrain = recipe.instance_steps[-2]
    assert constrain == instance_constraints_step(recipe.install) and f'"$PWD"{extras}' in constrain
    assert recipe.instance_steps[-1] == recipe.install
    # the eval script's reinstall is constrained the same way (the file stays in the image)
    assert recipe.install in eval_script(recipe, test_patch="", base_commit="0" * 40)
    assert any("constrained to what uv resolves" in note for note in recipe.notes)


def test_installs_that_are_not_pip_editable_or_run_pip_26_are_left_alone():
    assert instance_constraints_step("python setup.py install") is None
    assert instance_constraints_step("python -m pip install .") is None
    old_django = recipe_for(task("django/django", "2.2"), Files())  # setup.py install on 3.6
    assert "PIP_CONSTRAINT" not in old_django.install and len(old_django.instance_steps) == 1
    new_django = recipe_for(task("django/django", "4.1"), Files())  # pip 26 has its own cut-off
    assert "PIP_CONSTRAINT" not in new_django.install
    sympy = recipe_for(task("sympy/sympy", "1.1"), Files())  # not yet: its images are in use
    assert "PIP_CONSTRAINT" not in sympy.install


FAKE_UV = """#!/bin/bash
# pip freeze: the env's packages; pip compile: what the resolution gave, or a failure
case "$2" in
  freeze) printf 'numpy==1.19.2\\n-e file:///somewhere\\nastropy-helpers @ file:///x\\n' ;;
  compile)
    [ -n "$FAIL" ] && { echo 'error: no solution' >&2; exit 1; }
    out="${@: -1}"; in_file="${@: -3:1}"
    printf '# header\\nnumpy==1.19.2\\nattrs==24.2.0\\n%s\\n' "$(cat "$in_file")" > "$out"
    grep -q numpy==1.19.2 "${@: -4:1}" || exit 3 ;;
esac
"""


@pytest.mark.parametrize("fails", [False, True])
def test_the_constraints_step_keeps_pins_and_falls_back_to_an_unconstrained_install(tmp_path, fails):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "uv").write_text(FAKE_UV)
    (tmp_path / "bin" / "uv").chmod(0o755)
    project = tmp_path / "testbed"
    project.mkdir()
    constraints = tmp_path / "constraints.txt"
    step = instance_constraints_step("python -m pip install -e .[test] --verbose")
    assert step is not None
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        **({"FAIL": "1"} if fails else {}),
    }
    done = subprocess.run(
        ["bash", "-c", "set -e\n" + step.replace(INSTANCE_CONSTRAINTS, str(constraints))],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    if fails:
        assert constraints.read_text() == "" and "install unconstrained" in done.stdout
    else:
        # pins only: the project itself (a path) and comments are no constraints pip accepts
        assert constraints.read_text() == "numpy==1.19.2\nattrs==24.2.0\n"
    assert not Path("/tmp/pf-project.in").exists()


@pytest.mark.docker
def test_the_python_3_6_base_reads_like_the_official_image_and_still_runs_non_ascii_commands(docker_backend):
    from patchfleet.sandbox.base import SandboxSpec
    from patchfleet.sandbox.images import ImageBuilder, ImageSpec

    image = ImageBuilder(docker_backend, allow_pull=False).ensure(ImageSpec(base=BaseLayer(distro="bionic")))
    with docker_backend.start(SandboxSpec(image=image, labels={"role": "test"}, workdir="/")) as sandbox:
        probe = sandbox.exec(
            "python3 -c 'import locale, os, time; "
            'print(locale.getpreferredencoding(), os.environ.get("LANG"), time.tzname[0])\''
        )
        assert probe.output.split() == ["ANSI_X3.4-1968", "None", "UTC"]
        # the exec server (the image's Python 3.6 under POSIX) passes UTF-8 through as bytes
        sandbox.write_file("/tmp/café/naïve.txt", "μ\n".encode())
        done = sandbox.exec("cat /tmp/café/naïve.txt; echo é", cwd="/tmp/café", env={"GREETING": "ça va"})
        assert done.ok and done.output == "μ\né\n"
        assert sandbox.exec('echo "$GREETING"', env={"GREETING": "ça va"}).output == "ça va\n"
