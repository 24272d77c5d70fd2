"""Repository operations every sandbox shares, written against the `Sandbox` contract only.

They run git inside the sandbox, so any backend (Docker, or a test fake) gets the same behaviour:
the SWE-bench fallback chain for patches, diffs that see new, deleted, renamed and binary files, and a
reset that restores the base state without touching what the environment build left behind.
"""

from __future__ import annotations

import shlex

from patchfleet.errors import SandboxError
from patchfleet.sandbox.base import PatchMethod, PatchResult, Sandbox

SCRATCH = "/tmp/patchfleet"  # per container; sandboxes that share a filesystem pass their own
BASELINE_MARK = "# patchfleet: untracked at base"

# Untracked files that exist at the start (e.g. egg-info written by `pip install -e .`) belong to the
# environment, not to the agent: list them in info/exclude so that diff() ignores them and reset() keeps
# them. Glob characters are escaped so each entry matches exactly one path.
_BASELINE_SCRIPT = r"""
cd {workdir} 2>/dev/null || exit 3
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 3
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
if ! grep -qxF '{mark}' "$exclude" 2>/dev/null; then
  {{ echo '{mark}'; git ls-files -o --directory --exclude-standard \
     | sed -e 's/[][*?!#\\]/\\&/g' -e 's|^|/|'; }} >> "$exclude"
fi
git rev-parse --verify -q {rev}^{{commit}}
"""

_DIFF_SCRIPT = r"""
cd {workdir} || exit 3
mkdir -p {scratch}
index={scratch}/diff.index
cp "$(git rev-parse --git-path index)" "$index" 2>/dev/null || rm -f "$index"
GIT_INDEX_FILE="$index" git add -A || exit 4
GIT_INDEX_FILE="$index" git -c core.quotepath=off diff --cached --binary --no-color --no-ext-diff -M \
  {base} > {scratch}/diff.patch
status=$?
rm -f "$index"
exit $status
"""

HARNESS_PATCH_FILE = "/tmp/patch.diff"  # where the harness puts it, outside the repo `git clean` sweeps
RESET_TREE = "git checkout -- . ; git clean -fd"

_RESET_SCRIPT = "cd {workdir} && git reset -q --hard {base} && git clean -ffdq"

PATCH_COMMANDS = {
    PatchMethod.GIT_APPLY: "git apply --verbose {file}",
    PatchMethod.GIT_APPLY_WHITESPACE: "git apply --verbose --ignore-whitespace {file}",
    # dry run first: `patch` is not atomic, and a half-applied patch must never be left behind
    PatchMethod.PATCH_FUZZ: (
        "patch --batch --fuzz=5 -p1 --dry-run -i {file} && "
        "patch --batch --fuzz=5 -p1 --no-backup-if-mismatch -i {file}"
    ),
}


def prepare_baseline(sandbox: Sandbox, workdir: str, base_commit: str | None) -> str | None:
    """Record the untracked files present at start; return the full base commit (None: no repo)."""
    rev = shlex.quote(base_commit) if base_commit else "HEAD"
    script = _BASELINE_SCRIPT.format(workdir=shlex.quote(workdir), mark=BASELINE_MARK, rev=rev)
    result = sandbox.exec(script, timeout=120)
    if result.exit_code == 3:
        return None
    if not result.ok:
        raise SandboxError(f"cannot read the repository at {workdir}: {result.output.strip()}")
    return result.output.strip().splitlines()[-1]


def forget_baseline(sandbox: Sandbox, workdir: str) -> None:
    """Drop the exclusions `prepare_baseline` wrote, so the tree looks as in a plain container.

    For evaluation: the official harness's `git clean -fd` removes untracked install leftovers that our
    baseline protects, and verdicts must not depend on that difference. diff() and reset() of this
    sandbox then treat those files as the agent's.
    """
    script = (
        f'cd {shlex.quote(workdir)} && exclude="$(git rev-parse --git-path info/exclude)" && '
        f'if [ -f "$exclude" ]; then awk -v m={shlex.quote(BASELINE_MARK)} '
        """'$0 == m { exit } { print }' "$exclude" > "$exclude.tmp" && mv "$exclude.tmp" "$exclude"; fi"""
    )
    result = sandbox.exec(script, timeout=60)
    if not result.ok:
        raise SandboxError(f"cannot drop the baseline exclusions in {workdir}: {result.output.strip()}")


