"""Normalised test output: what stays of a run's output once the parts that differ between two identical
runs (memory addresses, timings, temp paths, pids, dates) are stripped, so equal behaviour hashes equal.

Behaviour voting compares these hashes across candidates, so a false difference splits a cluster and a
false equality merges two: the patterns below are deliberately narrow (an address, a duration with a
unit, a temp name), never a bare number, because numbers are often the very output a test prints.
"""

from __future__ import annotations

import functools
import re

from patchfleet.selection.model import content_hash

OUTPUT_CAP = 16 * 1024  # characters kept per cell: half head, half tail
_CAP_MARKER = re.compile(r"\n\[\.\.\. \d+ characters omitted \.\.\.\]\n")

_SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # memory addresses: <object at 0x7f3a2c1b9d30>, id()s printed in hex
    (re.compile(r"\b0x[0-9a-fA-F]{4,}\b"), "0x?"),
    # ISO dates and times, with optional fractions and zone: 2024-05-01 12:34:56.789+00:00
    (re.compile(r"\b\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?\b"), "<date>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(\.\d+)?\b"), "<time>"),
    # pytest's summary and unittest's "Ran 3 tests in 0.012s"
    (re.compile(r"\bin \d+(\.\d+)?s\b"), "in <t>s"),
    # durations with a unit: 1.23 seconds, 12ms, 0.5 sec, 3.2s (a bare integer with "s" is left alone
    # unless it has a fraction, so "3s" in a message survives but "0.31s" does not)
    (re.compile(r"\b\d+(\.\d+)? ?(seconds?|secs?|ms|milliseconds?|µs|us|ns)\b"), "<t> \\2"),
    (re.compile(r"\b\d+\.\d+s\b"), "<t>s"),
    # temporary files and folders: /tmp/tmpab12_x, /tmp/pytest-of-root/pytest-3, /var/folders/...
    (re.compile(r"/tmp/tmp[\w.-]+"), "/tmp/tmp?"),
    (re.compile(r"/tmp/pytest-of-[\w-]+/pytest-\d+"), "/tmp/pytest-?"),
    # traceback frames: a patch that moves code shifts the line numbers of the same crash
    (re.compile(r'(File "[^"\n]+", line )\d+'), "\\1?"),
    # process ids as printed by Python, shells and loggers
    (re.compile(r"\b(pid|PID|process|Process)([ =:]+)\d+\b"), "\\1\\2<pid>"),
)


def normalise_output(text: str) -> str:
    """The output with volatile parts replaced by placeholders, line endings unified, trailing spaces
    dropped. Not capped: hash this, then cap for storage."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for pattern, replacement in _SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def cap_output(text: str, limit: int = OUTPUT_CAP) -> str:
    """Head and tail of `text` within `limit` characters, with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    half = limit // 2
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n[... {dropped} characters omitted ...]\n{text[-half:]}"


def is_capped(text: str) -> bool:
    return _CAP_MARKER.search(text) is not None


@functools.lru_cache(maxsize=16384)
def behaviour_hash(stored: str, recorded_hash: str | None) -> str:
    """The hash to compare a stored cell's behaviour by: re-normalised from the stored output when it was
    kept whole (so cells recorded before a pattern was added compare under today's patterns), else the
    hash recorded over the whole output.

    Memoised on its arguments (a pure function): every policy gathers evidence again over the same
    stored cells, and re-scoring a benchmark re-runs the regexes over each output thousands of times.
    The key is the text itself, not only the recorded hash, which is empty for some cells and was
    computed under older patterns for others; a string caches its own hash, so a hit costs a lookup."""
    if recorded_hash and is_capped(stored):
        return recorded_hash
    return output_hash(normalise_output(stored))


def output_hash(normalised: str) -> str:
    """The hash behaviour voting compares: over the whole normalised output, before capping."""
    return content_hash("output", normalised)
