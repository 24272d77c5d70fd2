"""The execution-free verifier: an LLM judge that reads the issue, a candidate patch and a condensed
trajectory, and answers YES or NO; its score is the probability of YES.

Score = P(YES) / (P(YES) + P(NO)) from the first answer token's top log-probabilities where the
provider returns them (R2E-Gym's verifier), else the share of YES among k answers sampled at a
temperature above zero. Calls go through the agent's `LitellmModel` (tenacity retries, pricing), scores
are cached on disk by (model, prompt hash) so a re-run costs nothing, and an answer that is neither YES
nor NO is a missing score (`score=None` with the reason), never an exception.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import yaml
from jinja2 import Environment, StrictUndefined
from pydantic import BaseModel, ConfigDict, Field

from patchfleet.agent.config import LitellmModelConfig
from patchfleet.agent.model import Model, Reply, TokenLogprob, call_bound, crosses
from patchfleet.atomic import write_json_atomic
from patchfleet.errors import BudgetExceeded, ConfigError, DataError, ModelError, ModelUnavailable
from patchfleet.selection.model import Candidate, VerifierScore, content_hash

if TYPE_CHECKING:
    from patchfleet.agent.model import Limiter

PROMPT_FILE = "verifier.yaml"
_JINJA = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
# decoration a model may put before its answer word: whitespace, markdown emphasis, quotes, headings
_DECORATION = " \t\r\n*_`'\"#>:."
_FIRST_WORD = re.compile(r"^[\s*_`'\"#>]*([A-Za-z]+)")
_ANSWER_LINE = re.compile(r"\b(?:answer|verdict|decision)\s*[:=]?\s*[*_`'\"]*\s*([A-Za-z]+)", re.IGNORECASE)


class Issue(Protocol):
    """What the judge reads of a task: `data.task.Task` satisfies it (and never an EvalSpec)."""

    @property
    def id(self) -> str: ...

    @property
    def problem_statement(self) -> str: ...


class VerifierConfig(BaseModel):
    """The judge's model and how it is asked. Prompt templates: `prompt` (a YAML file with `system` and
    `user`), else the packaged selection/verifier.yaml."""

    model_config = ConfigDict(extra="forbid")

    model: LitellmModelConfig
    method: Literal["auto", "logprobs", "sampled"] = "auto"  # auto: logprobs, sampled when not returned
    top_logprobs: int = Field(5, ge=1, le=20)
    samples: int = Field(5, ge=1)  # k for the sampled mean
    sample_temperature: float = Field(1.0, gt=0)
    answer_tokens: int | None = 8  # max_tokens of a judgement; None: the model config's
    yes: str = "YES"
    no: str = "NO"
    issue_chars: int = 20_000
    patch_chars: int = 40_000
    trajectory_steps: int = 8  # last assistant turns (with their observations) shown to the judge
    trajectory_chars: int = 12_000
    prompt: Path | None = None
    cache_dir: Path | None = None  # None: no disk cache
    # USD one judgement may spend: no call is made that could cross it (its cost bounded beforehand, see
    # LitellmModel.bound), and a run's budget reserves it per judgement (as a trajectory's cost_limit);
    # 0: unlimited
    cost_limit: float = Field(0.5, ge=0)


class Verifier:
    """Scores candidates for one judge configuration; safe to share between threads."""

    def __init__(
        self, config: VerifierConfig, *, model: Model | None = None, limiter: Limiter | None = None
    ) -> None:
        self.config = config
        self.model = model if model is not None else config.model.build(limiter)
        self.templates = _load_templates(config.prompt)
        self._no_logprobs = False  # set when the provider rejected the logprobs parameter

    # -- prompt ----------------------------------------------------------------------------------

    def messages(
        self, task: Issue, candidate: Candidate, trajectory: str | None = None
    ) -> list[dict[str, str]]:
        cfg = self.config
        values = {
            "issue": truncate_middle(task.problem_statement.strip(), cfg.issue_chars),
            "patch": truncate_middle(candidate.patch.strip(), cfg.patch_chars),
            "trajectory": truncate_middle(trajectory.strip(), cfg.trajectory_chars) if trajectory else None,
            "yes": cfg.yes,
            "no": cfg.no,
        }
        return [
            {"role": "system", "content": _JINJA.from_string(self.templates["system"]).render(**values)},
            {"role": "user", "content": _JINJA.from_string(self.templates["user"]).render(**values)},
        ]

    def cache_key(self, messages: list[dict[str, str]]) -> str:
        cfg = self.config
        how = [cfg.method, cfg.top_logprobs, cfg.samples, cfg.sample_temperature, cfg.answer_tokens]
        how += [cfg.model.temperature, cfg.yes, cfg.no]
        return content_hash(cfg.model.model, json.dumps(how), json.dumps(messages, sort_keys=True), length=24)

    # -- scoring ---------------------------------------------------------------------------------

    def score(
        self, task: Issue, candidate: Candidate, trajectory: str | Path | dict[str, Any] | None = None
    ) -> VerifierScore:
        """The judge's score for one candidate; from the disk cache when this exact prompt was judged.

        trajectory: text to show as it is, or a trajectory file (ours or mini-swe-agent's) or document,
        condensed to its last `trajectory_steps` steps; an unreadable file is left out."""
        if isinstance(trajectory, Path | dict):
            try:
                trajectory = condense_trajectory(
                    trajectory, steps=self.config.trajectory_steps, max_chars=self.config.trajectory_chars
                )
            except DataError:
                trajectory = None
        messages = self.messages(task, candidate, trajectory or None)
        key = self.cache_key(messages)
        cached = self._cached(key)
        if cached is not None:
            return cached.model_copy(
                update={"instance_id": task.id, "candidate_id": candidate.id, "cached": True}
            )
        ids = {"instance_id": task.id, "candidate_id": candidate.id, "model": self.config.model.model}
        try:
            result = self._judge(messages)
        except ModelUnavailable as exc:
            # the provider outlived our retries: a missing score now, asked again on the next run
            return VerifierScore(score=None, method="sampled", samples=0, detail=f"unavailable: {exc}", **ids)
        except BudgetExceeded as exc:  # nothing asked; not cached, so a larger cost limit asks again
            return VerifierScore(score=None, method="sampled", samples=0, detail=f"not judged: {exc}", **ids)
        except ModelError as exc:
            result = {"score": None, "method": "logprobs", "samples": 0, "detail": f"model error: {exc}"}
        verdict = VerifierScore(**ids, **result)
        self._store(key, verdict)
        return verdict

    def _judge(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        cfg = self.config
        limit = {"max_tokens": cfg.answer_tokens} if cfg.answer_tokens else {}
        first: Reply | None = None
        if cfg.method == "logprobs" or (cfg.method == "auto" and not self._no_logprobs):
            ask = {"logprobs": True, "top_logprobs": cfg.top_logprobs, **limit}
            if not self._fits(messages, [], ask):
                raise BudgetExceeded(f"the first call may cost more than the judgement's ${cfg.cost_limit}")
            try:
                first = self.model.query(messages, **ask)
            except (ConfigError, ModelError) as exc:
                # a provider that rejects the logprobs parameter itself: sample instead (auto only), and
                # do not ask it again
                if cfg.method == "logprobs" or "logprob" not in str(exc).lower():
                    raise
                self._no_logprobs = True
            if first is not None and first.logprobs:
                score, detail = logprob_score(first.logprobs, cfg.yes, cfg.no)
                return {
                    "score": score,
                    "method": "logprobs",
                    "samples": 1,
                    "cost": first.cost,
                    "detail": detail,
                }
            if cfg.method == "logprobs":
                cost = first.cost if first is not None else 0.0
                return {
                    "score": None,
                    "method": "logprobs",
                    "samples": 0,
                    "cost": cost,
                    "detail": "no logprobs",
                }
        replies = [first] if first is not None else []  # an answer without logprobs still counts as a sample
        ask = {"temperature": cfg.sample_temperature, **limit}
        while len(replies) < cfg.samples and self._fits(messages, replies, ask):
            replies.append(self.model.query(messages, **ask))
        if not replies:
            raise BudgetExceeded(f"the first sample may cost more than the judgement's ${cfg.cost_limit}")
        answers = [parse_answer(r.content, cfg.yes, cfg.no) for r in replies]
        valid = [a for a in answers if a is not None]
        cost = sum(r.cost for r in replies)
        detail = f"answers: {' '.join(a or '?' for a in answers)}"
        if not valid:
            detail = f"no answer was {cfg.yes} or {cfg.no}: {replies[-1].content[:200]!r}"
        score = sum(a == cfg.yes for a in valid) / len(valid) if valid else None
        return {"score": score, "method": "sampled", "samples": len(valid), "cost": cost, "detail": detail}

    def _fits(self, messages: list[dict[str, str]], replies: list[Reply], ask: dict[str, Any]) -> bool:
        """Whether one more call stays within the judgement's cost limit for sure: its cost bounded before
        it is made (its prompt is the one the provider already counted, when there was a call), or, for a
        model that cannot bound it, while the limit is not yet reached."""
        limit = self.config.cost_limit
        if not limit:
            return True
        known = (len(messages), replies[-1].prompt_tokens) if replies and replies[-1].prompt_tokens else None
        bound = call_bound(self.model, messages, known=known, **ask)
        return not crosses(limit, sum(r.cost for r in replies), bound)

    # -- cache -----------------------------------------------------------------------------------

    def _path(self, key: str) -> Path | None:
        if self.config.cache_dir is None:
            return None
        model = re.sub(r"[^\w.-]+", "_", self.config.model.model)
        return self.config.cache_dir / model / f"{key}.json"

    def _cached(self, key: str) -> VerifierScore | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            return VerifierScore.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent, or torn by a kill: ask again

    def _store(self, key: str, verdict: VerifierScore) -> None:
        path = self._path(key)
        if path is not None:
            write_json_atomic(path, verdict.model_dump(mode="json"))


def _answer_word(token: str) -> str:
    return token.strip(_DECORATION).upper()


def logprob_score(logprobs: tuple[TokenLogprob, ...], yes: str, no: str) -> tuple[float | None, str]:
    """P(yes) / (P(yes) + P(no)) at the first token that is more than decoration, and a detail line."""
    import math

    for position, entry in enumerate(logprobs):
        if not _answer_word(entry.token):
            continue  # leading whitespace or markdown: the answer comes later
        top = entry.top or ((entry.token, entry.logprob),)
        mass = {yes: 0.0, no: 0.0}
        for token, logprob in top:
            word = _answer_word(token)
            if word in (yes.upper(), no.upper()):
                mass[yes if word == yes.upper() else no] += math.exp(logprob)
        total = mass[yes] + mass[no]
        shown = ", ".join(f"{t!r}: {lp:.3f}" for t, lp in top[:5])
        if not total:
            return (
                None,
                f"first answer token {entry.token!r} at {position} is neither {yes} nor {no} ({shown})",
            )
        return mass[yes] / total, f"position {position}: {shown}"
    return None, "the answer has no token besides whitespace"


def parse_answer(text: str, yes: str, no: str) -> str | None:
    """YES or NO from a sampled answer: its first word, else an "Answer: X" line; None when neither."""
    wanted = {yes.upper(): yes, no.upper(): no}
    first = _FIRST_WORD.match(text or "")
    if first and first.group(1).upper() in wanted:
        return wanted[first.group(1).upper()]
    found = [m.group(1).upper() for m in _ANSWER_LINE.finditer(text or "")]
    found = [word for word in found if word in wanted]
    return wanted[found[-1]] if found else None


def truncate_middle(text: str, limit: int) -> str:
    """Head and tail within `limit` characters: a patch's first files and an issue's end both matter."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters omitted ...]\n{text[-half:]}"


def condense_trajectory(
    trajectory: dict[str, Any] | str | Path, *, steps: int = 8, max_chars: int = 12_000
) -> str:
    """The last `steps` assistant turns of a trajectory (ours or mini-swe-agent's) with the observation
    that followed each, every message cut in the middle to share `max_chars`; "" when there are none."""
    if not isinstance(trajectory, dict):
        from patchfleet.agent.trajectory import read_trajectory

        trajectory = read_trajectory(trajectory)
    messages = [m for m in trajectory.get("messages", []) if isinstance(m, dict)]
    turns: list[list[dict[str, Any]]] = []
    for message in messages:
        if message.get("role") == "assistant":
            turns.append([message])
        elif turns and message.get("role") in ("user", "tool"):
            turns[-1].append(message)  # the observation(s) answering the last assistant turn
    chosen = [m for turn in turns[-steps:] for m in turn] if steps > 0 else []
    if not chosen:
        return ""
    budget = max(200, max_chars // len(chosen) - 40)
    parts = []
    first_step = len(turns) - len(turns[-steps:]) + 1
    step = first_step - 1
    for message in chosen:
        role = message.get("role")
        if role == "assistant":
            step += 1
        label = f"step {step} {'agent' if role == 'assistant' else 'observation'}"
        parts.append(f"[{label}]\n{truncate_middle(_text(message.get('content')).strip(), budget)}")
    return "\n\n".join(parts)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _load_templates(path: Path | None) -> dict[str, str]:
    try:
        if path is None:
            text = resources.files("patchfleet.selection").joinpath(PROMPT_FILE).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the verifier prompt {path or PROMPT_FILE}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("system", "user")):
        raise ConfigError(f"the verifier prompt {path or PROMPT_FILE} needs `system` and `user` templates")
    return {"system": data["system"], "user": data["user"]}
