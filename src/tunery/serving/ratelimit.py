"""Tokens-per-minute and requests-per-minute limits for deployments, as Azure OpenAI applies them.

A sliding window of the last 60 seconds per deployment counts prompt plus completion tokens. A
request is admitted when its prompt and the most its completion may take (``max_tokens`` for each
of its ``n`` choices, as Azure estimates it) fit what the window has left. Both are booked at
once, so a burst of concurrent requests cannot all slip through; when the request ends, the
reservation is given back and the completion tokens it wrote are booked instead
(:meth:`TokenRateLimiter.settle`). Over the limit, :class:`RateLimited` carries the seconds after
which enough tokens will have left the window: the server sends them as ``Retry-After`` with a 429.

An empty window admits any request, even one larger than the whole limit, so that a single big
prompt is slowed down rather than refused forever.

A requests-per-minute limit counts the requests admitted in the same window, whatever their size
(Azure derives one from the TPM quota; here it is set on its own, and either may be left out).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tunery.errors import RateLimited

WINDOW_S = 60.0


@dataclass
class Booking:
    """Tokens in a window: a request's prompt and, until :meth:`TokenRateLimiter.settle`, the
    completion it may still write (``reserved``)."""

    key: str
    at: float
    tokens: int
    reserved: int = 0
    era: int = 0  # the key's :meth:`TokenRateLimiter.reset` count when booked
    request: bool = False  # a request's admission, which a requests-per-minute limit counts


class TokenRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = WINDOW_S) -> None:
        self._clock = clock
        self.window = window
        self._events: dict[str, deque[Booking]] = {}
        self._eras: dict[str, int] = {}  # resets per key: a deployment deleted and made again
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[Booking]:
        events = self._events.setdefault(key, deque())
        while events and events[0].at <= now - self.window:
            events.popleft()
        return events

    def used(self, key: str) -> int:
        """Tokens booked for ``key`` in the current window (with what requests in flight may still write)."""
        with self._lock:
            return sum(b.tokens for b in self._prune(key, self._clock()))

    def requests(self, key: str) -> int:
        """Requests admitted for ``key`` in the current window."""
        with self._lock:
            return sum(b.request for b in self._prune(key, self._clock()))

    def acquire(self, key: str, limit: int | None, tokens: int, *, reserve: int = 0,
                rpm: int | None = None) -> Booking:
        """Book ``tokens`` (a prompt) and ``reserve`` (the most its completion may take) for ``key``
        under a ``limit`` of tokens per minute and ``rpm`` requests per minute (None: no such
        limit), or raise :class:`RateLimited`."""
        with self._lock:
            now = self._clock()
            events = self._prune(key, now)
            admitted = [b for b in events if b.request]
            if rpm and len(admitted) >= rpm:
                retry_after = max(1, math.ceil(admitted[len(admitted) - rpm].at + self.window - now))
                raise RateLimited(
                    f"Requests to deployment {key!r} have exceeded its rate limit of {rpm} requests per minute "
                    f"({len(admitted)} in the last minute). Please retry after {retry_after} seconds.",
                    retry_after=retry_after)
            used = sum(b.tokens for b in events)
            need = tokens + reserve
            if limit and used and used + need > limit:
                retry_after = self._retry_after(events, used, need, limit, now)
                raise RateLimited(
                    f"Requests to deployment {key!r} have exceeded its rate limit of {limit} tokens per "
                    f"minute ({used} used in the last minute, this request may take {need}: its {tokens}-token "
                    f"prompt and max_tokens for each choice). Please retry after {retry_after} seconds.",
                    retry_after=retry_after,
                    hint="a lower max_tokens reserves less" if used + tokens <= limit else None)
            booking = Booking(key, now, need, reserve, self._eras.get(key, 0), request=True)
            events.append(booking)
            return booking

    def settle(self, booking: Booking, completion: int) -> None:
        """The request ended: give back its reservation and book the ``completion`` tokens it wrote,
        unless the key was reset since (its deployment was deleted: a new one of the same name
        starts with an empty window, not with the old one's requests still in flight). The
        limiter is this process's: a deployment deleted by another process (the CLI beside a
        running server) resets nothing here."""
        with self._lock:  # one locked step: a reset between the check and the booking would slip by
            booking.tokens -= booking.reserved
            booking.reserved = 0
            if completion > 0 and self._eras.get(booking.key, 0) == booking.era:
                now = self._clock()
                self._prune(booking.key, now).append(Booking(booking.key, now, completion, era=booking.era))

    def add(self, key: str, tokens: int) -> None:
        """Book tokens spent after admission (the completion)."""
        if tokens <= 0:
            return
        with self._lock:
            now = self._clock()
            self._prune(key, now).append(Booking(key, now, tokens))

    def _retry_after(self, events: deque[Booking], used: int, tokens: int, limit: int, now: float) -> int:
        freed = 0
        for b in events:
            freed += b.tokens
            if used - freed + tokens <= limit or freed == used:
                return max(1, math.ceil(b.at + self.window - now))
        return max(1, math.ceil(self.window))

    def reset(self, key: str | None = None) -> None:
        with self._lock:
            for k in list(self._events) if key is None else [key]:
                self._events.pop(k, None)
                self._eras[k] = self._eras.get(k, 0) + 1


limiter = TokenRateLimiter()
"""The process-wide limiter shared by the server and in-process callers."""
