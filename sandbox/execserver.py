"""The exec server that runs inside every sandbox: the fast path for many short commands.

The host starts it once per container over one `docker exec` stream and then sends one JSON line per
request; each answer is one JSON line. A request costs a socket round trip and a process spawn instead
of a whole `docker exec` (create + start + inspect), which is what makes agent steps cheap.

This file is shipped into containers as source text (`python3 -c`), so it must run on any Python >= 3.6,
use only the standard library, and never import patchfleet. It is a subreaper: orphans of a command
re-parent to it, so a timeout can kill the whole process tree, including daemonised grandchildren.
"""

import base64
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
TIMEOUT_EXIT_CODE = 124  # what coreutils `timeout` returns
EXIT_GRACE = 0.05  # after the command exits, how long background holders of its pipe may keep writing
OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


def become_subreaper():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # without it, daemonised grandchildren escape timeouts; commands still work


def oom_kill_count():
    for path in OOM_FILES:
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def descendants(root):
    """Every live process below `root`, found by walking /proc (no psutil in arbitrary images)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_tree(pgid=None, deadline_s=3.0):
    """Stop then kill everything below the server; stopping first keeps fork bombs from outrunning us."""
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        pids = descendants(os.getpid())
        if not pids:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        reap_orphans()
    reap_orphans()


def reap_orphans():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class CappedBuffer:
    """Keeps the first and last `limit / 2` bytes of a stream in bounded memory."""

    def __init__(self, limit):
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data):
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.half:
                del self.tail[: len(self.tail) - self.half]

    def result(self):
        tail = bytes(self.tail[-self.half :]) if self.tail else b""
        dropped = self.total - len(self.head) - len(tail)
        return bytes(self.head), tail, dropped


def shell():
    return "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"


def op_run(req):
    timeout = float(req.get("timeout", 120))
    buf = CappedBuffer(int(req.get("limit", 256 * 1024)))
    # bytes, encoded as UTF-8 here: under the POSIX locale Python 3.6 (bionic's, as in the official images)
    # would encode str arguments as ASCII and fail on any non-ASCII command, path or variable
    env = dict(os.environb)
    env.update({utf8(k): utf8(v) for k, v in (req.get("env") or {}).items()})
    cwd = req.get("cwd")
    oom_before = oom_kill_count()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            [shell(), "-c", utf8(req["cmd"])],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=utf8(cwd) if cwd else None,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        msg = ("patchfleet: cannot start command: %s\n" % exc).encode()
        return {"exit_code": 126, "head": b64(msg), "tail": "", "dropped": 0, "duration": 0.0}
    fd = proc.stdout.fileno()
    deadline = start + timeout
    timed_out = False
    exited_at = None
    while True:
        now = time.monotonic()
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > EXIT_GRACE:
            break  # a background process still holds the pipe; do not wait for it
        if now >= deadline:
            timed_out = True
            break
        wait = min(deadline - now, 0.1 if exited_at is None else EXIT_GRACE)
        ready, _, _ = select.select([fd], [], [], wait)
        if ready:
            data = os.read(fd, 1 << 16)
            if not data:
                break
            buf.add(data)
    if not timed_out:
        try:
            proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out:
        kill_tree(proc.pid)
        proc.wait()
    proc.stdout.close()
    reap_orphans()
    duration = time.monotonic() - start
    code = proc.returncode
    if code < 0:
        code = 128 - code  # report signals the way shells do
    oom_after = oom_kill_count()
    head, tail, dropped = buf.result()
    return {
        "exit_code": TIMEOUT_EXIT_CODE if timed_out else code,
        "timed_out": timed_out,
        "oom_killed": bool(oom_before is not None and oom_after is not None and oom_after > oom_before),
        "head": b64(head),
        "tail": b64(tail),
        "dropped": dropped,
        "duration": duration,
    }


def utf8(text):
    return text.encode("utf-8", "surrogateescape")


def op_read(req):
    with open(utf8(req["path"]), "rb") as f:
        return {"data": b64(f.read())}


def op_write(req):
    path = utf8(req["path"])
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = b"%s.pf-tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(base64.b64decode(req["data"]))
    os.chmod(tmp, int(req.get("mode", 0o644)))
    os.replace(tmp, path)
    return {}


def op_killall(req):
    kill_tree()
    return {}


def op_ping(req):
    return {"pid": os.getpid(), "python": sys.version.split()[0]}


def b64(data):
    return base64.b64encode(data).decode("ascii")


OPS = {"run": op_run, "read": op_read, "write": op_write, "killall": op_killall, "ping": op_ping}


def main():
    become_subreaper()
    # Nothing is written before the first request: bytes sent before the host reads the upgraded
    # stream could be swallowed by its HTTP response parser. The host's first request is a ping.
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        req = {}
        try:
            req = json.loads(line.decode("utf-8"))
            resp = OPS[req["op"]](req)
        except Exception as exc:  # report every failure to the host; the server must survive it
            resp = {"error": type(exc).__name__, "message": str(exc)}
        resp["id"] = req.get("id")
        out.write(json.dumps(resp).encode())
        out.write(b"\n")
        out.flush()


if __name__ == "__main__":
    main()
