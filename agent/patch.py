"""Keeping scratch files out of the submitted patch.

The prompt asks for reproduction scripts under /tmp, but models still write `reproduce.py` into the
repository. New files whose path matches one of the configured globs are dropped from the diff; files
that existed at the base commit are never dropped, whatever their name.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_HEADER = "diff --git "
_NEW_PATH = re.compile(r"^\+\+\+ b/(.+?)\t?$", re.MULTILINE)


def split_patch(patch: str) -> list[str]:
    """One string per file section (anything before the first section is kept as its own chunk)."""
    sections: list[str] = []
    current: list[str] = []
    for line in patch.splitlines(keepends=True):
        if line.startswith(_HEADER) and current:
            sections.append("".join(current))
            current = []
        current.append(line)
    if current:
        sections.append("".join(current))
    return sections


def _header_lines(section: str) -> list[str]:
    lines = []
    for line in section.splitlines()[1:]:
        if line.startswith(("@@", "---", "+++", "GIT binary patch", "Binary files")):
            break
        lines.append(line)
    return lines


def new_file_path(section: str) -> str | None:
    """The path a section creates, or None when it modifies, deletes or renames an existing file."""
    if not section.startswith(_HEADER) or not any(
        line.startswith("new file mode") for line in _header_lines(section)
    ):
        return None
    match = _NEW_PATH.search(section)
    if match:
        return match.group(1).strip('"')
    # binary or empty new files have no +++ line: `diff --git a/P b/P` with both halves equal
    rest = section.splitlines()[0][len(_HEADER) :].strip('"')
    half = (len(rest) - 1) // 2
    return rest[2:half] if rest.startswith("a/") else None


def matches(path: str, globs: list[str]) -> bool:
    pure = PurePosixPath(path)
    return any(pure.match(glob) for glob in globs)


def exclude_new_files(patch: str, globs: list[str]) -> tuple[str, list[str]]:
    """The patch without new files matching `globs`, and the paths that were dropped."""
    if not globs or not patch:
        return patch, []
    kept: list[str] = []
    dropped: list[str] = []
    for section in split_patch(patch):
        path = new_file_path(section)
        if path is not None and matches(path, globs):
            dropped.append(path)
        else:
            kept.append(section)
    return "".join(kept), dropped
