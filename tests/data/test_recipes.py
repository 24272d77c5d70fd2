"""Recipes from the published SWE-bench specs, translated for Debian venvs."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchfleet.data.loaders import load_tasks
from patchfleet.data.recipes import load_specs, recipe_for, touched_test_files
from patchfleet.data.sources import LocalCheckout, MirrorFolder
from patchfleet.data.task import Task
from patchfleet.errors import ConfigError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def task(repo: str, version: str, commit: str = "HEAD") -> Task:
    return Task(id="x", repo=repo, base_commit=commit, problem_statement="", version=version)


def test_published_spec_becomes_env_and_instance_steps():
    recipe = recipe_for(task("pytest-dev/pytest", "5.4"))
    assert recipe.distro == "bullseye" and recipe.parser == "parse_log_pytest"
    assert any("pluggy==0.13.1" in step for step in recipe.env_steps)
    assert recipe.instance_steps == (
        "SETUPTOOLS_SCM_PRETEND_VERSION=5.4.0 python -m pip install -e . "
        "--config-settings editable_mode=compat",
    )
    assert recipe.test_command(["testing/test_x.py"]) == "pytest -rA testing/test_x.py"
    assert recipe_for(task("sympy/sympy", "1.12")).instance_steps[0].startswith("python -m pip install -e .")
    with pytest.raises(ConfigError, match="no environment recipe"):
        recipe_for(task("nobody/nothing", "1.0"))
    with pytest.raises(ConfigError, match=r"Python 3\.6"):
        recipe_for(task("django/django", "3.0"))


def test_conda_environment_and_requirements_are_read_from_the_repository(tmp_path, run_git):
    repo = tmp_path / "proj"
    (repo / "ci" / "requirements").mkdir(parents=True)
    (repo / "ci" / "requirements" / "environment.yml").write_text(
        "dependencies:\n  - python=3.10\n  - numpy\n  - matplotlib-base\n  - hdf5\n  - pint=0.19\n"
        "  - pip:\n    - numbagg\n"
    )
    (repo / "requirements.txt").write_text("-r extra.txt\n-e .\nastroid==2.6.5  # pinned\n")
    (repo / "extra.txt").write_text("pytest~=6.2\n# comment\n")
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "x")
    specs = load_specs()
    specs["own/yml"] = {
        "1": {
            "python": "3.9",
            "packages": "environment.yml",
            "pip_packages": ["numpy==1.23.0"],
            "test_cmd": "pytest",
        }
    }
    specs["own/reqs"] = {"1": {"python": "3.9", "packages": "requirements.txt", "test_cmd": "pytest"}}
    source = LocalCheckout(path=repo)
    steps = "\n".join(recipe_for(task("own/yml", "1"), source, specs).env_steps)
    for wanted in (
        "numpy || echo",
        "matplotlib || echo",
        "'pint==0.19.*'",
        "numbagg || echo",
        "numpy==1.23.0",
    ):
        assert wanted in steps, wanted
    assert "hdf5" not in steps and "python=3.10" not in steps
    steps = "\n".join(recipe_for(task("own/reqs", "1"), source, specs).env_steps)
    assert "pytest~=6.2\nastroid==2.6.5  # pinned\n" in steps and "-e ." not in steps


def test_touched_test_files_follow_the_harness():
    patch = (
        "diff --git a/tests/test_a.py b/tests/test_a.py\ndiff --git a/tests/data/x.json b/tests/data/x.json\n"
    )
    assert touched_test_files("o/r", patch) == ["tests/test_a.py"]
    assert touched_test_files(
        "django/django", "diff --git a/tests/auth/tests.py b/tests/auth/tests.py\n"
    ) == ["auth.tests"]


@pytest.mark.realdata
def test_every_dev_instance_has_a_recipe():
    mirrors = Path(__import__("os").environ.get("PATCHFLEET_MIRRORS", "/nonexistent"))
    if not (SHARED / "swebench_verified.jsonl").exists() or not mirrors.is_dir():
        pytest.skip("needs ../shared/data and PATCHFLEET_MIRRORS")
    dev = (SHARED / "splits" / "dev_ids.txt").read_text().split()
    loaded = load_tasks(SHARED / "swebench_verified.jsonl", instance_ids=dev)
    source = MirrorFolder(
        root=mirrors, layout=__import__("os").environ.get("PATCHFLEET_MIRROR_LAYOUT", "{owner}+{name}/repo")
    )
    assert len({recipe_for(t, source).key for t in loaded.tasks}) > 30
