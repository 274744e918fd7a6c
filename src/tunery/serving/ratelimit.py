"""Tokens-per-minute limits for deployments, as Azure OpenAI applies them.

A sliding window of the last 60 seconds per deployment counts prompt plus completion tokens. A
request is admitted when its prompt fits what the window has left (its prompt tokens are booked
at once, so a burst of concurrent requests cannot all slip through), and its completion tokens
are booked when it ends. Over the limit, :class:`RateLimited` carries the seconds after which
enough tokens will have left the window: the server sends them as ``Retry-After`` with a 429.

An empty window admits any request, even one larger than the whole limit, so that a single big
prompt is slowed down rather than refused forever.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from tunery.errors import RateLimited

WINDOW_S = 60.0


class TokenRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = WINDOW_S) -> None:
        self._clock = clock
        self.window = window
        self._events: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[tuple[float, int]]:
        events = self._events.setdefault(key, deque())
        while events and events[0][0] <= now - self.window:
            events.popleft()
        return events

    def used(self, key: str) -> int:
        """Tokens booked for ``key`` in the current window."""
        with self._lock:
            return sum(n for _, n in self._prune(key, self._clock()))

    def acquire(self, key: str, limit: int, tokens: int) -> None:
        """Book ``tokens`` for ``key`` or raise :class:`RateLimited`."""
        with self._lock:
            now = self._clock()
            events = self._prune(key, now)
            used = sum(n for _, n in events)
            if used and used + tokens > limit:
                raise RateLimited(
                    f"Requests to deployment {key!r} have exceeded its rate limit of {limit} tokens per "
                    f"minute ({used} used in the last minute, this request needs {tokens}). "
                    f"Please retry after {self._retry_after(events, used, tokens, limit, now)} seconds.",
                    retry_after=self._retry_after(events, used, tokens, limit, now))
            events.append((now, tokens))

    def add(self, key: str, tokens: int) -> None:
        """Book tokens spent after admission (the completion)."""
        if tokens <= 0:
            return
        with self._lock:
            self._prune(key, self._clock()).append((self._clock(), tokens))

    def _retry_after(self, events: deque[tuple[float, int]], used: int, tokens: int, limit: int,
                     now: float) -> int:
        freed = 0
        for t, n in events:
            freed += n
            if used - freed + tokens <= limit or freed == used:
                return max(1, math.ceil(t + self.window - now))
        return max(1, math.ceil(self.window))

    def reset(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._events.clear()
            else:
                self._events.pop(key, None)


limiter = TokenRateLimiter()
"""The process-wide limiter shared by the server and in-process callers."""
