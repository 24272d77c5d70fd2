"""Turning captured bytes into observation text: never crash on bad bytes, say where output was cut."""

from __future__ import annotations


def decode(data: bytes) -> str:
    """UTF-8 with replacement: command output is for reading, and must never raise."""
    return data.decode("utf-8", errors="replace")


def join_capped(head: bytes, tail: bytes, dropped: int) -> str:
    """Head and tail of an output with a visible marker for the bytes cut from the middle."""
    if dropped <= 0:
        return decode(head + tail)
    marker = f"\n[... {dropped} bytes of output omitted by patchfleet ...]\n"
    return decode(head) + marker + decode(tail)


def cap_bytes(data: bytes, limit: int) -> tuple[bytes, bytes, int]:
    """Split an in-memory output into the head and tail that `limit` allows (for the slow path)."""
    half = max(limit // 2, 1)
    if len(data) <= 2 * half:
        return data, b"", 0
    return data[:half], data[-half:], len(data) - 2 * half
