"""Each spec's Python picks its base (Debian or Ubuntu), the date cut-off its installer understands, and
tags that change with both; the Debian bases other code already uses keep their tags."""

from __future__ import annotations

import pytest

from patchfleet.data.recipes import (
    PACKAGES_AS_OF,
    UV_BOOTSTRAP,
    VENV,
    load_specs,
    packages_as_of,
    recipe_for,
)
from patchfleet.data.runtimes import DISTROS, distro, runtime_for
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError
from patchfleet.sandbox.images import BaseLayer, image_spec


def task(repo: str, version: str) -> Task:
    return Task(
        id=f"{repo.replace('/', '__')}-1",
        repo=repo,
        base_commit="0" * 40,
        problem_statement="x",
        version=version,
    )


def test_every_base_comes_with_its_updates_and_security_pockets_and_its_tag_says_so():
    # the official images' Python is the newest patch release; a release pocket's is years older
    # (bullseye 3.9.2 without bpo-43882, which django__django-14349's FAIL_TO_PASS test needs)
    bullseye = distro("bullseye").apt_sources("http://deb.debian.org/debian")
    assert bullseye.splitlines() == [
        "deb http://deb.debian.org/debian bullseye main",
        "deb http://deb.debian.org/debian bullseye-updates main",
        "deb http://deb.debian.org/debian-security bullseye-security main",
    ]
    focal = distro("focal").apt_sources("http://archive.ubuntu.com/ubuntu").splitlines()
    assert focal[1:] == [
        "deb http://archive.ubuntu.com/ubuntu focal-updates main universe",
        "deb http://archive.ubuntu.com/ubuntu focal-security main universe",
    ]
    # the tags before the pockets (bases built without them are not reused)
    assert BaseLayer(distro="bookworm").tag() != "patchfleet/base:bookworm-e68689ef8c7fdd21"
    assert BaseLayer(distro="bullseye").tag() != "patchfleet/base:bullseye-8bb7058bbefc40cf"
    assert BaseLayer(distro="focal").tag() != "patchfleet/base:focal-fa305de6e86470c5"


def test_ubuntu_releases_come_from_ubuntus_archive_with_universe():
    for name, python in {"bionic": "3.6", "focal": "3.8", "jammy": "3.10"}.items():
        release = distro(name)
        assert release.python == python and release.family == "ubuntu"
        assert release.mirror == "http://archive.ubuntu.com/ubuntu"
        assert release.components == ("main", "universe") and release.registry_image == f"ubuntu:{name}"
    assert distro("bookworm").registry_image == "debian:bookworm-slim"
    assert distro("bookworm").mirror == "http://deb.debian.org/debian"
    with pytest.raises(ConfigError, match="unknown base distribution 'trusty'"):
        distro("trusty")
    assert len({BaseLayer(distro=name).tag() for name in DISTROS}) == len(DISTROS)


def test_the_recipe_picks_the_base_of_the_specs_python_and_the_tags_follow():
    specs = load_specs()
    wanted = {"3.6": "bionic", "3.8": "focal", "3.9": "bullseye", "3.10": "jammy", "3.11": "bookworm"}
    spec = dict(specs["sympy/sympy"]["1.1"])
    tags = {}
    for python, name in wanted.items():
        specs["sympy/sympy"]["1.1"] = {**spec, "python": python}
        recipe = recipe_for(task("sympy/sympy", "1.1"), specs=specs)
        assert recipe.distro == name and recipe.runtime_python == python == recipe.python
        layers = image_spec(task("sympy/sympy", "1.1"), recipe)
        assert layers.base.distro == name
        tags[python] = layers.tags()
    # a changed Python changes every layer's tag, base included
    for position in range(3):
        assert len({t[position] for t in tags.values()}) == len(wanted)


def test_below_python_3_9_uv_installs_with_a_date_cut_off_and_from_3_9_pip_does():
    specs = load_specs()
    old = recipe_for(task("scikit-learn/scikit-learn", "0.20"), specs=specs)  # asks for 3.6
    assert old.distro == "bionic" and dict(old.env_vars)["UV_EXCLUDE_NEWER"] == PACKAGES_AS_OF
    assert "PIP_UPLOADED_PRIOR_TO" not in dict(old.env_vars)
    start = old.env_steps.index(f"python3 -m venv {VENV}")
    assert old.env_steps[start + 1 : start + 1 + len(UV_BOOTSTRAP)] == UV_BOOTSTRAP
    assert any(step.startswith("uv pip install") and "numpy==1.19.2" in step for step in old.env_steps)
    assert not any("'pip>=26'" in step for step in old.env_steps)
    assert "--config-settings" not in old.install  # pip 21.3, the last for 3.6, has none
    assert any("uv installs the environment" in note for note in old.notes)
    focal = recipe_for(task("django/django", "4.0"), _Files({"tests/requirements/py3.txt": "asgiref\n"}))
    assert focal.distro == "focal" and any(s.startswith("uv pip install -r") for s in focal.env_steps)
    new = recipe_for(task("pytest-dev/pytest", "5.4"))
    assert dict(new.env_vars)["PIP_UPLOADED_PRIOR_TO"] == PACKAGES_AS_OF == "2024-10-10T00:00:00Z"
    assert "UV_EXCLUDE_NEWER" not in dict(new.env_vars) and not any("uv " in s for s in new.env_steps)


def test_the_cut_off_is_per_repo_version_where_the_evidence_says_so():
    assert packages_as_of("pydata/xarray", "2022.09") == "2024-10-24T00:00:00Z"
    assert packages_as_of("pydata/xarray", "2022.03") == "2025-01-01T00:00:00Z"
    assert packages_as_of("pydata/xarray", "0.12") == PACKAGES_AS_OF
    xarray = recipe_for(task("pydata/xarray", "2022.09"), _Files({"ci/requirements/environment.yml": _YML}))
    assert xarray.distro == "jammy" and dict(xarray.env_vars)["PIP_UPLOADED_PRIOR_TO"].startswith(
        "2024-10-24"
    )
    assert runtime_for("3.10").installer == "pip" and runtime_for("3.8").installer == "uv"


_YML = "dependencies:\n  - numpy\n  - pip:\n    - pytest\n"


class _Files:
    """A repository source that knows a few files, whatever the commit."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read_file(self, repo: str, commit: str, path: str) -> str | None:
        return self.files.get(path)


@pytest.mark.docker
def test_an_ubuntu_base_without_its_keyring_fails_up_front_and_builds_nothing(docker_backend, tmp_path):
    from patchfleet.errors import ImageBuildError
    from patchfleet.sandbox.images import ImageBuilder, ImageSpec

    # a package list no image has, so the tag is new and the builder must make it
    spec = ImageSpec(base=BaseLayer(distro="focal", packages=("python3", "patchfleet-test-only")))
    builder = ImageBuilder(docker_backend, allow_pull=False, ubuntu_keyring=str(tmp_path / "none.gpg"))
    with pytest.raises(ImageBuildError, match=r"needs Ubuntu.s archive keyring at .*none\.gpg"):
        builder.ensure(spec)
    assert not builder.exists(spec.tag())
