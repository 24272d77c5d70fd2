"""The scripted model of `patchfleet demo`: what each of its trajectories does, turn by turn.

Seven behaviours a real model shows on a real issue, so that selection has something to do: two
trajectories write the same right fix, one a differently written right fix, one a plausible fix that
passes the repository's tests but not the issue (the whole remainder on the first share), one a rewrite
that breaks the tests, one an edit with a syntax error that it submits untested, and one that never
manages a well-formed action. The trajectory is told apart by its sampling temperature (the demo gives
each one its own), the turn by the number of assistant messages: the script holds no state, so parallel
trajectories can share the server.
"""

from __future__ import annotations

import math
import re
from typing import Any

from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.runs.demo_server import ScriptedReply

TEMPERATURES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
TESTS = "python -m unittest discover -s tests -t ."
OLD_BODY = r"    share = total_cents // parts\n    return [share] * parts\n"


def _replace_body(new_body: str) -> str:
    """A python heredoc that swaps the buggy body of split() for `new_body` (escaped newlines)."""
    return (
        "python - <<'EOF'\nfrom pathlib import Path\n"
        'path = Path("billsplit/split.py")\n'
        f'old = "{OLD_BODY}"\n'
        f'new = "{new_body}"\n'
        "text = path.read_text()\n"
        "assert old in text, 'body not found'\n"
        "path.write_text(text.replace(old, new))\n"
        "EOF\ngit diff"
    )


EXPLORE = ("Find the code that splits the bill and its tests.", "cat billsplit/split.py && ls tests")
REPRODUCE = (
    "Reproduce the issue with a script outside the repository.",
    "cat > /tmp/reproduce.py <<'EOF'\nfrom billsplit import split\n"
    "for total, parts in [(100, 3), (101, 3), (90, 3)]:\n"
    "    shares = split(total, parts)\n"
    "    print(total, parts, shares, 'sum', sum(shares))\n"
    "EOF\nPYTHONPATH=. python /tmp/reproduce.py",
)
VERIFY = (
    "Check the reproduction and the repository's tests.",
    f"PYTHONPATH=. python /tmp/reproduce.py && {TESTS}",
)
SUBMIT = ("The fix is done and tested.", SUBMIT_COMMAND)
RIGHT = _replace_body(
    r"    share, rest = divmod(total_cents, parts)\n"
    r"    return [share + 1 if i < rest else share for i in range(parts)]\n"
)
RIGHT_VARIANT = _replace_body(
    r"    shares = [total_cents // parts] * parts\n"
    r"    for i in range(total_cents % parts):\n"
    r"        shares[i] += 1\n"
    r"    return shares\n"
)
FIRST_TAKES_REST = _replace_body(
    r"    share = total_cents // parts\n    return [share + total_cents % parts] + [share] * (parts - 1)\n"
)
SYNTAX_ERROR = _replace_body(
    r"    share, rest = divmod(total_cents, parts\n    return [share + (i < rest) for i in range(parts)]\n"
)
REWRITE = """cat > billsplit/split.py <<'EOF'
\"\"\"Money is kept in integer cents, so that no rounding error can creep in.\"\"\"


def split(total_cents: int, parts: int) -> list[int]:
    \"\"\"Split `total_cents` into `parts` shares, the larger shares first.\"\"\"
    shares = [round(total_cents / parts)] * parts
    shares[0] += total_cents - sum(shares)
    return shares


def format_cents(cents: int) -> str:
    \"\"\"1234 -> '$12.34'.\"\"\"
    return f"${cents // 100}.{cents % 100:02d}"
EOF
git diff"""
RAMBLE = "THOUGHT: The rounding must be the problem somewhere; I will think about where the cent goes."

# name -> turns; a turn is (thought, command) or a raw reply (which may be malformed on purpose)
SCRIPTS: dict[str, list[tuple[str, str] | str]] = {
    "right": [EXPLORE, REPRODUCE, ("Hand out the remainder one cent at a time.", RIGHT), VERIFY, SUBMIT],
    "right-again": [
        EXPLORE,
        REPRODUCE,
        ("Hand out the remainder one cent at a time.", RIGHT),
        VERIFY,
        SUBMIT,
    ],
    "right-variant": [
        EXPLORE,
        REPRODUCE,
        ("Add one cent to the first shares until the remainder is gone.", RIGHT_VARIANT),
        VERIFY,
        SUBMIT,
    ],
    "first-takes-rest": [
        EXPLORE,
        ("The first share can take the remainder.", FIRST_TAKES_REST),
        (
            "Run the tests.",
            f"{TESTS} && PYTHONPATH=. python -c 'from billsplit import split; print(split(100, 3))'",
        ),
        SUBMIT,
    ],
    "rewrite-breaks-tests": [
        EXPLORE,
        REPRODUCE,
        ("Rewrite split() with rounding and a correction.", REWRITE),
        ("Check the reproduction.", "PYTHONPATH=. python /tmp/reproduce.py"),
        SUBMIT,
    ],
    "syntax-error": [EXPLORE, ("Use divmod.", SYNTAX_ERROR), ("Looks right; submit.", SUBMIT_COMMAND)],
    "never-acts": [EXPLORE, RAMBLE, RAMBLE, RAMBLE, RAMBLE],
}
ORDER = tuple(SCRIPTS)
GOOD_FIX = re.compile(r"divmod\(total_cents, parts\)\n|shares\[i\] \+= 1")


def script_for(temperature: float | None) -> str:
    """The script a trajectory follows, from the temperature the demo gave it."""
    return ORDER[round((temperature or 0.0) * 10) % len(ORDER)]


def respond(body: dict[str, Any]) -> ScriptedReply:
    """The reply to one chat request: a trajectory's next turn, a verifier's judgement (requests that ask
    for logprobs), or, for any other conversation (a test-writing trajectory), a test script."""
    messages = body.get("messages", [])
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    if body.get("logprobs"):
        return _judge(messages)
    first_user = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
    turns = (
        SCRIPTS[script_for(body.get("temperature"))] if "Resolve the issue above" in first_user else _TESTER
    )
    step = turns[min(turn, len(turns) - 1)]
    if isinstance(step, str):
        return ScriptedReply(step)
    thought, command = step
    return ScriptedReply(f"THOUGHT: {thought}\n\n```bash\n{command}\n```")


_TESTER: list[tuple[str, str] | str] = [
    (
        "Write a test for the issue: exit 0 when fixed, 2 when not.",
        "cat > /tmp/patchfleet_test.py <<'EOF'\nimport sys\nsys.path.insert(0, '.')\n"
        "from billsplit import split\n"
        "ok = split(100, 3) == [34, 33, 33] and split(101, 3) == [34, 34, 33]\n"
        "sys.exit(0 if ok else 2)\nEOF\n"
        "python /tmp/patchfleet_test.py; echo exit=$?",
    ),
    ("The test fails at the base commit, as it should.", SUBMIT_COMMAND),
]


def _judge(messages: list[dict[str, Any]]) -> ScriptedReply:
    """YES or NO with token logprobs: confident for the fixes that hand out the remainder fairly."""
    text = "\n".join(str(m.get("content")) for m in messages)
    p_yes = 0.9 if GOOD_FIX.search(text.replace("+    ", "    ")) else 0.25
    yes, no = math.log(p_yes), math.log(1 - p_yes)
    token, logprob = ("YES", yes) if p_yes >= 0.5 else ("NO", no)
    return ScriptedReply(token, logprobs=[(token, logprob, [("YES", yes), ("NO", no)])])
