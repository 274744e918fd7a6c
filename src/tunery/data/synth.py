"""Synthetic training data from a teacher model, as in the workshop's "synthetic data using GPTs"
lab: for each example the teacher writes a user question about one of the topics, then answers
it under the system message. Examples are deduplicated and validated with the data toolkit; what
was dropped, and why, is reported."""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.chat import ChatMessage, ChatModel, GenerationParams, Role
from tunery.errors import InvalidInput
from tunery.home import atomic_write_text

QUESTION_PROMPT = ("Write one realistic question that a user of this assistant might ask about the topic "
                   "below. Vary the wording; reply with the question only, no preamble.\n\nTopic: {topic}")


@dataclass
class SynthReport:
    requested: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    drop_examples: dict[str, str] = field(default_factory=dict)  # reason -> one offending question

    @property
    def kept(self) -> int:
        return len(self.examples)

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "kept": self.kept, "dropped": dict(self.dropped),
                "drop_examples": self.drop_examples}


def load_topics(path: Path) -> list[str]:
    """One topic per line (plain text), or JSONL objects with a ``topic`` field."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder, not a topics file", param="topics")
    if not path.is_file():
        raise InvalidInput(f"topics file not found: {path}", param="topics")
    topics = []
    from tunery.data.text import read_lines

    for n, line in read_lines(path, param="topics"):  # a line that is not UTF-8 is named
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                topic = json.loads(line).get("topic")
            except (ValueError, AttributeError, RecursionError):
                topic = None
            if not isinstance(topic, str) or not topic.strip():
                raise InvalidInput(f"{path}, line {n}: expected a JSON object with a 'topic' string", param="topics")
            line = topic.strip()
        topics.append(line)
    if not topics:
        raise InvalidInput(f"{path} has no topics (one per line)", param="topics")
    return topics


def _clean_question(text: str) -> str:
    text = text.strip().strip('"').strip()
    text = re.sub(r"^(question|q)\s*[:\-]\s*", "", text, flags=re.IGNORECASE)
    return text.splitlines()[0].strip() if text else ""


def _key(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def synthesize(teacher: ChatModel, *, system: str, topics: list[str], n: int, seed: int = 0,
               params: GenerationParams | None = None, progress=None) -> SynthReport:
    """Generate up to ``n`` valid, distinct examples (fewer when the teacher repeats itself)."""
    from tunery.data.validate import validate_bytes

    if n < 1:
        raise InvalidInput("n must be at least 1", param="n")
    if not system.strip():
        raise InvalidInput("the system message is empty", param="system")
    params = params or GenerationParams(temperature=0.9, max_tokens=256)
    rng = random.Random(seed)
    plan = [topics[i % len(topics)] for i in range(n)]
    rng.shuffle(plan)

    stopped = threading.Event()

    def one(i: int) -> tuple[str, str]:
        if stopped.is_set():
            return "", ""
        qp = GenerationParams(temperature=params.temperature, top_p=params.top_p, max_tokens=80,
                              seed=seed * 100_003 + i)
        q = _clean_question(teacher.generate([ChatMessage(Role.USER, QUESTION_PROMPT.format(topic=plan[i]))],
                                             qp).text)
        if not q or stopped.is_set():
            return "", ""
        ap = GenerationParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                              seed=seed * 100_003 + i)
        a = teacher.generate([ChatMessage(Role.SYSTEM, system), ChatMessage(Role.USER, q)], ap).text.strip()
        if progress:
            progress()
        return q, a

    workers = max(1, min(8, getattr(teacher, "parallel_requests", 1)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        try:
            pairs = [fut.result() for fut in futures]
        except BaseException:
            # Ctrl-C, or a teacher that failed: the requests not yet sent are dropped (as in
            # ``evals.run_eval``), and those in flight send no answer request after their question
            stopped.set()
            for fut in futures:
                fut.cancel()
            raise

    report = SynthReport(requested=n)
    seen: set[str] = set()

    def drop(reason: str, question: str) -> None:
        report.dropped[reason] += 1
        report.drop_examples.setdefault(reason, question or "(no question)")

    for q, a in pairs:
        if not q:
            drop("the teacher wrote no question", q)
            continue
        if _key(q) in seen:
            drop("duplicate question", q)
            continue
        example = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": q},
                                {"role": "assistant", "content": a}]}
        rep = validate_bytes((json.dumps(example, ensure_ascii=False) + "\n").encode(), purpose="validation")
        if not rep.ok:
            drop(f"invalid: {rep.errors[0].message}", q)
            continue
        seen.add(_key(q))
        report.examples.append(example)
    return report


def write_examples(report: SynthReport, out: Path) -> Path:
    atomic_write_text(Path(out), "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in report.examples))
    return Path(out)
