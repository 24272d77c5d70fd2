"""The bot's branch: a commit of the chosen patch on the checked-out commit, pushed with the token.

The commit is built in a private index (`GIT_INDEX_FILE`), so the checkout the fix ran on is left as it
was. The token reaches git only through `GIT_CONFIG_*` environment variables (an `http.extraheader`), never
through a URL or an argument, which git, gitpython's errors and process listings would show.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import git

from patchfleet.errors import GitHubError, PatchApplyError


def _identity(name: str, email: str) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def commit_patch(
    repo_path: Path, patch: str, branch: str, message: str, author: tuple[str, str]
) -> tuple[str, str]:
    """Commit `patch` on top of HEAD as `refs/heads/<branch>`; returns (commit sha, base sha)."""
    repo = git.Repo(repo_path)
    base = repo.head.commit.hexsha
    with tempfile.TemporaryDirectory(prefix="patchfleet-bot-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        patch_file = Path(tmp) / "fix.patch"
        patch_file.write_text(patch if patch.endswith("\n") else patch + "\n")
        repo.git.read_tree(base, env=env)
        try:
            repo.git.apply("--cached", "--whitespace=nowarn", str(patch_file), env=env)
        except git.GitCommandError as exc:
            raise PatchApplyError(
                f"the chosen patch does not apply to {base[:12]}: {exc.stderr.strip()}"
            ) from exc
        tree = repo.git.write_tree(env=env)
        sha = repo.git.commit_tree(tree, "-p", base, "-m", message, env={**env, **_identity(*author)})
    repo.git.update_ref(f"refs/heads/{branch}", sha)
    return sha, base


def auth_env(token: str, server_url: str) -> dict[str, str]:
    """Git configuration, as environment, that sends the token to `server_url` and to nothing else.

    The empty first value clears an extraheader that actions/checkout may have persisted for another
    token; two Authorization headers would be refused.
    """
    key = f"http.{server_url.rstrip('/')}/.extraheader"
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": key,
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": key,
        "GIT_CONFIG_VALUE_1": f"AUTHORIZATION: basic {basic}",
        "GIT_TERMINAL_PROMPT": "0",
    }


def push(repo_path: Path, remote: str, sha: str, branch: str, token: str, server_url: str) -> None:
    """Force-push `sha` to the bot's branch: a re-trigger replaces the previous attempt."""
    repo = git.Repo(repo_path)
    try:
        repo.git.push(remote, f"+{sha}:refs/heads/{branch}", env=auth_env(token, server_url))
    except git.GitCommandError as exc:
        raise GitHubError(f"git push of {branch} failed: {exc.stderr.strip()}") from exc
