"""Shared fixtures. Docker tests use the real engine and real images built by patchfleet itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# tests/ has no __init__.py (importlib mode): make `fakes` importable for every test package.
TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fakes.openai_server import FakeOpenAIServer  # noqa: E402


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """An OpenAI-compatible server on 127.0.0.1 for the real litellm client (script it per test)."""
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(scope="session")
def run_git():
    """`git` in a directory with a fixed identity, for tests that build repositories."""
    return git


@pytest.fixture(scope="session")
def docker_backend():
    """A backend on the real engine; fails loudly (no skip) when the engine is missing."""
    from patchfleet.sandbox.docker import DockerBackend
    from patchfleet.sandbox.engine import connect
    from patchfleet.sandbox.trust import HostTrust

    return DockerBackend(connect(), max_concurrent_starts=4, trust=HostTrust.from_env())


@pytest.fixture(scope="session", autouse=True)
def remove_instance_images_built_here() -> Iterator[None]:
    """At the end of the session, remove the instance layers this process built (labelled with its pid:
    never another session's). Environment layers and the base stay, shared by content hash."""
    yield
    from patchfleet.sandbox.images import BUILT_BY_LABEL, LAYER_LABEL, built_by

    labels = [f"label={BUILT_BY_LABEL}={built_by()}", f"label={LAYER_LABEL}=instance"]
    query = ["docker", "images", "-q", *(arg for label in labels for arg in ("--filter", label))]
    try:
        listed = subprocess.run(query, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return  # no Docker here, so nothing was built
    ids = sorted(set(listed.stdout.split()))
    if ids:
        subprocess.run(["docker", "rmi", *ids], capture_output=True, timeout=300)  # one still in use stays


@pytest.fixture(scope="session")
def base_image(docker_backend) -> str:
    """The bookworm base image: pulled, or debootstrapped on first use (about a minute)."""
    from patchfleet.sandbox.images import ImageBuilder, ImageSpec

    return ImageBuilder(docker_backend).ensure(ImageSpec())


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory) -> Path:
    """A small real git repository with a bug, a test, an ignored file and a binary file."""
    repo = tmp_path_factory.mktemp("sample") / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n")
    (repo / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    (repo / "notes.txt").write_text("line one   \nline two\t\n\nline four  \n")
    (repo / "logo.bin").write_bytes(bytes(range(256)) * 4)
    (repo / ".gitignore").write_text("*.pyc\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    return repo


@pytest.fixture(scope="session")
def repo_image(docker_backend, base_image, sample_repo) -> Iterator[str]:
    """Base image + instance layer with `sample_repo` in /testbed and an install step's leftovers;
    removed at the end of the session if this session built it (the shared base image stays)."""
    from patchfleet.data.sources import LocalCheckout
    from patchfleet.sandbox.images import ImageBuilder, ImageSpec, InstanceLayer

    head = git(sample_repo, "rev-parse", "HEAD").strip()
    layer = InstanceLayer(
        key="sample-calc",
        repo="local/calc",
        commit=head,
        steps=("mkdir -p build_artifacts && echo built > build_artifacts/out.txt",),
    )
    builder = ImageBuilder(docker_backend, repo_source=LocalCheckout(path=sample_repo))
    spec = ImageSpec(instance=layer)
    built_here = not builder.exists(spec.tag())
    yield builder.ensure(spec)
    if built_here:
        subprocess.run(["docker", "rmi", spec.tag()], capture_output=True)  # in use elsewhere: it stays


@pytest.fixture
def sandbox_factory(docker_backend) -> Iterator:
    """Start sandboxes that are closed at the end of the test, whatever happens."""
    from patchfleet.sandbox.base import SandboxSpec

    started = []

    def start(image: str, **kwargs):
        sandbox = docker_backend.start(SandboxSpec(image=image, labels={"role": "test"}, **kwargs))
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.close()
