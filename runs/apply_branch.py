"""`patchfleet fix --apply`: the chosen patch becomes a commit on a new branch of the user's repository.

Nothing is checked out and the user's working tree and index are never touched: the patch is applied to a
throwaway index file (GIT_INDEX_FILE) read from the base commit, written as a tree, committed with
`commit-tree` and pointed at by the new branch, all through gitpython.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import git

from patchfleet.errors import ConfigError, PatchApplyError

FALLBACK_NAME = "patchfleet"
FALLBACK_EMAIL = "patchfleet@users.noreply.github.com"


def commit_to_branch(repo_path: Path, base: str, patch: str, branch: str, message: str) -> str:
    """Commit `patch` on top of `base` as the new branch `branch`; returns the commit's sha."""
    try:
        repo = git.Repo(repo_path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise ConfigError(f"--apply needs a local git repository; {repo_path} is not one") from exc
    if branch in [head.name for head in repo.heads]:
        raise ConfigError(f"branch {branch!r} already exists in {repo_path}; pass another --branch")
    try:
        repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError as exc:
        raise ConfigError(f"{branch!r} is not a valid branch name") from exc
    with tempfile.TemporaryDirectory(prefix="patchfleet-apply-") as tmp:
        index = Path(tmp) / "index"
        patch_file = Path(tmp) / "fix.patch"
        patch_file.write_text(patch if patch.endswith("\n") else patch + "\n")
        env = {"GIT_INDEX_FILE": str(index)}
        repo.git.read_tree(base, env=env)
        errors = []
        for flags in ((), ("--ignore-whitespace",)):
            try:
                repo.git.apply("--cached", *flags, str(patch_file), env=env)
                break
            except git.GitCommandError as exc:
                errors.append(str(exc.stderr).strip())
        else:
            raise PatchApplyError(f"the patch does not apply to {base[:12]}: {' / '.join(errors)}")
        tree = repo.git.write_tree(env=env)
        commit = repo.git.commit_tree(tree, "-p", base, "-m", message, env={**env, **_identity(repo)})
    repo.git.update_ref(f"refs/heads/{branch}", commit, "0" * 40)  # fails rather than overwrite a branch
    return commit


def _identity(repo: git.Repo) -> dict[str, str]:
    """The user's configured identity when there is one, else patchfleet's (commit-tree needs one)."""
    reader = repo.config_reader()
    name = reader.get_value("user", "name", "") or os.environ.get("GIT_AUTHOR_NAME") or FALLBACK_NAME
    email = reader.get_value("user", "email", "") or os.environ.get("GIT_AUTHOR_EMAIL") or FALLBACK_EMAIL
    return {
        "GIT_AUTHOR_NAME": str(name),
        "GIT_AUTHOR_EMAIL": str(email),
        "GIT_COMMITTER_NAME": str(name),
        "GIT_COMMITTER_EMAIL": str(email),
    }
