"""Repository sources: where the code of `owner/name` at a commit comes from.

Every source produces the same thing: a fresh git repository holding exactly one commit, the base
commit, checked out on branch `main`. A single shallow commit keeps instance layers small and keeps the
future out of reach: an agent cannot find the upstream fix with `git log --all`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from patchfleet.errors import RepoSourceError

GIT_ENV_FLAGS = ("-c", "protocol.version=2", "-c", "advice.detachedHead=false")


class RepoSource(Protocol):
    """Something that can put a repository at a commit into a directory."""

    def location(self, repo: str) -> str:
        """A URL or path that `git fetch` understands for `repo` (`owner/name`)."""
        ...

    def materialize(self, repo: str, commit: str, dest: Path) -> str: ...

    def read_file(self, repo: str, commit: str, path: str) -> str | None: ...


class _GitSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    def location(self, repo: str) -> str:
        raise NotImplementedError

    def materialize(self, repo: str, commit: str, dest: Path) -> str:
        """Fetch `commit` of `repo` into a new single-commit repository at `dest`; return the full sha."""
        return materialize_from(self.location(repo), commit, dest)

    def read_file(self, repo: str, commit: str, path: str) -> str | None:
        """The text of `path` at `commit`, or None when the file does not exist there."""
        location = self.location(repo)
        if Path(location).exists():
            done = subprocess.run(
                ["git", "--git-dir", _git_dir(Path(location)), "show", f"{commit}:{path}"],
                capture_output=True,
                text=True,
                errors="replace",
            )
            return done.stdout if done.returncode == 0 else None
        with tempfile.TemporaryDirectory(prefix="patchfleet-read-") as tmp:
            materialize_from(location, commit, Path(tmp) / "repo")
            target = Path(tmp) / "repo" / path
            return target.read_text(errors="replace") if target.is_file() else None


class MirrorFolder(_GitSource):
    """A folder of bare mirrors, e.g. `{owner}/{name}.git` or `{owner}+{name}` (configurable layout)."""

    type: Literal["mirrors"] = "mirrors"
    root: Path
    layout: str = "{owner}/{name}.git"

    def location(self, repo: str) -> str:
        owner, name = split_repo(repo)
        path = self.root / self.layout.format(owner=owner, name=name, repo=repo)
        if not path.exists():
            raise RepoSourceError(f"no mirror of {repo} at {path} (layout {self.layout!r} under {self.root})")
        return str(path)


class CloneUrl(_GitSource):
    """A remote to clone from; `{owner}`, `{name}` and `{repo}` are filled in."""

    type: Literal["url"] = "url"
    template: str = "https://github.com/{repo}.git"

    def location(self, repo: str) -> str:
        owner, name = split_repo(repo)
        return self.template.format(owner=owner, name=name, repo=repo)


class LocalCheckout(_GitSource):
    """A git working copy on this machine, whatever repository it is (for single-issue runs)."""

    type: Literal["local"] = "local"
    path: Path

    def location(self, repo: str) -> str:
        if not (self.path / ".git").exists() and not (self.path / "HEAD").exists():
            raise RepoSourceError(f"{self.path} is not a git repository")
        return str(self.path.resolve())


RepoSourceConfig = Annotated[MirrorFolder | CloneUrl | LocalCheckout, Field(discriminator="type")]


def split_repo(repo: str) -> tuple[str, str]:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise RepoSourceError(f"repository must be written owner/name, got {repo!r}")
    return owner, name


def _git(*args: str, cwd: Path | None = None, timeout: float = 1800) -> str:
    try:
        done = subprocess.run(
            ["git", *GIT_ENV_FLAGS, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise RepoSourceError(f"git {' '.join(args)} timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise RepoSourceError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def head_commit(path: Path) -> str:
    """The commit HEAD names in the local repository `path`: image tags name a fixed commit, never a ref."""
    return _git("-C", str(path), "rev-parse", "--verify", "HEAD^{commit}").strip()


def materialize_from(location: str, commit: str, dest: Path) -> str:
    """A new repository at `dest` whose only commit is `commit`, fetched shallowly from `location`."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _git("init", "-q", "-b", "main", str(dest))
    if Path(location).exists():
        # a local repository can resolve short shas and refs; a remote only serves full ones
        commit = _git("--git-dir", _git_dir(Path(location)), "rev-parse", "--verify", f"{commit}^{{commit}}")
        commit = commit.strip()
        location = Path(location).resolve().as_uri()  # file:// makes git use the pack protocol (shallow ok)
    _git("fetch", "-q", "--depth", "1", "--no-tags", location, commit, cwd=dest)
    _git("reset", "-q", "--hard", "FETCH_HEAD", cwd=dest)
    sha = _git("rev-parse", "HEAD", cwd=dest).strip()
    if not sha.startswith(commit):
        raise RepoSourceError(f"asked for {commit} from {location}, got {sha}")
    return sha


def _git_dir(path: Path) -> str:
    return str(path / ".git") if (path / ".git").exists() else str(path)
