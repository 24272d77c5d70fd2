"""The evaluation script of one instance, in the shape the official harness runs (`make_eval_script_list_py`
of swebench 4.1.0, with swebench 5's recorded test exit code). Evaluation only: it embeds the test patch.

The log it produces is what `grading` parses: `set -x` echoes the `: '>>>>> Start Test Output'` markers
around the test command's output, and `>>>>> Test Exit Code: N` follows the end marker.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT, TEST_EXIT_CODE, TEST_EXIT_CODE_VAR

from patchfleet.data.upstream import published_specs

if TYPE_CHECKING:
    from patchfleet.data.recipes import Recipe

REPO_DIR = "/testbed"
HEREDOC = "EOF_114329324912"
_DIFF_HEADER = re.compile(r"^diff --git a/(?P<old>.*) b/(?P<new>.*)$", re.MULTILINE)


def get_test_directives(repo: str, test_patch: str) -> list[str]:
    """What the harness passes to the test command: the files the test patch touches, minus data files;
    for Django, dotted test modules relative to `tests/` (as `get_test_directives`)."""
    non_test = published_specs().non_test_exts
    files = [m["new"] for m in _DIFF_HEADER.finditer(test_patch)]
    files = [f for f in files if not f.endswith(non_test)]
    if repo == "django/django":
        files = [f.removesuffix(".py").removeprefix("tests/").replace("/", ".") for f in files]
    return files


def files_before(patch: str) -> list[str]:
    """Files a patch modifies or deletes, i.e. that exist before it (the harness's `get_modified_files`)."""
    files = []
    for block in re.split(r"^(?=diff --git )", patch, flags=re.MULTILINE):
        header = _DIFF_HEADER.match(block)
        if header and not re.search(r"^(new file mode|--- /dev/null)", block, re.MULTILINE):
            files.append(header["old"])
    return files


def eval_script(
    recipe: Recipe, *, test_patch: str, base_commit: str, reinstall: bool = True, workdir: str = REPO_DIR
) -> str:
    """The bash script that applies the hidden test patch to the (already patched) repository and runs
    the tests between the official markers; the model patch must be applied before it runs."""
    restore = [shlex.quote(f) for f in files_before(test_patch)]
    reset = f"git checkout {shlex.quote(base_commit)} {' '.join(restore)}" if restore else ":"
    directives = get_test_directives(recipe.repo, test_patch)
    lines = [
        "#!/bin/bash",
        "set -uxo pipefail",
        f"cd {workdir}",
        *recipe.eval_prelude,
        f"git config --global --add safe.directory {workdir}",
        f"cd {workdir}",
        "git status",
        # the harness's `git show` prints the last upstream commit; in our one-commit repositories it
        # would print the whole tree (tens of MB for sympy) into the log, so only its summary is shown
        "git show --stat",
        f"git -c core.fileMode=false diff {shlex.quote(base_commit)}",
        *([recipe.install] if reinstall and recipe.install else []),
        reset,
        f"git apply -v - <<'{HEREDOC}'\n{test_patch}\n{HEREDOC}",
        f": '{START_TEST_OUTPUT}'",
        recipe.test_command(directives),
        f"{TEST_EXIT_CODE_VAR}=$?",
        f": '{END_TEST_OUTPUT}'",
        f'echo "{TEST_EXIT_CODE}: ${TEST_EXIT_CODE_VAR}"',
        reset,
    ]
    return "\n".join(lines) + "\n"


CONDA_ENV = "testbed"
CONDA_ACTIVATE = "source /opt/miniconda3/bin/activate"


def official_eval_script(
    repo: str, spec: dict[str, Any], *, test_patch: str, base_commit: str, workdir: str = REPO_DIR
) -> str:
    """The harness's own eval script for an official SWE-bench image, where the environment is the conda
    env `testbed` and `/testbed` holds the repository's history up to `base_commit`: swebench 4.1.0's
    `make_eval_script_list_py` from the published `spec` (eval_commands, install, test_cmd), with the test
    exit code recorded by swebench 5's own `record_test_exit_code`."""
    from swebench.harness.utils import record_test_exit_code

    reset = f"git checkout {base_commit} {' '.join(files_before(test_patch))}"
    test_cmd = spec["test_cmd"] if isinstance(spec["test_cmd"], str) else " ".join(spec["test_cmd"])
    activate = [CONDA_ACTIVATE, f"conda activate {CONDA_ENV}"]
    lines = [
        *activate,
        f"cd {workdir}",
        *spec.get("eval_commands", ()),
        f"git config --global --add safe.directory {workdir}",
        f"cd {workdir}",
        "git status",
        "git show",
        f"git -c core.fileMode=false diff {base_commit}",
        *activate,
        *([spec["install"]] if "install" in spec else []),
        reset,
        f"git apply -v - <<'{HEREDOC}'\n{test_patch}\n{HEREDOC}",
        f": '{START_TEST_OUTPUT}'",
        " ".join([test_cmd, *get_test_directives(repo, test_patch)]),
        f": '{END_TEST_OUTPUT}'",
        reset,
    ]
    return "\n".join(["#!/bin/bash", "set -uxo pipefail", *record_test_exit_code(lines)]) + "\n"
