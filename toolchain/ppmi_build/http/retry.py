"""The one retry policy of ppmi-build's HTTP clients (Dataverse, Graph/ARM, RFC 3161 time-stamp authorities).

Rules, and their sources:

* **What is retried**: transport failures (connection refused or reset, timeouts, server gone) and the answers a
  service gives for a transient condition: 429 Too Many Requests and 5xx (RFC 9110 §15.6; which 5xx are transient
  is the caller's ``statuses``: Dataverse reports operation errors such as a failing plug-in as 500, so its client
  retries only 429/502/503/504, domain-spec §4.5; Graph and ARM retry 500 as well).
* **Idempotency** (RFC 9110 §9.2.2): a request that is not idempotent (a Graph POST) is retried only when the
  server cannot have processed it: the connection was never established (``ConnectError``, ``ConnectTimeout``) or
  the answer was 429/503. A request the caller makes idempotent (a Dataverse create with a client-chosen key,
  checked by its 412 duplicate-key answer) is retried like any other; :attr:`Outcome.ambiguous` tells the caller
  that an earlier attempt may have reached the server.
* **Back-off**: ``backoff_base * 2**n`` seconds capped at ``backoff_max``, half fixed and half random ("equal
  jitter"), before retry ``n`` (0-based).
* **Retry-After** (RFC 9110 §10.2.3: delta-seconds or an HTTP-date; domain-spec §4.5: Dataverse sends it with
  429): the wait is exactly the value asked for, when it is at most ``max_retry_after`` seconds (default 300 s,
  the length of the Dataverse service-protection window; ``PPMI_HTTP_MAX_RETRY_AFTER``). A longer value is not
  shortened and not waited for: the request stops at once (:attr:`Outcome.gave_up` = ``"retry-after"``) and the
  caller raises an error that says how long the service asked to wait. Waiting less than asked would only be
  throttled again; waiting longer than a pipeline step should hang is worse than a clear failure.
* **Bounded**: at most ``max_retries`` retries (``PPMI_HTTP_RETRIES``, default 5).
* **Time is injected**: ``sleep`` and ``clock`` are fields, so tests assert the waits without sleeping.

Why not ``stamina``: its retry loop is driven by exceptions, sleeps with :func:`time.sleep` and can only be made
to skip its waits by a process-wide switch (``stamina.set_testing``), and its progress hooks are process-wide too.
Here the waits are asserted per test through an injected ``sleep``, a Retry-After beyond the cap must stop with
the response in hand (to report the service's error code), and each retry prints a progress line for its own
client. The loop that does this is a few dozen lines; stamina would need an exception per response and global
state around it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TransportFailure
from .client import CONNECT_TIMEOUT_S, DEFAULT_TIMEOUT_S, env_number, timeout_from_env

if TYPE_CHECKING:
    import httpx

#: answers that mean "try again later" for Graph, ARM and time-stamp authorities (RFC 9110 §15.6)
TRANSIENT_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
#: answers that say the request was not processed, so even a non-idempotent request may be sent again
#: (429: RFC 6585 §4; 503: RFC 9110 §15.6.4)
NOT_PROCESSED_STATUSES: frozenset[int] = frozenset({429, 503})
#: answers after which the request may have been processed (a gateway lost the upstream answer)
_MAYBE_PROCESSED_STATUSES = frozenset({500, 502, 504})


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen (for progress lines and logs).

    Attributes:
        retry: 1-based number of this retry.
        max_retries: the policy's limit.
        wait: seconds the policy will sleep before it.
        cause: ``"HTTP 503"`` or the transport error's class name (``"ReadTimeout"``).
        from_retry_after: the wait is the server's ``Retry-After``.
    """

    retry: int
    max_retries: int
    wait: float
    cause: str
    from_retry_after: bool

    def describe(self, label: str) -> str:
        """``POST managedidentities: HTTP 503; retry 1/5 in 0.7 s`` (+ `` (Retry-After)``)."""
        return (f"{label}: {self.cause}; retry {self.retry}/{self.max_retries} in {self.wait:.1f} s"
                + (" (Retry-After)" if self.from_retry_after else ""))


