"""Keys under which candidate patches count as the same change.

Three levels, each coarser than the last: `patch_id` (whitespace-normalised patch text, the candidate's
id), `patch_key` (the changed lines only, comments and formatting ignored: a fallback when file contents
are unavailable), and `ast_key` (the syntax tree of the patched files without comments, docstrings and
layout, computed from the files the matrix runner reads out of the sandbox after applying a candidate).
Beside the keys, `change_shape` says how alike two different patches are (files and changed lines), so
that a candidate can be scored by how much of the other proposals' changes it shares.
Python is parsed with tree-sitter rather than `ast` because the repository's Python (possibly 2.7 or
3.6) is not the host's, and tree-sitter's grammar accepts every version while still flagging errors.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from tree_sitter import Language, Node, Parser

from patchfleet.selection.model import content_hash

PYTHON_SUFFIXES = (".py", ".pyi")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_DIFF_GIT = re.compile(r"^diff --git a/(.*) b/(.*)$")
# Tokens that only format: their information is already in the tree's shape (a tuple is its own node
# type, a parenthesised expression is unwrapped below), so black's trailing commas and wrapping collapse.
_LAYOUT_TOKENS = frozenset({",", ";", "(", ")", "\\"})


# -- patch text -------------------------------------------------------------------------------------


def normalise_patch(patch: str) -> str:
    """The patch text that `patch_id` hashes: line endings unified, trailing whitespace stripped, `index`
    lines dropped, hunk headers without line numbers, and blank lines at the end of each hunk dropped.

    Why the last two: the same change taken from a different base offset, or a copy that lost its final
    blank context line (275 of the 1,426 real submissions did), must be one candidate.
    """
    lines: list[str] = []
    for raw in patch.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        if line.startswith("index ") or line.startswith("similarity index "):
            continue
        if line.startswith("diff --git ") or _HUNK.match(line):
            _drop_trailing_blanks(lines)
            if line.startswith("@@"):
                line = "@@"
        lines.append(line)
    _drop_trailing_blanks(lines)
    return "\n".join(lines)


def _drop_trailing_blanks(lines: list[str]) -> None:
    while lines and not lines[-1]:
        lines.pop()


def patch_id(patch: str) -> str:
    """The candidate id: a content hash of the whitespace-normalised patch."""
    return content_hash(normalise_patch(patch))


def is_empty_patch(patch: str | None) -> bool:
    return patch is None or not patch.strip()


def hunks_consistent(patch: str) -> bool:
    """True when every hunk has exactly the lines its header announces.

    A copy of a patch whose trailing whitespace or final blank context line was lost upstream fails this
    check (only `patch --fuzz` applies it); when several sources propose one change, the consistent copy
    is the one to keep.
    """
    old = new = 0
    in_hunk = False
    for line in patch.replace("\r\n", "\n").split("\n"):
        match = _HUNK.match(line)
        if match:
            if in_hunk and (old or new):
                return False
            old = int(match.group(2) or 1)
            new = int(match.group(4) or 1)
            in_hunk = True
            continue
        if not in_hunk:
            continue
        if old == 0 and new == 0:
            in_hunk = False  # hunk complete: what follows is a header of the next file, or the end
            continue
        if line.startswith("\\"):
            continue  # "\ No newline at end of file"
        marker = line[:1]
        if marker == "-":
            old -= 1
        elif marker == "+":
            new -= 1
        elif marker == " ":
            old -= 1
            new -= 1
        else:
            return False  # a context line without its leading space (or a hunk cut short)
        if old < 0 or new < 0:
            return False
    return not in_hunk or (old == 0 and new == 0)


def changed_files(patch: str) -> dict[str, bool]:
    """Paths a patch touches (the new name of a renamed file) -> whether the file exists afterwards.

    The matrix runner reads these files out of the sandbox after applying a candidate for `ast_key`.
    """
    files: dict[str, bool] = {}
    current: str | None = None
    for line in patch.replace("\r\n", "\n").split("\n"):
        match = _DIFF_GIT.match(line)
        if match:
            current = match.group(2)
            files[current] = True
        elif line.startswith("+++ ") and current is None:  # a plain unified diff without git headers
            name = line[4:].split("\t")[0].strip()
            if name != "/dev/null":
                files[name[2:] if name.startswith("b/") else name] = True
        elif line.startswith("deleted file mode") and current is not None:
            files[current] = False
    return files


def patch_key(patch: str) -> str:
    """A cheap key from the patch alone: per file and hunk, the removed and added lines with comments,
    blank lines, context and all whitespace ignored. Coarser than `patch_id`, finer than `ast_key`."""
    parts: list[str] = []
    for line in patch.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith("diff --git "):
            parts.append(line.rstrip())
        elif line.startswith(("+++", "---")):
            continue
        elif line.startswith("@@"):
            if parts and parts[-1] != "@@":
                parts.append("@@")
        elif line[:1] in "+-":
            code = "".join(_strip_comment(line[1:]).split())
            if code:
                parts.append(line[0] + code)
    return content_hash("patch", *parts)


# a test file: its lines say how a candidate checks itself, not what it changes (compared apart)
_TEST_PATH = re.compile(r"(^|/)(tests?|testing)/|(^|/)test_[^/]*\.py$|_test\.py$|(^|/)conftest\.py$")


@dataclass(frozen=True)
class ChangeShape:
    """What a patch changes outside test files: the files, and each removed/added line (comments and
    whitespace ignored) with its file. Two patches' shapes say how alike the changes are."""

    files: frozenset[str]
    lines: frozenset[tuple[str, str, str]]

    def similarity(self, other: ChangeShape) -> float:
        """Mean of the Jaccard overlaps of files and of lines: 1 for the same change, 0 for unrelated ones.

        Files count as well as lines because two fixes in the right place often differ in every line."""
        return (_jaccard(self.files, other.files) + _jaccard(self.lines, other.lines)) / 2


