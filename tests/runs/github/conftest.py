"""Fixtures of the GitHub bot tests: the fake GitHub server, GitHub's published API descriptions, a
checkout with a bare repository as its remote."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.github_server import FAKE_TOKEN, FakeGitHub

PROJECT_ROOT = Path(__file__).resolve().parents[3]
GITHUB_DATA = PROJECT_ROOT.parent / "shared" / "data" / "github"


def _load(name: str) -> dict[str, Any]:
    path = GITHUB_DATA / name
    if not path.exists():
        pytest.skip(f"GitHub's API description {name} is not in ../shared/data/github (see its README)")
    with gzip.open(path, "rt") as handle:
        return json.load(handle)


@pytest.fixture(scope="session")
def rest_spec() -> dict[str, Any]:
    """GitHub's OpenAPI description of the REST API (OpenAPI 3.0)."""
    return _load("rest-api.github.com.json.gz")


@pytest.fixture(scope="session")
def webhook_spec() -> dict[str, Any]:
    """GitHub's published webhook payload schemas (OpenAPI 3.1)."""
    return _load("webhooks.api.github.com.json.gz")


@pytest.fixture
def checkout(tmp_path: Path, run_git) -> tuple[Path, Path]:
    """A checkout of a small buggy repository whose `origin` is a local bare repository (as GitHub)."""
    remote = tmp_path / "remote.git"
    work = tmp_path / "work"
    work.mkdir()
    (work / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (work / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    run_git(work, "init", "-q", "-b", "main")
    run_git(work, "add", "-A")
    run_git(work, "commit", "-qm", "initial")
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    run_git(work, "remote", "add", "origin", str(remote))
    run_git(work, "push", "-q", "origin", "main")
    return work, remote


@pytest.fixture
def gh(checkout) -> Iterator[FakeGitHub]:
    """The fake GitHub of `octo/calc`, whose pushed branches live in the `checkout` fixture's bare repo."""
    with FakeGitHub("octo/calc", token=FAKE_TOKEN, bare_repo=checkout[1]) as fake:
        yield fake
