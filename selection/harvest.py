"""Harvested tests: the scripts trajectories wrote and ran, and the tests candidate patches add.

From a trajectory (ours, mini-swe-agent's or SWE-agent's) the commands are replayed on paper: files
written by here-docs, `echo`/`printf` redirections and editor actions are tracked with their content at
each step, and every run of a written script (`python reproduce.py`, `cd repro && pylint x.py`, an inline
`python - <<EOF` or `python -c`) becomes a `TestCase` holding the files as they were when it ran. Scripts
that edit the repository (`apply_fix.py`), files under the repository's own packages, and scripts whose
files were later changed by commands that cannot be followed (`sed -i`, a generator) are left out.

From candidate patches: the test functions each one adds or changes, run with the repository's runner
against the candidate's version of that test file.

Nothing here reads an `EvalSpec`: only trajectories and candidate patches.
"""

from __future__ import annotations

import ast
import json
import logging
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchfleet.agent.actions import BASH_BLOCK
from patchfleet.agent.config import SUBMIT_SENTINEL
from patchfleet.agent.patch import split_patch
from patchfleet.agent.trajectory import read_trajectory
from patchfleet.errors import DataError, SandboxError
from patchfleet.sandbox.base import REPO_DIR
from patchfleet.selection.model import Candidate, Contract, TestCase, TestKind
from patchfleet.selection.shellwords import Command, Pipeline, parse

log = logging.getLogger(__name__)

HARVEST_TIMEOUT = 60.0
CANDIDATE_TEST_TIMEOUT = 300.0

# Programs that only look at, move or build files: naming a written file does not run it.
_NOT_RUNS_WORDS = """
cat ls head tail grep egrep fgrep rg sed nl rm mv cp mkdir rmdir echo printf diff cmp find wc chmod touch
git cd pip pip3 tee less more awk sort uniq xargs file stat test [ true false export source . tree du df
which type hexdump xxd od cut tr realpath readlink basename dirname ln patch vi vim nano apt apt-get conda
sleep kill pkill ps env
"""
_NOT_RUNS = frozenset(_NOT_RUNS_WORDS.split())
# Commands after which a tracked file's content can no longer be known from the trajectory alone.
_IN_PLACE = {"sed": ("-i", "--in-place"), "perl": ("-i", "-pi"), "truncate": ("",), "dos2unix": ("",)}
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_PY_FLAGS_WITH_ARG = frozenset({"-W", "-X", "-Q"})
_WRAPPERS = frozenset({"timeout", "time", "nohup", "env", "sudo", "exec", "command", "stdbuf"})
_WRITES = re.compile(
    r"open\([^)]*['\"][rwab+]*[wa+][rwab+]*['\"]|\.write_text\(|\.write_bytes\(|fileinput\.|"
    r"shutil\.(copy|move)|os\.(rename|replace)\("
)
_EDIT_NAMES = re.compile(r"^(apply|fix|patch|modify|update|edit|change|replace|rewrite|refactor|insert|add)")
_CONTRACT_EXIT_2 = re.compile(r"\bexit\([^)\n]*\b2\b|\bexit 2\b")
_REPRO_NAME = re.compile(r"repro|issue|bug", re.IGNORECASE)
_RETURNCODE = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")
_COMMON_REPO_DIRS = ("doc", "docs", "tests", "test", "testing", "src", "lib")
_ALIASES = {"scikit-learn": ("sklearn",), "pytest": ("_pytest",), "pillow": ("PIL",)}


# -- trajectories ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One executed action of a trajectory: a shell command, or an editor action (SWE-agent)."""

    index: int
    command: str
    exit_code: int | None = None