@lru_cache(maxsize=4096)
def change_shape(patch: str) -> ChangeShape:
    """Memoised (the shape is immutable): every policy's evidence gather compares the same candidates'
    shapes again, and parsing the patches was most of what re-scoring a benchmark cost."""
    files: set[str] = set()
    lines: set[tuple[str, str, str]] = set()
    current: str | None = None
    for line in patch.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        match = _DIFF_GIT.match(line)
        if match:
            current = None if _TEST_PATH.search(match.group(2)) else match.group(2)
            if current is not None:
                files.add(current)
        elif current is not None and line[:1] in "+-" and not line.startswith(("+++", "---")):
            code = "".join(_strip_comment(line[1:]).split())
            if code:
                lines.add((current, line[0], code))
    return ChangeShape(frozenset(files), frozenset(lines))


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _strip_comment(code: str) -> str:
    """A line without its trailing `#` comment, leaving a `#` inside a string literal alone (a line
    inside a multi-line string may lose text: acceptable for a fallback key)."""
    quote = ""
    index = 0
    while index < len(code):
        char = code[index]
        if quote:
            if char == "\\":
                index += 1
            elif code.startswith(quote, index):
                index += len(quote) - 1
                quote = ""
        elif char in "'\"":
            quote = code[index : index + 3] if code[index : index + 3] in ('"""', "'''") else char
            index += len(quote) - 1
        elif char == "#":
            return code[:index]
        index += 1
    return code


# -- file contents -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _parser() -> Parser:
    import tree_sitter_python

    return Parser(Language(tree_sitter_python.language()))


def _tree(text: str):
    return _parser().parse(text.encode("utf-8", "surrogateescape"))


def python_parses(text: str) -> bool:
    """Whether a Python file parses, in whatever Python version the repository uses.

    The host's `ast` decides when it accepts the file or rejects its indentation (the same rules in
    every version). Any other rejection may be another version's syntax (2.7's print statement, a newer
    grammar), so tree-sitter's grammar, which accepts every version, decides then. tree-sitter alone is
    not enough: it accepts an empty block and a dedent to no enclosing level without an error node.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences and the like: not our concern
            ast.parse(text)
        return True
    except IndentationError:
        return False
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    return not _tree(text).root_node.has_error


def parses(path: str, text: str | None) -> bool:
    """Whether a changed file still parses: only Python files are checked; a deleted file is fine."""
    if text is None or not path.endswith(PYTHON_SUFFIXES):
        return True
    return python_parses(text)


def python_tokens(text: str) -> Iterator[str]:
    """The tree as a token stream: named nodes opened and closed, leaf text, no comments, no docstrings,
    no layout. Two files that differ only in formatting or comments give the same stream."""
    yield from _walk(_tree(text).root_node)


def _is_docstring(node: Node) -> bool:
    # an expression statement that is only a string literal: a docstring or a no-op
    named = node.named_children
    return (
        node.type == "expression_statement"
        and len(named) == 1
        and named[0].type
        in (
            "string",
            "concatenated_string",
        )
    )


def _walk(node: Node) -> Iterator[str]:
    kind = node.type
    if kind == "comment" or (_is_docstring(node)):
        return
    if kind == "parenthesized_expression":
        inner = [child for child in node.named_children if child.type != "comment"]
        if len(inner) == 1:
            yield from _walk(inner[0])
            return
    if kind == "string":
        yield "str:" + _string_text(node)
        return
    if node.child_count == 0:
        text = node.text.decode("utf-8", "surrogateescape") if node.text is not None else ""
        if text and text not in _LAYOUT_TOKENS:
            yield text if node.is_named is False else f"{kind}:{text}"
        return
    yield f"({kind}" if node.is_named else kind
    for child in node.children:
        yield from _walk(child)
    if node.is_named:
        yield ")"


def _string_text(node: Node) -> str:
    """A string literal without its quote style: 'a' and "a" (black rewrites one into the other) agree;
    the prefix (b, r, f...) is kept because it changes the value."""
    prefix = ""
    body: list[str] = []
    for child in node.children:
        text = child.text.decode("utf-8", "surrogateescape") if child.text is not None else ""
        if child.type == "string_start":
            prefix = text.rstrip("'\"").lower()
        elif child.type == "string_end":
            continue
        elif child.type == "interpolation":
            body.append("{" + " ".join(_walk(child)) + "}")
        else:
            body.append(text)
    return prefix + ":" + "".join(body)


def text_key(text: str) -> str:
    """Non-Python files: line endings, trailing whitespace and blank lines do not count."""
    lines = (line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def file_key(path: str, text: str | None) -> str:
    if text is None:
        return content_hash("deleted", path)
    if path.endswith(PYTHON_SUFFIXES):
        return content_hash("python", path, *python_tokens(text))
    return content_hash("text", path, text_key(text))


def ast_key(files: Mapping[str, str | None]) -> str:
    """The key of a candidate's patched files (path -> content after the patch, None when deleted):
    equal for candidates that differ only in formatting, comments and docstrings."""
    return content_hash("ast", *(file_key(path, files[path]) for path in sorted(files)))
