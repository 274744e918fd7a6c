"""A deliberately modest content filter for deployments, shaped like Azure's.

It is a blocklist, not a classifier. Each deployment picks a level:

- ``off``: nothing is filtered;
- ``default``: a short list of phrases that ask for or give instructions for serious harm
  (weapons of mass harm, self-harm methods, sexual content involving minors);
- ``strict``: the default list plus common profanity and slurs.

A deployment may add its own terms (``blocklist``), as Azure's custom blocklists do. Matching is
case-insensitive on whole words. A prompt that matches (a message, a call an assistant message
made, or a tool offered) is refused with a 400 whose code is ``content_filter``; an answer that matches is cut before the match and finishes with
``finish_reason: "content_filter"``. With ``logprobs``, no ``top_logprobs`` alternative that writes a
blocked term is listed either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from tunery.chat import ChatMessage, TokenLogprob
from tunery.errors import InvalidInput

LEVELS = ("off", "default", "strict")

_DEFAULT_TERMS = (
    "how to make a bomb", "how to build a bomb", "make a pipe bomb", "build a pipe bomb",
    "synthesize nerve agent", "synthesize sarin", "make ricin", "weaponize anthrax",
    "how to kill myself", "ways to kill myself", "how to commit suicide",
    "child pornography", "child sexual abuse material",
)
_STRICT_TERMS = _DEFAULT_TERMS + (
    "fuck", "fucking", "motherfucker", "shit", "bullshit", "bitch", "bastard", "asshole", "cunt",
    "dickhead", "nigger", "faggot", "retard",
)


class ContentFiltered(InvalidInput):
    code = "content_filter"


class ContentFilter:
    def __init__(self, level: str = "default", extra_terms: Iterable[str] = ()) -> None:
        if level not in LEVELS:
            raise InvalidInput(f"content_filter must be one of {', '.join(LEVELS)}, not {level!r}",
                               param="content_filter")
        self.level = level
        terms = {"off": (), "default": _DEFAULT_TERMS, "strict": _STRICT_TERMS}[level]
        terms = tuple(t.strip().lower() for t in (*terms, *extra_terms) if t and t.strip())
        self.longest = max((len(t) for t in terms), default=0)
        self._re = (re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
                               + r")(?!\w)", re.IGNORECASE) if terms else None)

    @property
    def active(self) -> bool:
        return self._re is not None

    def find(self, text: str, pos: int = 0) -> re.Match[str] | None:
        return self._re.search(text, pos) if self._re is not None else None

    def check_prompt(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None) -> None:
        """Refuse a prompt with a blocked term: in a message's content, in the calls an assistant
        message made, or in the tools offered (all of them are in the prompt the model reads)."""
        texts = []
        for i, m in enumerate(messages):
            texts.append((f"messages[{i}]", m.content))
            texts += [(f"messages[{i}].tool_calls[{j}]", f"{fn.get('name')}\n{fn.get('arguments')}")
                      for j, call in enumerate(m.tool_calls or ()) if isinstance(fn := call.get("function"), dict)]
        texts += [(f"tools[{k}]", json.dumps(tool, ensure_ascii=False)) for k, tool in enumerate(tools or ())]
        for where, text in texts:
            if self.find(text):
                raise ContentFiltered(
                    "The prompt was filtered by the deployment's content filter "
                    f"({self.level}): {where} contains a blocked term.",
                    param=where.partition("[")[0],
                    hint="rephrase the request, or deploy with a different content_filter")

    def answer(self) -> AnswerFilter:
        return AnswerFilter(self)

    def screen_alternatives(self, logprobs: Sequence[TokenLogprob]) -> list[TokenLogprob]:
        """``logprobs`` with no ``top_logprobs`` alternative that writes a blocked term: the answer
        never said it, and listing it would. A term split over several tokens cannot be seen in
        one alternative and is not caught here."""
        if not self.active:
            return list(logprobs)
        return [replace(lp, top=tuple(t for t in lp.top if not self.find(t.token))) if lp.top else lp
                for lp in logprobs]


class AnswerFilter:
    """Screens one streamed answer: holds back just enough text to see a blocked term whole."""

    def __init__(self, flt: ContentFilter) -> None:
        self._flt = flt
        self._text = ""
        self._sent = 0
        self.blocked = False

    @property
    def sent(self) -> int:
        """How many characters of the answer have passed."""
        return self._sent

    def push(self, delta: str, *, final: bool = False) -> str:
        if self.blocked:
            return ""
        self._text += delta
        if not self._flt.active:
            out, self._sent = self._text[self._sent:], len(self._text)
            return out
        m = self._flt.find(self._text, self._sent)
        if m and (final or m.end() < len(self._text)):
            self.blocked = True
            out = self._text[self._sent:m.start()]
            self._sent = m.start()
            return out
        # a match that ends the text so far may still turn out to be part of a longer word
        end = len(self._text) if final else max(self._sent, len(self._text) - self._flt.longest)
        if m:
            end = min(end, m.start())
        out, self._sent = self._text[self._sent:end], end
        return out