def harvest_from_trajectory(
    path: str | Path,
    instance_id: str,
    *,
    workdir: str = REPO_DIR,
    timeout: float = HARVEST_TIMEOUT,
    versions: str = "last",
    max_tests: int | None = None,
) -> list[TestCase]:
    """The scripts the trajectory at `path` wrote and ran, each as a HARVESTED `TestCase`.

    `versions="last"` keeps, per distinct run command, the files as they were at its last run (a script
    rewritten and re-run is one test); `"all"` keeps every distinct version that ran. `max_tests` keeps
    that many, reproduction scripts (by name) first, then in the order they ran.
    """
    path = Path(path)
    document = _read(path)
    steps, submission = _steps(document, path)
    tracker = _Tracker(workdir, repo_packages(instance_id, submission), modified_paths(submission))
    for step in steps:
        tracker.step(step)
    runs = tracker.runs
    if versions == "last":
        last: dict[str, _Run] = {}
        for run in runs:
            last.pop(run.key, None)  # re-insert so the order follows the last run
            last[run.key] = run
        runs = list(last.values())
    tests: dict[str, TestCase] = {}
    for run in runs:
        codes = [r.exit_code for r in tracker.runs if r.key == run.key and r.exit_code is not None]
        test = TestCase.make(
            instance_id=instance_id,
            kind=TestKind.HARVESTED,
            contract=Contract.EXIT_CODE if _follows_exit_contract(run, codes) else Contract.BEHAVIOUR,
            command=run.test_command(workdir),
            files=run.files,
            origin=f"{path.name}:step {run.step}",
            timeout=timeout,
        )
        tests.setdefault(test.id, test)
    ranked = sorted(tests.values(), key=lambda t: not _REPRO_NAME.search(t.command))  # stable
    return ranked[:max_tests] if max_tests is not None else ranked


def trajectory_files(folders: Iterable[str | Path], instance_id: str) -> list[Path]:
    """An instance's trajectory files in folders laid out as `<id>.traj.json` (mini-swe-agent,
    ../shared/data/trajectories) or `<id>/<i>.traj.json` (`patchfleet trajectories`)."""
    found: list[Path] = []
    for folder in map(Path, folders):
        single = folder / f"{instance_id}.traj.json"
        if single.is_file():
            found.append(single)
        nested = folder / instance_id
        if nested.is_dir():
            found += sorted(nested.glob("*.traj.json"), key=lambda p: (len(p.name), p.name))
    return found


