"""astropy's recipes: the official pins per Verified version, and the astropy-helpers submodule filled
from PyPI because GitHub (where ah_bootstrap would fetch it) is out of reach. And the recipes of the
compiled repositories that cannot be measured here, read through a clone URL."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from patchfleet.data.astropy_env import HELPERS_RELEASE, fill_helpers_step
from patchfleet.data.recipes import recipe_for
from patchfleet.data.task import Task

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
UNKNOWN = "0123456789abcdef0123456789abcdef01234567"


def task(version: str) -> Task:
    return Task(id="x", repo="astropy/astropy", base_commit="HEAD", problem_statement="", version=version)


# Verified's astropy versions: (python, base, installer, pins the official environment has)
VERIFIED = {
    "1.3": ("3.6", "bionic", "uv pip install", ("numpy==1.16.0", "cython==0.27.3", "setuptools==38.2.4")),
    "3.1": ("3.9", "bullseye", "pip install", ("numpy==1.25.2", "setuptools==68.0.0", "pyerfa==2.0.0.3")),
    "4.3": ("3.9", "bullseye", "pip install", ("numpy==1.25.2", "setuptools==68.0.0", "pytest==7.4.0")),
    "5.0": ("3.9", "bullseye", "pip install", ("numpy==1.25.2", "setuptools==68.0.0", "pytest==7.4.0")),
    "5.1": ("3.9", "bullseye", "pip install", ("numpy==1.25.2", "setuptools==68.0.0", "pytest==7.4.0")),
    "5.2": ("3.9", "bullseye", "pip install", ("numpy==1.25.2", "setuptools==68.0.0", "pytest==7.4.0")),
}


@pytest.mark.parametrize("version", sorted(VERIFIED))
def test_each_verified_astropy_version_gets_its_python_and_the_official_pins(version):
    python, distro, installer, pins = VERIFIED[version]
    recipe = recipe_for(task(version))
    assert (recipe.python, recipe.runtime_python, recipe.distro) == (python, python, distro)
    env = "\n".join(recipe.env_steps)
    assert all(pin in env for pin in pins), pins
    assert any(installer in step for step in recipe.env_steps)
    assert "build-essential" in recipe.system_packages  # compiled extensions
    helpers = version in ("1.3", "3.1")  # setup.py + astropy-helpers until 4.1
    assert any("astropy_helpers" in step for step in recipe.instance_steps) is helpers
    # the spec's setuptools==68.0.0 pin of pyproject.toml's build requirements, from 4.3 on
    assert any("setuptools==68.0.0" in step for step in recipe.instance_steps) is (not helpers)
    # pip 26 builds setup.py-only astropy in the environment (as `setup.py develop` did), with its
    # Cython; pip 21 on 3.6 still runs `setup.py develop` itself; pyproject-era builds stay isolated
    assert recipe.install.endswith("--no-build-isolation") is (version == "3.1")
    assert ("'cython>=0.29.13'" in env) is (version == "3.1")
    assert recipe.test_cmd.startswith("pytest -rA")
    # MarkupSafe 1.0's setup.py imports setuptools.Feature (gone in 46): that step's builds stay below 46
    assert ("'setuptools<46'" in env and "--build-constraints=" in env) is (version == "1.3")


def _repo_with_submodule(tmp_path: Path, run_git, sha: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    run_git(repo, "init", "-q")
    (repo / "setup.py").write_text("import ah_bootstrap\n")
    run_git(repo, "add", "setup.py")
    run_git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sha},astropy_helpers")
    run_git(repo, "commit", "-qm", "base")
    (repo / "astropy_helpers").mkdir()  # what a clone without submodules leaves
    return repo


def _fake_pip(tmp_path: Path) -> Path:
    """A `python` whose `-m pip download ... astropy-helpers==X -d DIR` leaves that release's sdist."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "python"
    script.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in astropy-helpers==*) v=${a#astropy-helpers==};; esac; '
        'prev=$last; last=$a; [ "$prev" = -d ] && d=$a; done\n'
        'mkdir -p "$d" && cp "$FAKE_SDIST_DIR/astropy-helpers-$v.tar.gz" "$d/"\n'
    )
    script.chmod(0o755)
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    for release in set(HELPERS_RELEASE.values()):
        top = tmp_path / "src" / f"astropy-helpers-{release}"
        (top / "astropy_helpers").mkdir(parents=True)
        (top / "astropy_helpers" / "__init__.py").write_text(f"__version__ = {release!r}\n")
        with tarfile.open(sdists / f"astropy-helpers-{release}.tar.gz", "w:gz") as tar:
            tar.add(top, arcname=top.name)
    return bin_dir


def _run_step(repo: Path, bin_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_SDIST_DIR": str(tmp_path / "sdists"),
    }
    return subprocess.run(
        ["bash", "-c", f"set -e\n{fill_helpers_step()}"], cwd=repo, env=env, capture_output=True, text=True
    )


