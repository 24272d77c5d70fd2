"""Recipes from the published SWE-bench specs, translated for Debian venvs, and the eval script."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from patchfleet.data.dependencies import conda_to_pip, environment_yml
from patchfleet.data.evalscript import eval_script, files_before, get_test_directives
from patchfleet.data.grading import grade, resolution_status
from patchfleet.data.loaders import load_tasks, read_ids
from patchfleet.data.recipes import Recipe, load_specs, recipe_for, runtime_of, touched_test_files
from patchfleet.data.runtimes import lift_pin, runtime_for
from patchfleet.data.sources import LocalCheckout, MirrorFolder
from patchfleet.data.task import EvalSpec, Task
from patchfleet.data.upstream import published_specs
from patchfleet.errors import ConfigError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TEST_PATCH = (
    "diff --git a/tests/test_a.py b/tests/test_a.py\n--- a/tests/test_a.py\n+++ b/tests/test_a.py\n"
    "@@ -1 +1 @@\n-x\n+y\n"
    "diff --git a/tests/test_new.py b/tests/test_new.py\nnew file mode 100644\n--- /dev/null\n"
    "+++ b/tests/test_new.py\n@@ -0,0 +1 @@\n+z\n"
    "diff --git a/tests/data/x.json b/tests/data/x.json\n--- a/tests/data/x.json\n+++ b/tests/data/x.json\n"
)


def task(repo: str, version: str, commit: str = "HEAD") -> Task:
    return Task(id="x", repo=repo, base_commit=commit, problem_statement="", version=version)


@dataclass
class Files:
    """A repository source that knows a few files, whatever the commit: a fake for requirements."""

    files: dict[str, str] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)

    def read_file(self, repo: str, commit: str, path: str) -> str | None:
        self.read.append(path)
        return self.files.get(path)


def test_published_spec_becomes_env_and_instance_steps():
    recipe = recipe_for(task("pytest-dev/pytest", "5.4"))
    assert recipe.distro == "bullseye" and recipe.runtime_python == recipe.python == "3.9"
    assert recipe.parser == "parse_log_pytest" and not recipe.notes
    env = "\n".join(recipe.env_steps)
    assert "pluggy==0.13.1" in env and "python3 -m venv /opt/venv" in env and "'pip>=26'" in env
    assert recipe.instance_steps == (
        "SETUPTOOLS_SCM_PRETEND_VERSION=5.4.0 python -m pip install -e . "
        "--config-settings editable_mode=compat",
    )
    assert recipe.install == recipe.instance_steps[-1]
    assert dict(recipe.env_vars)["PIP_UPLOADED_PRIOR_TO"] == "2024-10-10T00:00:00Z"
    assert recipe.test_command(["testing/test_x.py"]) == "pytest -rA testing/test_x.py"
    assert recipe.origin.startswith("swebench ")
    sympy = recipe_for(task("sympy/sympy", "1.12"))
    assert sympy.parser == "parse_log_sympy" and "bin/test -C --verbose" in sympy.test_cmd
    assert any("mpmath flake8" in step for step in sympy.env_steps)
    with pytest.raises(ConfigError, match=r"no environment recipe for nobody/nothing 1\.0"):
        recipe_for(task("nobody/nothing", "1.0"))
    with pytest.raises(ConfigError, match="requirements file: pass a repo source"):
        recipe_for(task("pylint-dev/pylint", "2.15"))


def test_system_steps_of_pre_install_go_to_the_env_layer_and_repo_steps_stay_together():
    sphinx = recipe_for(task("sphinx-doc/sphinx", "7.2"))
    assert sphinx.system_packages == ("graphviz",)
    assert sphinx.env_steps[0].startswith("apt-get update") and "graphviz" in sphinx.env_steps[0]
    assert not any("apt-get" in step for step in sphinx.instance_steps)
    assert sphinx.instance_steps[0] == "sed -i 's/pytest/pytest -rA/' tox.ini"
    requirements = Files({"requirements/dev/dev-requirements.txt": "x"})
    matplotlib = recipe_for(task("matplotlib/matplotlib", "3.1"), requirements)
    qhull = matplotlib.instance_steps[0]
    assert "QHULL_URL=" in qhull and 'wget -O "$QHULL_TAR"' in qhull  # one step: variables survive
    assert "&& &&" not in "".join(matplotlib.env_steps) and "upgrade" not in matplotlib.env_steps[0]
    assert {"ffmpeg", "imagemagick", "build-essential"} <= set(matplotlib.system_packages)
    django = recipe_for(task("django/django", "1.11"), Files({"tests/requirements/py3.txt": "pytz\n"}))
    assert "locales-all" in django.system_packages and django.eval_prelude[0] == "export LANG=en_US.UTF-8"
    assert not any("locale" in step for step in django.instance_steps)


def test_each_spec_gets_its_minor_python_where_a_release_ships_it_and_the_nearest_otherwise():
    exact = {"3.6": "bionic", "3.8": "focal", "3.9": "bullseye", "3.10": "jammy", "3.11": "bookworm"}
    for wanted, distro in exact.items():
        runtime = runtime_for(wanted)
        assert runtime.exact and runtime.distro == distro and not runtime.note
    for wanted, (python, distro) in {"3.5": ("3.6", "bionic"), "3.7": ("3.8", "focal")}.items():
        runtime = runtime_for(wanted)
        assert (runtime.python, runtime.distro) == (python, distro) and f"Python {wanted}" in runtime.note
    with pytest.raises(ConfigError, match=r"Python 2\.7 is not available"):
        runtime_for("2.7")
    assert lift_pin("numpy==1.19.2", "3.9") == (
        "numpy==1.19.3",
        "numpy==1.19.2 has no cp39 wheel; uses 1.19.3",
    )
    sklearn = recipe_for(task("scikit-learn/scikit-learn", "0.20"))  # asks for 3.6: its pins have wheels
    env = "\n".join(sklearn.env_steps)
    assert sklearn.distro == "bionic" and sklearn.runtime_python == "3.6"
    assert "numpy==1.19.2" in env and "scipy==1.5.2" in env and "1.19.3" not in env
    assert "--config-settings" not in sklearn.install  # --no-use-pep517 takes no config settings
    assert lift_pin("numpy==1.25.2", "3.9") == ("numpy==1.25.2", "")
    assert lift_pin("numpy>=1.0", "3.9") == ("numpy>=1.0", "")
    assert lift_pin("'scipy==1.5.2'", "3.11") == ("'scipy==1.5.2'", "")


def test_conda_specs_translate_to_pip():
    assert conda_to_pip("numpy") == "numpy"
    assert conda_to_pip("pint=0.19") == "pint==0.19.*"
    assert conda_to_pip("conda-forge::matplotlib-base>=3.5") == "matplotlib>=3.5"
    assert conda_to_pip("dask-core=2022.8.1=pyhd8ed1ab_0") == "dask==2022.8.1"
    assert conda_to_pip("python=3.10") is None and conda_to_pip("hdf5") is None
    with pytest.raises(ConfigError, match="dependencies"):
        environment_yml("just text", "o/r@c", "3.9")
    with pytest.raises(ConfigError, match="not valid YAML"):
        environment_yml("a: [", "o/r@c", "3.9")


def test_conda_environment_and_requirements_are_read_from_the_repository(tmp_path, run_git):
    repo = tmp_path / "proj"
    (repo / "ci" / "requirements").mkdir(parents=True)
    (repo / "ci" / "requirements" / "environment.yml").write_text(
        "dependencies:\n  - python=3.10\n  - numpy\n  - matplotlib-base\n  - hdf5\n  - pint=0.19\n"
        "  - pip\n  - pip:\n    - numbagg\n    - types-pkg_resources==0.1\n"
    )
    (repo / "requirements_test.txt").write_text(
        "-r extra.txt\n-e .\nastroid==2.6.5  # pinned\nnumpy==1.16.0\n"
    )
    (repo / "extra.txt").write_text("pytest~=6.2\n# comment\n")
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "x")
    source = LocalCheckout(path=repo)
    specs = load_specs()
    xarray = "\n".join(recipe_for(task("pydata/xarray", "2022.06"), source, specs).env_steps)
    expected = ("numpy || echo", "matplotlib || echo", "'pint==0.19.*'", "numbagg || echo", "numpy==1.23.0")
    for wanted in expected:
        assert wanted in xarray, wanted
    assert "types-setuptools" in xarray and "types-pkg_resources" not in xarray
    assert "hdf5" not in xarray and "python=3.10" not in xarray
    recipe = recipe_for(task("pylint-dev/pylint", "2.15"), source, specs)
    heredoc = next(s for s in recipe.env_steps if s.startswith("cat > /tmp/requirements.txt"))
    # as the harness: the -r include first, then the file's own lines; `-e .` and comments dropped
    lines = [line for line in heredoc.splitlines()[1:-1] if line]
    assert lines == ["pytest~=6.2", "astroid==2.6.5  # pinned", "numpy==1.19.3"]
    assert "numpy==1.16.0 has no cp39 wheel; uses 1.19.3" in recipe.notes


def test_user_specs_extend_the_published_ones(tmp_path):
    extra = tmp_path / "more.json"
    extra.write_text('{"own/repo": {"1": {"python": "3.11", "test_cmd": "pytest", "install": "make"}}}')
    recipe = recipe_for(task("own/repo", "1"), specs=load_specs(extra))
    assert recipe.distro == "bookworm" and recipe.instance_steps[-1].endswith(" make")
    assert recipe_for(task("psf/requests", "2.0"), specs=load_specs(extra)).test_cmd == "pytest -rA"
    extra.write_text("[1]")
    with pytest.raises(ConfigError, match="expected"):
        load_specs(extra)


def test_test_directives_and_restored_files_follow_the_harness():
    assert get_test_directives("o/r", TEST_PATCH) == ["tests/test_a.py", "tests/test_new.py"]
    assert touched_test_files("o/r", TEST_PATCH) == get_test_directives("o/r", TEST_PATCH)
    assert files_before(TEST_PATCH) == ["tests/test_a.py", "tests/data/x.json"]
    django = "diff --git a/tests/auth/tests.py b/tests/auth/tests.py\n"
    assert get_test_directives("django/django", django) == ["auth.tests"]
    assert published_specs().non_test_exts[0] == ".json"


def test_eval_script_has_the_official_shape():
    recipe = recipe_for(task("pytest-dev/pytest", "5.4"))
    script = eval_script(recipe, test_patch=TEST_PATCH, base_commit="abc123")
    lines = script.splitlines()
    assert lines[:2] == ["#!/bin/bash", "set -uxo pipefail"]
    start = lines.index(": '>>>>> Start Test Output'")
    assert lines[start + 1] == "pytest -rA tests/test_a.py tests/test_new.py"
    assert lines[start + 2 : start + 5] == [
        "SWEBENCH_TEST_EXIT_CODE=$?",
        ": '>>>>> End Test Output'",
        'echo ">>>>> Test Exit Code: $SWEBENCH_TEST_EXIT_CODE"',
    ]
    reset = "git checkout abc123 tests/test_a.py tests/data/x.json"
    assert lines.count(reset) == 2 and lines[-1] == reset
    assert recipe.install in lines and lines.index(recipe.install) < lines.index(reset)
    assert "git apply -v - <<'EOF_114329324912'" in script
    assert recipe.install not in eval_script(recipe, test_patch=TEST_PATCH, base_commit="a", reinstall=False)


def _fake_files(task: Task) -> Files:
    """Minimal requirements / environment.yml for repositories whose mirror is not here."""
    published = published_specs()
    files = {p: "pytest\n" for p in published.requirements_paths.get(task.repo, ())}
    files |= {p: "dependencies:\n  - numpy\n" for p in published.environment_yml_paths.get(task.repo, ())}
    return Files(files)


@pytest.mark.realdata
def test_every_repo_version_of_swe_bench_verified_has_a_recipe():
    path = SHARED / "swebench_verified.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside the project")
    loaded = load_tasks(path)
    keys: dict[tuple[str, str], Task] = {}
    for t in loaded.tasks:
        keys.setdefault(t.recipe_key, t)
    assert len(keys) == 80
    distros = set()
    for t in keys.values():
        recipe = recipe_for(t, _fake_files(t))
        assert recipe.env_steps and recipe.test_cmd and recipe.parser.startswith("parse_log_"), t.recipe_key
        assert (recipe.runtime_python != recipe.python) == any("spec asks for" in n for n in recipe.notes)
        assert runtime_of(t.repo, t.version).distro == recipe.distro
        distros.add(recipe.distro)
    assert distros == {"bionic", "focal", "bullseye", "jammy", "bookworm"}


@pytest.mark.realdata
def test_dev_recipes_read_their_requirements_from_the_upstream_mirrors():
    mirrors = Path(os.environ.get("PATCHFLEET_MIRRORS", "/nonexistent"))
    if not (SHARED / "swebench_verified.jsonl").exists() or not mirrors.is_dir():
        pytest.skip("needs ../shared/data and PATCHFLEET_MIRRORS")
    layout = os.environ.get("PATCHFLEET_MIRROR_LAYOUT", "{owner}/{name}.git")
    source = MirrorFolder(root=mirrors, layout=layout)
    dev = read_ids(SHARED / "splits" / "dev_ids.txt")
    loaded = load_tasks(SHARED / "swebench_verified.jsonl", instance_ids=dev)
    recipes = {t.recipe_key: recipe_for(t, source) for t in loaded.tasks}
    assert len(recipes) > 30
    pylint = [r for (repo, _), r in recipes.items() if repo == "pylint-dev/pylint"]
    assert all(any("/tmp/requirements.txt" in s for s in r.env_steps) for r in pylint)
    xarray = [r for (repo, _), r in recipes.items() if repo == "pydata/xarray"]
    assert all(sum("|| echo" in s for s in r.env_steps) > 20 for r in xarray)


def test_every_step_and_eval_script_is_valid_bash():
    for repo, versions in published_specs().specs.items():
        for version in versions:
            t = task(repo, version)
            try:
                recipe = recipe_for(t, _fake_files(t))
            except ConfigError:  # Python versions no Debian image approximates (2.7, humaneval's)
                continue
            steps = [*recipe.env_steps, *recipe.instance_steps, *recipe.eval_prelude]
            script = eval_script(recipe, test_patch=TEST_PATCH, base_commit="a" * 40)
            # one bash per recipe; each step in a function of its own, as the builder runs it alone
            text = "".join(f"step_{i}() {{\nset -e\n{step}\n}}\n" for i, step in enumerate(steps)) + script
            checked = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True, check=False)
            assert checked.returncode == 0, (repo, version, checked.stderr)


def test_the_eval_script_log_grades_with_the_official_rules(tmp_path, run_git):
    """Run a real eval script on a real repository (no Docker): the markers survive `set -x`."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_old():\n    assert add(1, 1) == 2\n"
    )
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    base = run_git(repo, "rev-parse", "HEAD").strip()
    test_patch = (
        "diff --git a/test_calc.py b/test_calc.py\n--- a/test_calc.py\n+++ b/test_calc.py\n"
        "@@ -3,3 +3,7 @@ from calc import add\n \n def test_old():\n     assert add(1, 1) == 2\n"
        "+\n+\n+def test_new():\n+    assert add(2, 3) == 5\n"
    )
    recipe = Recipe(
        repo="o/r",
        version="1",
        distro="bookworm",
        python="3.11",
        env_steps=(),
        env_vars=(),
        instance_steps=(),
        test_cmd=f"{sys.executable} -m pytest -rA -p no:cacheprovider",
        parser="parse_log_pytest",
    )
    script = tmp_path / "eval.sh"
    script.write_text(eval_script(recipe, test_patch=test_patch, base_commit=base, workdir=str(repo)))
    env = {**os.environ, "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    log = done.stdout + done.stderr
    assert "+ : '>>>>> Start Test Output'" in log and ">>>>> Test Exit Code: 0" in log, log
    spec = EvalSpec(
        instance_id="o__r-1",
        test_patch=test_patch,
        fail_to_pass=("test_calc.py::test_new",),
        pass_to_pass=("test_calc.py::test_old",),
    )
    assert resolution_status(grade(log, spec, repo="o/r")) == "RESOLVED_FULL"
    assert "test_new" not in (repo / "test_calc.py").read_text()  # the tests are restored afterwards


def test_requests_suites_get_a_local_httpbin_in_its_own_venv_and_other_repos_do_not():
    recipe = recipe_for(task("psf/requests", "2.3"))
    assert any("httpbin==0.10.2" in step and "/opt/httpbin" in step for step in recipe.env_steps)
    assert "export HTTPBIN_URL=http://127.0.0.1:80/" in recipe.eval_prelude
    assert any("httpbin" in note for note in recipe.notes)
    script = eval_script(recipe, test_patch=TEST_PATCH, base_commit="abc")
    # started before the tests run, and the script stays valid bash
    assert script.index("HTTPBIN_URL") < script.index(recipe.test_cmd)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    pytest_recipe = recipe_for(task("pytest-dev/pytest", "5.4"))
    assert not any("httpbin" in line for line in (*pytest_recipe.env_steps, *pytest_recipe.eval_prelude))


@pytest.mark.parametrize(
    ("files", "legacy"),
    [
        ({"pyproject.toml": '[build-system]\nrequires = ["setuptools~=62.6", "wheel"]\n'}, True),
        ({"pyproject.toml": '[build-system]\nrequires = ["setuptools<64"]\n'}, True),
        ({"pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\n'}, False),
        ({"pyproject.toml": '[build-system]\nrequires = ["setuptools~=66.1"]\n'}, False),
        ({"pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'}, False),
        ({"pyproject.toml": '[build-system]\nrequires = ["setuptools~=62.6"]\n', "setup.py": ""}, False),
        ({"pyproject.toml": "not [ toml"}, False),
        ({}, False),
    ],
)
def test_editable_installs_skip_build_isolation_only_where_the_backend_predates_pep_660(files, legacy):
    source = Files({"requirements_test.txt": "", **files})
    recipe = recipe_for(task("pylint-dev/pylint", "2.15"), source=source)
    assert recipe.install.endswith("--no-build-isolation") is legacy
    assert "editable_mode=compat" in recipe.install