def harvest_from_trajectories(
    paths: Iterable[str | Path], instance_id: str, *, max_tests: int | None = None
) -> list[TestCase]:
    """Harvested tests of several trajectories of one instance, without duplicates (same files and
    command), reproduction scripts first; a file that cannot be read is skipped and named in the log."""
    tests: dict[str, TestCase] = {}
    for path in paths:
        try:
            harvested = harvest_from_trajectory(path, instance_id)
        except DataError as exc:
            log.warning("skipping trajectory: %s", exc)
            continue
        for test in harvested:
            tests.setdefault(test.id, test)
    ranked = sorted(tests.values(), key=lambda t: not _REPRO_NAME.search(t.command))
    return ranked[:max_tests] if max_tests is not None else ranked


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read trajectory {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise DataError(f"{path}: a trajectory file holds a JSON object")
    return document


def _steps(document: dict[str, Any], path: Path) -> tuple[list[Step], str]:
    """Executed actions and the final submission, from any of the three formats."""
    if isinstance(document.get("trajectory"), list):  # SWE-agent
        info = document.get("info") or {}
        steps = [
            Step(i, str(entry.get("action") or ""))
            for i, entry in enumerate(document["trajectory"], 1)
            if isinstance(entry, dict)
        ]
        return steps, str(info.get("submission") or "")
    document = read_trajectory(path)  # ours or mini-swe-agent's: checks `messages` and `info`
    messages = document["messages"]
    steps = []
    number = 0
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        number += 1
        command = _command_of(message)
        if command is None:
            continue
        following = messages[i + 1] if i + 1 < len(messages) else {}
        steps.append(Step(number, command, _exit_code(following)))
    return steps, str(document["info"].get("submission") or "")


def _command_of(message: dict[str, Any]) -> str | None:
    calls = message.get("tool_calls") or []
    if calls:
        if len(calls) != 1:
            return None
        try:
            arguments = json.loads(calls[0].get("function", {}).get("arguments") or "{}")
        except json.JSONDecodeError:
            return None
        command = arguments.get("command") if isinstance(arguments, dict) else None
        return command.strip() if isinstance(command, str) and command.strip() else None
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    blocks = BASH_BLOCK.findall(content or "")
    return blocks[0].strip() if len(blocks) == 1 and blocks[0].strip() else None


def _exit_code(observation: dict[str, Any]) -> int | None:
    if observation.get("role") not in ("user", "tool"):
        return None
    extra = observation.get("extra") or {}
    if isinstance(extra.get("exit_code"), int):
        return extra["exit_code"]
    match = _RETURNCODE.search(str(observation.get("content") or ""))
    return int(match.group(1)) if match else None


def repo_packages(instance_id: str, submission: str = "") -> set[str]:
    """Names under which a repository's code is imported: from the id (`owner__name-123`) and the
    top-level directories of the files the submitted patch modifies (new files are often scratch:
    mini-swe-agent submits with `git add -A`)."""
    names: set[str] = set()
    repo = re.sub(r"-\d+$", "", instance_id.partition("__")[2] or instance_id)
    if repo:
        names |= {repo, repo.replace("-", "_"), *_ALIASES.get(repo.lower(), ())}
    for path in modified_paths(submission):
        parts = path.split("/")
        if parts[0] in ("src", "lib") and len(parts) > 2:
            names.add(parts[1])
        elif len(parts) > 1 and parts[0] not in _COMMON_REPO_DIRS:
            names.add(parts[0])
    return {n for n in names if n}


def modified_paths(patch: str) -> list[str]:
    """Files a patch changes that existed before it (not the ones it creates)."""
    return [path for path, section in _sections(patch) if not _creates(section)]


@dataclass
class _File:
    content: str | None  # None: written by something that cannot be followed
    step: int


@dataclass
class _Run:
    step: int
    cwd: str
    command: str  # the run command as written, without pipes or output files
    code: str  # the script or inline code, for filters
    files: dict[str, str]
    exit_code: int | None
    exports: tuple[str, ...] = ()  # `export A=b` run earlier in the same action

    key: str = ""  # what makes two runs the same test: directory, words and inline code, not `2>&1`

    def test_command(self, workdir: str) -> str:
        cwd = shlex.quote(self.cwd)
        exists = self.cwd == workdir or any(p.startswith(self.cwd + "/") for p in self.files)
        parts = [f"cd {cwd}" if exists else f"mkdir -p {cwd} && cd {cwd}", *self.exports]
        program = self.command.split(maxsplit=1)[0] if self.command.strip() else ""
        if posixpath.normpath(posixpath.join(self.cwd, program)) in self.files:
            parts.append(f"chmod +x {program}")  # files are written without their mode
        return " && ".join([*parts, self.command])


@dataclass
class _Tracker:
    """Follows what a trajectory wrote, step by step, and records the runs of written scripts."""

    workdir: str
    packages: set[str]
    submitted: list[str]
    files: dict[str, _File] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # paths read before being written: repository files
    tainted_dirs: set[str] = field(default_factory=set)
    created_dirs: set[str] = field(default_factory=set)  # made by `mkdir`: scratch, not the repository
    exports: list[str] = field(default_factory=list)  # of the current action
    runs: list[_Run] = field(default_factory=list)
    open_file: str | None = None  # SWE-agent's editor

    # -- dispatch --------------------------------------------------------------------------------------
    def step(self, step: Step) -> None:
        command = step.command
        if SUBMIT_SENTINEL in command:
            return
        if self._editor(step):
            return
        cwd = self.workdir
        self.exports = []
        for pipeline in parse(command):
            cwd = self._pipeline(pipeline, cwd, step)

    def _pipeline(self, pipeline: Pipeline, cwd: str, step: Step) -> str:
        commands = pipeline.commands
        first = commands[0]
        argv = _unwrap(first.argv)
        program = posixpath.basename(argv[0]) if argv else ""
        if program == "cd" and len(commands) == 1:
            target = argv[1] if len(argv) > 1 else "/root"
            return self.resolve(target, cwd)
        heredoc = next(iter(first.heredocs), None)
        # cat <<EOF > f, cat > f <<EOF, cat <<EOF | tee f, tee f <<EOF, echo/printf ... > f
        if program == "cat" and heredoc is not None and len(argv) == 1:
            self._write_outputs(commands, heredoc.content(), cwd, step)
            return cwd
        if program == "tee" and heredoc is not None:
            self._write_tee(argv, heredoc.content(), cwd, step)
            return cwd
        if program in ("echo", "printf") and first.stdout_files():
            text = _echo(argv) if program == "echo" else _printf(argv)
            self._write_outputs(commands, text, cwd, step)
            return cwd
        if program == "cat" and len(argv) == 2 and first.stdout_files():
            source = self.files.get(self.resolve(argv[1], cwd))
            self._write_outputs(commands, source.content if source else None, cwd, step)
            return cwd
        if program == "export" and len(commands) == 1:
            self.exports.append(first.text())
            return cwd
        if program == "mkdir":
            self.created_dirs.update(self.resolve(a, cwd) for a in argv[1:] if not a.startswith("-"))
            return cwd
        if program in ("rm", "mv", "cp"):
            self._file_op(program, argv[1:], cwd, step)
            return cwd
        for command in commands:
            self._other(command, cwd, step, run_allowed=command is first)
        return cwd

    # -- writes ----------------------------------------------------------------------------------------
    def _write_outputs(self, commands: list[Command], text: str | None, cwd: str, step: Step) -> None:
        for target, append in commands[0].stdout_files():
            self.write(self.resolve(target, cwd), text, append, step.index)
        for command in commands[1:]:
            argv = _unwrap(command.argv)
            if argv and posixpath.basename(argv[0]) == "tee":
                self._write_tee(argv, text, cwd, step)

    def _write_tee(self, argv: list[str], text: str | None, cwd: str, step: Step) -> None:
        append = any(a in ("-a", "--append") for a in argv[1:])
        for target in (a for a in argv[1:] if not a.startswith("-")):
            self.write(self.resolve(target, cwd), text, append, step.index)

    def write(self, path: str, text: str | None, append: bool, step: int) -> None:
        if path.startswith("/dev/"):
            return
        previous = self.files.get(path)
        if append:
            if previous is not None and previous.content is not None and text is not None:
                content = previous.content + text
            else:
                content = None  # appended to a file this trajectory did not write (or cannot follow)
        else:
            content = text
        self.files[path] = _File(content, step)

    def _file_op(self, program: str, args: list[str], cwd: str, step: Step) -> None:
        paths = [self.resolve(a, cwd) for a in args if not a.startswith("-")]
        if program == "rm":
            for gone in paths:
                for known in list(self.files):
                    if known == gone or known.startswith(gone.rstrip("/") + "/"):
                        del self.files[known]
            return
        if len(paths) < 2:
            return
        *sources, target = paths
        for source in sources:
            moved = {p: f for p, f in self.files.items() if p == source or p.startswith(source + "/")}
            if not moved and program == "cp":
                continue
            into_dir = len(sources) > 1 or target in self._dirs()
            base = posixpath.join(target, posixpath.basename(source)) if into_dir else target
            for known, state in moved.items():
                self.files[base + known[len(source) :]] = _File(state.content, step.index)
                if program == "mv":
                    del self.files[known]

    def _dirs(self) -> set[str]:
        return {posixpath.dirname(p) for p in self.files}

    # -- everything else: runs, in-place edits, reads -----------------------------------------------
    def _other(self, command: Command, cwd: str, step: Step, *, run_allowed: bool) -> None:
        argv = _unwrap(command.argv)
        if not argv:
            return
        program = posixpath.basename(argv[0])
        args = [self.resolve(a, cwd) for a in argv[1:] if not a.startswith("-")]
        for target, _ in command.stdout_files():  # output of some program: content unknown
            self.write(self.resolve(target, cwd), None, False, step.index)
        in_place = _IN_PLACE.get(program)
        if in_place is not None and (in_place == ("",) or any(a.startswith(in_place) for a in argv[1:])):
            for path in args:
                if path in self.files:
                    self.files[path] = _File(None, step.index)
            return
        if program in _NOT_RUNS:
            self.seen.update(p for p in args if p not in self.files)
            return
        run = self._run(command, argv, cwd, step) if run_allowed else None
        if run is not None:
            self.runs.append(run)
        elif cwd != self.workdir and not _PYTHON.match(program):
            self.tainted_dirs.add(cwd)  # e.g. `cd repro && sphinx-quickstart`: files we cannot see

    def _run(self, command: Command, argv: list[str], cwd: str, step: Step) -> _Run | None:
        program = posixpath.basename(argv[0])
        code = ""
        roots: list[str] = []  # written files or directories the run names
        if _PYTHON.match(program):
            inline, script, rest = _python_args(argv[1:], command)
            if inline is not None:
                code = inline
            elif script is not None:
                path = self.resolve(script, cwd)
                state = self.files.get(path)
                if state is None:
                    return None  # a repository script (setup.py, bin/test) or one we never saw written
                roots.append(path)
                code = state.content or ""
            roots += [self.resolve(a, cwd) for a in rest if not a.startswith("-")]
        else:
            roots = [self.resolve(a, cwd) for a in argv if not a.startswith("-")]
        files = self._closure(roots, code + "\n" + command.text())
        if files is None:
            return None
        if not code and not files:
            return None  # names nothing the trajectory wrote: a repository command (pytest tests/...)
        if any(self._is_repository(p) for p in files) or self._edits_repository(code):
            return None
        mentions = code + "\n" + command.text() + "\n" + "\n".join(files.values())
        if not any(re.search(rf"(?<![\w]){re.escape(p)}(?![\w])", mentions) for p in self.packages):
            return None  # a probe of the interpreter or a library, not of the repository
        text = command.text(keep_file_output=False)
        inline = code if not any(self.files.get(r) for r in roots[:1]) else ""  # a script: its path is enough
        key = "\0".join([cwd, *(w.raw for w in command.assignments), *argv, inline])
        return _Run(step.index, cwd, text, code, files, step.exit_code, tuple(self.exports), key)

    def _closure(self, roots: list[str], text: str) -> dict[str, str] | None:
        """Written files a run needs: those it names, those under directories it names, and those
        their contents name. None when one of them cannot be known."""
        chosen: dict[str, str] = {}
        queue = [text]
        for root in roots:
            if any(root == d or root.startswith(d + "/") for d in self.tainted_dirs):
                return None
            for path, state in self.files.items():
                if path == root or path.startswith(root.rstrip("/") + "/"):
                    if state.content is None:
                        return None
                    if path not in chosen:
                        chosen[path] = state.content
                        queue.append(state.content)
        while queue:
            blob = queue.pop()
            for path, state in self.files.items():
                if path in chosen:
                    continue
                relative = posixpath.relpath(path, self.workdir)
                module = relative[:-3].replace("/", ".") if relative.endswith(".py") else ""
                inside = not relative.startswith("..")
                named = inside and (_names(blob, relative) or (len(module) > 3 and _names(blob, module)))
                if path in blob or named:
                    if state.content is None:
                        return None  # it needs a file whose content cannot be known
                    chosen[path] = state.content
                    queue.append(state.content)
        return chosen

    def _is_repository(self, path: str) -> bool:
        """A file of the repository itself (never a test's to overwrite)."""
        if path in self.seen:
            return True
        if not path.startswith(self.workdir + "/"):
            return False
        if any(path.startswith(d + "/") for d in self.created_dirs):
            return False
        relative = path[len(self.workdir) + 1 :]
        if relative in self.submitted:
            return True
        top = relative.split("/")[0]
        return "/" in relative and (top in self.packages or top in _COMMON_REPO_DIRS)

    def _edits_repository(self, code: str) -> bool:
        if not _WRITES.search(code):
            return False
        dirs = "|".join(re.escape(d) for d in sorted(self.packages | set(_COMMON_REPO_DIRS)))
        return bool(re.search(rf"['\"](?:{re.escape(self.workdir)}/)?(?:{dirs})/[^'\"\s]+['\"]", code))

    # -- SWE-agent's editor ----------------------------------------------------------------------------
    def _editor(self, step: Step) -> bool:
        head, _, rest = step.command.partition("\n")
        words = head.split()
        if not words:
            return False
        if words[0] == "str_replace_editor" and len(words) >= 3:
            try:
                argv = shlex.split(step.command)
            except ValueError:
                return True
            if len(argv) < 3:
                return True
            path = self.resolve(argv[2], self.workdir)
            options = dict(zip(argv[3::2], argv[4::2], strict=False))
            if argv[1] == "create":
                self.write(path, options.get("--file_text", ""), False, step.index)
            elif argv[1] == "str_replace" and path in self.files:
                state = self.files[path]
                old, new = options.get("--old_str"), options.get("--new_str", "")
                if state.content is not None and old and state.content.count(old) == 1:
                    self.write(path, state.content.replace(old, new), False, step.index)
                else:
                    self.files[path] = _File(None, step.index)
            elif argv[1] in ("insert", "undo_edit") and path in self.files:
                self.files[path] = _File(None, step.index)
            return True
        if words[0] in ("create", "open") and len(words) >= 2 and not rest:
            self.open_file = self.resolve(words[1], self.workdir)
            if words[0] == "create":
                self.write(self.open_file, "", False, step.index)
            return True
        match = re.match(r"^edit (\d+):(\d+)$", head.strip())
        if match:
            state = self.files.get(self.open_file or "")
            body = rest.rsplit("end_of_edit", 1)[0]
            if self.open_file and state is not None and state.content is not None:
                lines = state.content.splitlines(keepends=True)
                start, end = int(match.group(1)), int(match.group(2))
                lines[start - 1 : end] = body.splitlines(keepends=True)
                self.write(self.open_file, "".join(lines), False, step.index)
            return True
        return False

    def resolve(self, path: str, cwd: str) -> str:
        if path.startswith("~"):
            path = "/root" + path[1:]
        return posixpath.normpath(posixpath.join(cwd, path))


def _unwrap(argv: list[str]) -> list[str]:
    """Drop `timeout 30`, `env A=b`, `time` and the like in front of the real program."""
    argv = list(argv)
    while argv and posixpath.basename(argv[0]) in _WRAPPERS:
        wrapper = posixpath.basename(argv.pop(0))
        while argv and (argv[0].startswith("-") or "=" in argv[0]):
            argv.pop(0)
        if wrapper == "timeout" and argv:
            argv.pop(0)  # the duration
    return argv


def _python_args(args: list[str], command: Command) -> tuple[str | None, str | None, list[str]]:
    """(inline code, script path, remaining args) of a python invocation."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-c":
            return (args[i + 1] if i + 1 < len(args) else "", None, [])
        if arg == "-m":
            return (None, None, args[i + 2 :])
        if arg == "-":
            break
        if arg in _PY_FLAGS_WITH_ARG:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return (None, arg, args[i + 1 :])
    heredoc = next(iter(command.heredocs), None)
    return (heredoc.content() if heredoc is not None else None, None, [])


def _names(blob: str, relative: str) -> bool:
    return bool(re.search(rf"(?<![\w./-]){re.escape(relative)}(?![\w-])", blob))


def _echo(argv: list[str]) -> str | None:
    args = argv[1:]
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        newline = newline and "n" not in args[0]
        escapes = "e" in args[0]
        args = args[1:]
    text = " ".join(args)
    if escapes:
        text = _c_escapes(text)
    return text + ("\n" if newline else "")


def _printf(argv: list[str]) -> str | None:
    if len(argv) < 2:
        return ""
    if len(argv) > 2 and "%" in argv[1]:
        return None  # a format with arguments: not worth emulating
    return _c_escapes(argv[1].replace("%%", "%"))


def _c_escapes(text: str) -> str:
    table = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: table.get(m.group(1), m.group(0)), text)


def _follows_exit_contract(run: _Run, codes: list[int]) -> bool:
    """Only a script that says `exit(2)` itself and was seen to exit with 0 or 2 only, 2 at least once."""
    return bool(_CONTRACT_EXIT_2.search(run.code)) and bool(codes) and set(codes) <= {0, 2} and 2 in codes


# -- candidates ------------------------------------------------------------------------------------------
# Command templates: {nodes} node ids (path::Class::test), {files} paths, {names} bare test names.
RUNNERS = {
    "pytest": "python -m pytest -p no:cacheprovider -rA {nodes}",
    # sympy's own runner (its environments have no pytest): -k takes names, matched as substrings
    "sympy": "python bin/test -C --verbose {files} -k {names}",
}


def default_runner(repo: str) -> str:
    """The runner for a repository (owner/name): sympy's own, else pytest."""
    return "sympy" if repo.lower() == "sympy/sympy" else "pytest"


_TEST_PATH = re.compile(r"(^|/)(tests?|testing)/.*\.py$|(^|/)test_[^/]*\.py$|_test\.py$")


def is_test_path(path: str) -> bool:
    return bool(_TEST_PATH.search(path))


def harvest_from_candidates(
    candidates: Iterable[Candidate],
    *,
    read_base: Callable[[str], str | None] | None = None,
    runner: str = "pytest",
    workdir: str = REPO_DIR,
    timeout: float = CANDIDATE_TEST_TIMEOUT,
) -> list[TestCase]:
    """One CANDIDATE test per (candidate, test file it adds or changes): the candidate's version of the
    file, and the runner on the test functions that are new or changed in it.

    `read_base(path)` gives a file's content at the base commit (None when it does not exist); without it
    only test files the candidates create can be used. `runner` is a key of RUNNERS (see `default_runner`)
    or a command template with `{nodes}`, `{files}` or `{names}`.
    """
    template = RUNNERS.get(runner, runner)
    tests: dict[str, TestCase] = {}
    for candidate in candidates:
        for path, section in _sections(candidate.patch):
            if not is_test_path(path):
                continue
            base = None if _creates(section) else (read_base(path) if read_base else None)
            if base is None and not _creates(section):
                continue
            new = apply_section(base or "", section)
            if new is None:
                continue
            nodes = changed_tests(base or "", new)
            if not nodes:
                continue
            targets = {
                "nodes": " ".join(shlex.quote(f"{path}::{node}") for node in nodes),
                "files": shlex.quote(path),
                "names": " ".join(shlex.quote(node.rsplit("::", 1)[-1]) for node in nodes),
            }
            test = TestCase.make(
                instance_id=candidate.instance_id,
                kind=TestKind.CANDIDATE,
                contract=Contract.PASS_FAIL,
                command=f"cd {shlex.quote(workdir)} && {template.format(**targets)}",
                files={posixpath.join(workdir, path): new},
                origin=f"candidate {candidate.id}: {path}",
                timeout=timeout,
            )
            tests.setdefault(test.id, test)
    return list(tests.values())


def sandbox_reader(sandbox: Any, workdir: str = REPO_DIR) -> Callable[[str], str | None]:
    """`read_base` from a sandbox at the base commit."""

    def read(path: str) -> str | None:
        try:
            return sandbox.read_file(posixpath.join(workdir, path)).decode("utf-8", "replace")
        except (OSError, SandboxError):  # not there at the base commit
            return None

    return read


def _sections(patch: str) -> Iterator[tuple[str, str]]:
    for section in split_patch(patch or ""):
        match = re.match(r"diff --git a/(\S+) b/(\S+)", section)
        if match and not re.search(r"^deleted file mode", section, re.MULTILINE):
            yield match.group(2), section


def _creates(section: str) -> bool:
    return bool(re.search(r"^new file mode|^--- /dev/null", section, re.MULTILINE))


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_section(base: str, section: str) -> str | None:
    """The file after one file's section of a unified diff, or None when a hunk does not fit.

    Tolerant like `patch --fuzz`: lines compare without trailing whitespace (submissions lost it), a hunk
    is looked for nearest its stated position, and up to three outer context lines may be dropped.
    """
    lines = base.splitlines(keepends=True)
    hunks: list[tuple[int, list[tuple[str, str]]]] = []
    for line in section.splitlines(keepends=True):
        match = _HUNK.match(line)
        if match:
            hunks.append((int(match.group(1)), []))
        elif hunks and line[:1] in (" ", "-", "+"):
            hunks[-1][1].append((line[:1], line[1:]))
        elif hunks and line in ("\n", "\r\n"):  # a context line that lost its leading space
            hunks[-1][1].append((" ", "\n"))
    offset = 0
    for start, body in hunks:
        found = _locate(lines, body, start - 1 + offset)
        if found is None:
            return None
        at, head, tail = found
        kept = body[head : len(body) - tail]
        old = [text for tag, text in kept if tag != "+"]
        new = [_line(text) for tag, text in kept if tag != "-"]
        lines[at : at + len(old)] = new
        offset += len(new) - len(old)
    return "".join(lines)


def _line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _locate(lines: list[str], body: list[tuple[str, str]], hint: int) -> tuple[int, int, int] | None:
    """(index in lines, context lines dropped at the head, at the tail) where the hunk's old side fits."""
    stripped = [line.rstrip() for line in lines]
    lead = next((i for i, (tag, _) in enumerate(body) if tag != " "), len(body))
    trail = next((i for i, (tag, _) in enumerate(reversed(body)) if tag != " "), len(body))
    for fuzz in range(4):
        head, tail = min(fuzz, lead), min(fuzz, trail)
        want = [text.rstrip() for tag, text in body[head : len(body) - tail] if tag != "+"]
        if not want:
            return max(0, min(hint + head, len(lines))), head, tail
        starts = [i for i in range(len(lines) - len(want) + 1) if stripped[i : i + len(want)] == want]
        if starts:
            return min(starts, key=lambda i: abs(i - (hint + head))), head, tail
    return None


def changed_tests(base: str, new: str) -> list[str]:
    """Node-id suffixes (`test_f`, `TestC::test_m`) of test functions that are new or changed."""
    before = _test_functions(base)
    after = _test_functions(new)
    if after is None:
        return []
    before = before or {}
    return [name for name, dump in after.items() if before.get(name) != dump]


def _test_functions(text: str) -> dict[str, str] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.ClassDef) and (node.name.startswith("Test") or _unittest_class(node)):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                    found[f"{node.name}::{item.name}"] = ast.dump(item)
    return found


def _unittest_class(node: ast.ClassDef) -> bool:
    return any("TestCase" in ast.unparse(base) for base in node.bases)