def test_the_submodule_is_filled_with_its_release_and_git_sees_no_change(tmp_path, run_git):
    sha = "ce42e6e238c200a4715785ef8c9d233f612d0c75"
    repo = _repo_with_submodule(tmp_path, run_git, sha)
    done = _run_step(repo, _fake_pip(tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        repo / "astropy_helpers" / "astropy_helpers" / "__init__.py"
    ).read_text() == "__version__ = '3.2.2'\n"
    # the filled folder is an uninitialised submodule to git: no diff, and `git add -A` (agents' submit
    # command) neither fails nor picks it up
    assert run_git(repo, "status", "--porcelain") == ""
    run_git(repo, "add", "-A")
    assert run_git(repo, "diff", "--cached", "--name-only") == ""


def test_an_unknown_submodule_commit_fails_by_name_and_no_submodule_is_a_no_op(tmp_path, run_git):
    repo = _repo_with_submodule(tmp_path, run_git, UNKNOWN)
    bin_dir = _fake_pip(tmp_path)
    done = _run_step(repo, bin_dir, tmp_path)
    assert done.returncode == 1
    assert f"astropy_helpers at {UNKNOWN}: no known astropy-helpers release" in done.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    run_git(plain, "init", "-q")
    (plain / "pyproject.toml").write_text("")
    run_git(plain, "add", ".")
    run_git(plain, "commit", "-qm", "4.1 and later: no submodule")
    done = _run_step(plain, bin_dir, tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (plain / "astropy_helpers").exists()


@pytest.mark.realdata
def test_every_verified_astropy_base_commit_with_the_submodule_has_a_known_release():
    mirror = Path(os.environ.get("PATCHFLEET_MIRRORS", "/nonexistent"))
    layout = os.environ.get("PATCHFLEET_MIRROR_LAYOUT", "{owner}/{name}.git")
    git_dir = mirror / layout.format(owner="astropy", name="astropy")
    dataset = SHARED / "swebench_verified.jsonl"
    if not dataset.exists() or not git_dir.is_dir():
        pytest.skip("needs ../shared/data and an astropy mirror in PATCHFLEET_MIRRORS")
    rows = [json.loads(line) for line in dataset.read_text().splitlines()]
    astropy = [r for r in rows if r["repo"] == "astropy/astropy"]
    assert len(astropy) == 22
    with_submodule = 0
    for row in astropy:
        listed = subprocess.run(
            ["git", "--git-dir", str(git_dir), "ls-tree", row["base_commit"], "astropy_helpers"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        step = any("astropy_helpers" in s for s in recipe_for(task(row["version"])).instance_steps)
        assert bool(listed) is step, row["instance_id"]
        if listed:
            with_submodule += 1
            assert listed[2] in HELPERS_RELEASE, row["instance_id"]
    assert with_submodule == 6


@pytest.mark.parametrize(
    ("repo", "version", "files", "expected"),
    [
        ("django/django", "3.0", {"tests/requirements/py3.txt": "asgiref\nsqlparse\n"}, "sqlparse"),
        (
            "matplotlib/matplotlib",
            "3.1",
            {"requirements/dev/dev-requirements.txt": "pytest-xvfb\n"},
            "pytest-xvfb",
        ),
        (
            "matplotlib/matplotlib",
            "3.7",
            {"environment.yml": "dependencies:\n  - pip:\n    - mpl-sphinx\n"},
            "mpl-sphinx",
        ),
        ("scikit-learn/scikit-learn", "1.3", {}, "numpy"),
    ],
)
def test_recipes_of_the_repositories_not_measured_here_read_their_files_through_a_clone_url(
    tmp_path, run_git, repo, version, files, expected
):
    """django, matplotlib and scikit-learn are too large to bring here: their recipes read what they need
    through the default source, a clone URL (a file:// remote stands in for GitHub)."""
    from patchfleet.data.sources import CloneUrl

    owner, name = repo.split("/")
    remote = tmp_path / f"{owner}+{name}"
    remote.mkdir()
    run_git(remote, "init", "-q", "-b", "main")
    for path, text in {"setup.py": "", **files}.items():
        (remote / path).parent.mkdir(parents=True, exist_ok=True)
        (remote / path).write_text(text)
    run_git(remote, "add", "-A")
    run_git(remote, "commit", "-qm", "base")
    sha = run_git(remote, "rev-parse", "HEAD").strip()
    source = CloneUrl(template=f"file://{tmp_path}/{{owner}}+{{name}}")
    t = Task(id="x", repo=repo, base_commit=sha, problem_statement="", version=version)
    recipe = recipe_for(t, source)
    assert expected in "\n".join(recipe.env_steps)
    assert recipe.install and recipe.test_cmd