@dataclass
class Outcome:
    """The final answer of :meth:`RetryPolicy.run`.

    Attributes:
        response: the last response (read; any status).
        attempts: requests sent.
        ambiguous: an earlier attempt may have been processed by the server (the connection failed after the
            request was sent, or a gateway answered 500/502/504).
        gave_up: None when the last answer is not one that is retried; ``"retries"`` when ``max_retries`` were
            used up on retryable answers; ``"retry-after"`` when the server asked for a wait longer than
            ``max_retry_after``.
        retry_after: the last answer's ``Retry-After`` in seconds, or None.
    """

    response: httpx.Response
    attempts: int
    ambiguous: bool = False
    gave_up: str | None = None
    retry_after: float | None = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3: delta-seconds or an HTTP-date), or None
    when absent or unreadable. A date in the past gives 0.

    Args:
        value: the header value.
        now: current time, seconds since the epoch (for an HTTP-date).
    """
    if not value or not value.strip():
        return None
    import email.utils
    import math

    value = value.strip()
    try:
        seconds = float(value)  # delta-seconds; a decimal fraction is tolerated
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass
class RetryPolicy:
    """Retry and timeout settings (see the module docstring for the rules).

    Attributes:
        max_retries: retries after the first attempt (``PPMI_HTTP_RETRIES``).
        backoff_base: seconds before the first retry, doubled per retry (``PPMI_HTTP_BACKOFF``).
        backoff_max: cap of one back-off wait in seconds (``PPMI_HTTP_BACKOFF_MAX``).
        max_retry_after: the longest ``Retry-After`` in seconds that is waited for (``PPMI_HTTP_MAX_RETRY_AFTER``).
        timeout: read/write timeout per request in seconds (``PPMI_HTTP_TIMEOUT``).
        connect_timeout: connect timeout in seconds.
        sleep: waits the given seconds (injectable).
        clock: seconds since the epoch, for ``Retry-After`` dates (injectable).
    """

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    max_retry_after: float = 300.0
    timeout: float = DEFAULT_TIMEOUT_S
    connect_timeout: float = CONNECT_TIMEOUT_S
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> RetryPolicy:
        """The policy from ``PPMI_HTTP_RETRIES``, ``PPMI_HTTP_BACKOFF``, ``PPMI_HTTP_BACKOFF_MAX``,
        ``PPMI_HTTP_MAX_RETRY_AFTER`` and ``PPMI_HTTP_TIMEOUT``; ``overrides`` replace fields.

        Raises:
            ConfigError: a variable is not a finite non-negative number (``PPMI_HTTP_TIMEOUT``: positive).
        """
        env = os.environ if environ is None else environ
        d = cls()
        p = cls(max_retries=int(env_number(env, "PPMI_HTTP_RETRIES", d.max_retries, integer=True)),
                backoff_base=env_number(env, "PPMI_HTTP_BACKOFF", d.backoff_base),
                backoff_max=env_number(env, "PPMI_HTTP_BACKOFF_MAX", d.backoff_max),
                max_retry_after=env_number(env, "PPMI_HTTP_MAX_RETRY_AFTER", d.max_retry_after),
                timeout=timeout_from_env(env))
        for name, value in overrides.items():
            setattr(p, name, value)
        return p

    def backoff(self, attempt: int) -> float:
        """Wait in seconds before retry number ``attempt`` (0-based): half fixed, half random ("equal jitter")."""
        d = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return d / 2 + random.uniform(0, d / 2)

    def retry_after(self, response: httpx.Response) -> float | None:
        """The response's ``Retry-After`` in seconds (:func:`parse_retry_after`), or None."""
        return parse_retry_after(response.headers.get("Retry-After"), self.clock())

    def run(self, send: Callable[[], httpx.Response], *, statuses: Collection[int] = TRANSIENT_STATUSES,
            idempotent: bool = True, retry_response: Callable[[httpx.Response], bool] | None = None,
            on_retry: Callable[[RetryEvent], None] | None = None) -> Outcome:
        """Call ``send`` until it gives an answer that is not retried, or the policy says stop.

        Args:
            send: sends one request and returns its response (read, or streamed and read by ``send``);
                exceptions other than :class:`httpx.TransportError` propagate unchanged.
            statuses: HTTP statuses that are retried (default :data:`TRANSIENT_STATUSES`); for a request that
                is not idempotent only those also in :data:`NOT_PROCESSED_STATUSES`.
            idempotent: False for a request that must not be repeated once the server may have processed it.
            retry_response: also retry a response this returns True for (e.g. ARM's 409 for concurrent writes).
            on_retry: told about each retry before its wait.
        Returns:
            :class:`Outcome` with the last response.
        Raises:
            TransportFailure: the last attempt failed in transport (retries used up, or not retryable): fields
                ``reason`` (the httpx exception class name), ``detail`` (its text, unredacted: callers redact),
                ``attempts`` and ``ambiguous``.
        """
        import httpx

        retry_set = set(statuses) if idempotent else set(statuses) & NOT_PROCESSED_STATUSES
        ambiguous = False
        attempt = 0
        while True:
            try:
                response = send()
            except httpx.TransportError as e:
                never_sent = isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout))
                ambiguous = ambiguous or not never_sent
                retryable = not isinstance(e, httpx.UnsupportedProtocol) and (idempotent or never_sent)
                if not retryable or attempt >= self.max_retries:
                    raise TransportFailure(reason=type(e).__name__, detail=str(e), attempts=attempt + 1,
                                           ambiguous=ambiguous) from None
                self._wait(attempt, None, type(e).__name__, on_retry)
                attempt += 1
                continue
            status = response.status_code
            retry_after = self.retry_after(response)
            retryable = status in retry_set or (retry_response is not None and retry_response(response))
            if not retryable:
                return Outcome(response, attempt + 1, ambiguous, None, retry_after)
            if status in _MAYBE_PROCESSED_STATUSES:
                ambiguous = True
            if retry_after is not None and retry_after > self.max_retry_after:
                return Outcome(response, attempt + 1, ambiguous, "retry-after", retry_after)
            if attempt >= self.max_retries:
                return Outcome(response, attempt + 1, ambiguous, "retries", retry_after)
            response.close()
            self._wait(attempt, retry_after, f"HTTP {status}", on_retry)
            attempt += 1

    def _wait(self, attempt: int, retry_after: float | None, cause: str,
              on_retry: Callable[[RetryEvent], None] | None) -> None:
        wait = retry_after if retry_after is not None else self.backoff(attempt)
        if on_retry is not None:
            on_retry(RetryEvent(attempt + 1, self.max_retries, wait, cause, retry_after is not None))
        self.sleep(wait)


def attempts_text(n: int) -> str:
    """``1 attempt`` / ``3 attempts``."""
    return f"{n} attempt" if n == 1 else f"{n} attempts"