def apply_patch(sandbox: Sandbox, workdir: str, patch: str | bytes, scratch: str = SCRATCH) -> PatchResult:
    """Try each method of the chain in turn; report the first that applied, or every failure."""
    data = patch.encode("utf-8", "surrogateescape") if isinstance(patch, str) else patch
    if not data.strip():
        return PatchResult(applied=True, method=None, log="empty patch: nothing to apply")
    if not data.endswith(b"\n"):
        data += b"\n"  # a patch cut before its final newline is a common artefact of JSON round trips
    patch_file = f"{scratch}/apply.patch"
    sandbox.write_file(patch_file, data)
    log: list[str] = []
    for method, template in PATCH_COMMANDS.items():
        result = sandbox.exec(template.format(file=patch_file), timeout=300, cwd=workdir)
        log.append(f"$ {method.value}\n{result.output.rstrip()}")
        if result.ok:
            return PatchResult(applied=True, method=method, log="\n".join(log))
    return PatchResult(applied=False, method=None, log="\n".join(log))


def diff(sandbox: Sandbox, workdir: str, base_commit: str, scratch: str = SCRATCH) -> str:
    """The patch from the base commit to the working tree, as `git apply` and the harness expect it.

    A throwaway index keeps the agent's own staging area untouched. Bytes that are not UTF-8 survive a
    round trip through `apply_patch` (surrogate escapes).
    """
    script = _DIFF_SCRIPT.format(workdir=shlex.quote(workdir), scratch=scratch, base=shlex.quote(base_commit))
    result = sandbox.exec(script, timeout=300)
    if not result.ok:
        raise SandboxError(f"git diff failed in {workdir}: {result.output.strip()}")
    return sandbox.read_file(f"{scratch}/diff.patch").decode("utf-8", "surrogateescape")


def reset(sandbox: Sandbox, workdir: str, base_commit: str) -> None:
    """Tracked files back to the base commit; files created since the start removed."""
    result = sandbox.exec(
        _RESET_SCRIPT.format(workdir=shlex.quote(workdir), base=shlex.quote(base_commit)), timeout=300
    )
    if not result.ok:
        raise SandboxError(f"reset failed in {workdir}: {result.output.strip()}")


def apply_like_harness(sandbox: Sandbox, patch: str) -> tuple[str | None, str]:
    """Apply a model patch exactly as the official harness does: its own command chain, the tree reset
    to HEAD between attempts, and a patch found already applied counted as applied. Returns the
    command that applied it (None: none did) and the log.

    Not `Sandbox.apply_patch`, whose chain (with a dry run) suits agents: verdicts must not depend on a
    chain of ours. The reset between attempts undoes what a failed attempt left (`--reject` applies the
    hunks it can); the set-up edits survive it because the instance layer commits them.
    """
    from swebench.harness.run_evaluation import GIT_APPLY_CMDS  # heavy import: only evaluation needs it

    if not patch.strip():
        return "empty", "empty patch: nothing to apply"
    sandbox.write_file(HARNESS_PATCH_FILE, patch)
    log = []
    for attempt, command in enumerate(GIT_APPLY_CMDS):
        if attempt:
            sandbox.exec(RESET_TREE, timeout=120)
        result = sandbox.exec(f"{command} {HARNESS_PATCH_FILE}", timeout=120)
        log.append(f"$ {command}\n{result.output}")
        if result.exit_code == 0:
            return command, "\n".join(log)
    check = sandbox.exec(f"git apply --check --reverse {HARNESS_PATCH_FILE}", timeout=120)
    log.append(f"$ git apply --check --reverse\n{check.output}")
    return ("already applied" if check.exit_code == 0 else None), "\n".join(log)
