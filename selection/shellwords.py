"""A small, forgiving reader of the shell commands agents write, for harvesting the scripts they ran.

It splits a command line into pipelines (between `&&`, `||`, `;`, `&`, newlines and parentheses) of
simple commands, with quotes removed from each word's value but the raw source text kept, and here-doc
bodies attached to the command that reads them. It never evaluates anything and never raises: text it
cannot make sense of becomes plain words. Not a bash implementation (no expansion, no functions, no
control flow), just enough to see `cat <<'EOF' > reproduce.py` and `python reproduce.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_SEPARATORS = ("&&", "||", ";;", ";", "&", "\n", "(", ")")
_REDIRECTS = ("<<<", "<<-", "<<", ">>", ">&", "&>>", "&>", ">|", "<>", "<&", ">", "<")


@dataclass
class Word:
    value: str  # quotes and escapes removed, nothing expanded
    raw: str  # exactly as written


@dataclass
class Heredoc:
    delimiter: str
    quoted: bool  # <<'EOF': the body is literal; <<EOF: bash expands $, ` and \ in it
    strip_tabs: bool  # <<-EOF
    body: str = ""  # the lines between the operator's line and the delimiter, each ending in \n

    def content(self) -> str:
        """What the reading command receives, as far as can be known without running bash."""
        body = self.body
        if self.strip_tabs:
            body = "".join(line.lstrip("\t") for line in body.splitlines(keepends=True))
        if self.quoted:
            return body
        # unquoted: \$ \` \\ and backslash-newline are escapes; a $VAR or $(cmd) stays as written
        out: list[str] = []
        i = 0
        while i < len(body):
            char = body[i]
            if char == "\\" and i + 1 < len(body) and body[i + 1] in "$`\\\n":
                if body[i + 1] != "\n":
                    out.append(body[i + 1])
                i += 2
                continue
            out.append(char)
            i += 1
        return "".join(out)


@dataclass
class Redirect:
    op: str  # without the fd number: >, >>, <, <<, <<-, <<<, >&, &>
    fd: str  # "" or the digits before the operator
    target: Word | None = None
    heredoc: Heredoc | None = None

    @property
    def raw(self) -> str:
        if self.heredoc is not None:
            quote = "'" if self.heredoc.quoted else ""
            return f"{self.fd}{self.op}{quote}{self.heredoc.delimiter}{quote}"
        return f"{self.fd}{self.op}{self.target.raw if self.target else ''}"


@dataclass
class Command:
    """One simple command: VAR=value assignments, words, redirections, here-docs."""

    assignments: list[Word] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)

    @property
    def argv(self) -> list[str]:
        return [w.value for w in self.words]

    @property
    def heredocs(self) -> list[Heredoc]:
        return [r.heredoc for r in self.redirects if r.heredoc is not None]

    def stdout_files(self) -> list[tuple[str, bool]]:
        """(file, append) for each redirection of standard output to a file."""
        found = []
        for r in self.redirects:
            if r.target is None or r.fd not in ("", "1"):
                continue
            if r.op in (">", ">|", "&>"):
                found.append((r.target.value, False))
            elif r.op in (">>", "&>>"):
                found.append((r.target.value, True))
        return found

    def text(self, *, keep_file_output: bool = True) -> str:
        """The command re-written from its raw words (quoting preserved), here-doc bodies included."""
        parts = [w.raw for w in self.assignments] + [w.raw for w in self.words]
        for r in self.redirects:
            to_file = r.target is not None and r.op in (">", ">>", ">|", "&>", "&>>") and r.fd in ("", "1")
            if to_file and not keep_file_output and r.target and r.target.value != "/dev/null":
                continue
            parts.append(r.raw)
        line = " ".join(parts)
        for doc in self.heredocs:
            line += f"\n{doc.body}{doc.delimiter}"
        return line


@dataclass
class Pipeline:
    commands: list[Command] = field(default_factory=list)


def parse(source: str) -> list[Pipeline]:
    """The pipelines of `source`, in order. Never raises."""
    return _Parser(source).run()


class _Parser:
    def __init__(self, source: str) -> None:
        self.src = source
        self.i = 0
        self.pipelines: list[Pipeline] = []
        self.pipeline = Pipeline()
        self.command = Command()
        self.pending: list[Heredoc] = []  # here-docs whose bodies start after the next newline

    def run(self) -> list[Pipeline]:
        src = self.src
        while self.i < len(src):
            char = src[self.i]
            if char in " \t":
                self.i += 1
            elif char == "\\" and src.startswith("\\\n", self.i):
                self.i += 2  # line continuation
            elif char == "#":
                end = src.find("\n", self.i)
                self.i = len(src) if end < 0 else end
            elif char == "\n":
                self.i += 1
                self._end_pipeline()
                self._read_heredoc_bodies()
            elif src.startswith("|", self.i) and not src.startswith("||", self.i):
                self.i += 2 if src.startswith("|&", self.i) else 1
                self._end_command()
            elif (sep := self._match(_SEPARATORS)) is not None:
                if sep == "&" and self._match(("&>",)):
                    self._redirect("")
                    continue
                self.i += len(sep)
                self._end_pipeline()
            elif self._match(_REDIRECTS) is not None:
                self._redirect("")
            else:
                word = self._word()
                if word is None:
                    continue
                if word.raw.isdigit() and self._match(_REDIRECTS) is not None:
                    self._redirect(word.raw)
                elif not self.command.words and _is_assignment(word.raw):
                    self.command.assignments.append(word)
                else:
                    self.command.words.append(word)
        self._end_pipeline()
        for doc in self.pending:  # no newline after the operator: an empty body
            doc.body = ""
        return self.pipelines

    def _match(self, options: tuple[str, ...]) -> str | None:
        for option in options:
            if self.src.startswith(option, self.i):
                return option
        return None

    def _end_command(self) -> None:
        if self.command.words or self.command.assignments or self.command.redirects:
            self.pipeline.commands.append(self.command)
        self.command = Command()

    def _end_pipeline(self) -> None:
        self._end_command()
        if self.pipeline.commands:
            self.pipelines.append(self.pipeline)
        self.pipeline = Pipeline()

    def _redirect(self, fd: str) -> None:
        op = self._match(_REDIRECTS) or ""
        self.i += len(op)
        while self.i < len(self.src) and self.src[self.i] in " \t":
            self.i += 1
        target = self._word()
        if op in ("<<", "<<-") and target is not None:
            quoted = any(q in target.raw for q in "'\"\\")
            doc = Heredoc(target.value, quoted, op == "<<-")
            self.pending.append(doc)
            self.command.redirects.append(Redirect(op, fd, heredoc=doc))
        else:
            self.command.redirects.append(Redirect(op, fd, target=target))

    def _read_heredoc_bodies(self) -> None:
        for doc in self.pending:
            lines: list[str] = []
            while self.i < len(self.src):
                end = self.src.find("\n", self.i)
                line = self.src[self.i :] if end < 0 else self.src[self.i : end]
                self.i = len(self.src) if end < 0 else end + 1
                check = line.lstrip("\t") if doc.strip_tabs else line
                if check == doc.delimiter:
                    break
                lines.append(line + "\n")
            doc.body = "".join(lines)
        self.pending = []

    def _word(self) -> Word | None:
        """One word from the current position; quotes removed in `value`, `raw` as written."""
        src = self.src
        start = self.i
        value: list[str] = []
        while self.i < len(src):
            char = src[self.i]
            if char in " \t\n;&|()<>":
                if char in "<>" and src.startswith(("<(", ">("), self.i):  # process substitution
                    value.append(self._balanced(self.i + 1, "(", ")"))
                    continue
                break
            if char == "\\":
                if src.startswith("\\\n", self.i):
                    self.i += 2
                    continue
                value.append(src[self.i + 1 : self.i + 2])
                self.i += 2
            elif char == "'":
                end = src.find("'", self.i + 1)
                end = len(src) if end < 0 else end
                value.append(src[self.i + 1 : end])
                self.i = end + 1
            elif src.startswith("$'", self.i):
                value.append(self._ansi_c())
            elif char == '"':
                value.append(self._double_quoted())
            elif src.startswith("$(", self.i):
                value.append(self._balanced(self.i + 1, "(", ")"))
            elif src.startswith("${", self.i):
                value.append(self._balanced(self.i + 1, "{", "}"))
            elif char == "`":
                end = src.find("`", self.i + 1)
                end = len(src) if end < 0 else end
                value.append(src[self.i : end + 1])
                self.i = end + 1
            else:
                value.append(char)
                self.i += 1
        if self.i == start:
            self.i += 1  # a stray character: skip it rather than loop
            return None
        return Word("".join(value), src[start : self.i])

    def _double_quoted(self) -> str:
        src = self.src
        self.i += 1
        out: list[str] = []
        while self.i < len(src) and src[self.i] != '"':
            char = src[self.i]
            if char == "\\" and self.i + 1 < len(src):
                nxt = src[self.i + 1]
                if nxt in '$`"\\':
                    out.append(nxt)
                elif nxt != "\n":
                    out.append(char + nxt)
                self.i += 2
            elif src.startswith("$(", self.i):
                out.append(self._balanced(self.i + 1, "(", ")"))
            else:
                out.append(char)
                self.i += 1
        self.i += 1
        return "".join(out)

    def _ansi_c(self) -> str:
        src = self.src
        self.i += 2
        escapes = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"', "r": "\r", "0": "\0"}
        out: list[str] = []
        while self.i < len(src) and src[self.i] != "'":
            if src[self.i] == "\\" and self.i + 1 < len(src):
                out.append(escapes.get(src[self.i + 1], "\\" + src[self.i + 1]))
                self.i += 2
            else:
                out.append(src[self.i])
                self.i += 1
        self.i += 1
        return "".join(out)

    def _balanced(self, open_at: int, opening: str, closing: str) -> str:
        """Text from `$` (just before open_at) to the matching closer, kept as written."""
        src = self.src
        start = open_at - 1
        depth = 0
        j = open_at
        quote = ""
        while j < len(src):
            char = src[j]
            if quote:
                if char == quote:
                    quote = ""
                elif char == "\\" and quote == '"':
                    j += 1
            elif char in "'\"":
                quote = char
            elif char == opening:
                depth += 1
            elif char == closing:
                depth -= 1
                if depth == 0:
                    break
            j += 1
        self.i = min(j + 1, len(src))
        return src[start : self.i]


def _is_assignment(raw: str) -> bool:
    name, sep, _ = raw.partition("=")
    return bool(sep) and name.replace("_", "a").isalnum() and not name[:1].isdigit()
