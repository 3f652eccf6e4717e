"""Retries and the org-wide rate budget, as an ``httpx`` transport wrapper.

:class:`ResilientTransport` wraps any :class:`httpx.AsyncBaseTransport` (by default
:class:`httpx.AsyncHTTPTransport`; in tests an :class:`httpx.MockTransport`; under vcrpy the patched
inner transport, so retries replay from cassettes). Per request it:

1. acquires a token from each rate bucket named in the request (before **every** attempt: retries spend
   budget too), waiting as the :class:`~connectors.runtime.ratelimit.RateLimiter` says;
2. sends the request and feeds the response's ``x-ratelimit-*`` headers back to the limiter;
3. retries what is safe to repeat, with jittered exponential backoff, and gives up with a typed error
   when the total wait would exceed the cap.

Per-request options travel in ``request.extensions`` (``client.get(url, extensions={...})`` or
``httpx.Request(..., extensions=...)``):

=================================  ================================================================
key                                meaning
=================================  ================================================================
``connectors.idempotent``          ``bool``: may this request be repeated? Default: True for GET,
                                   HEAD, OPTIONS, TRACE, PUT and DELETE; False for POST and PATCH.
``connectors.buckets``             ``Sequence[Bucket]``: budgets to acquire before every attempt.
``connectors.headers_bucket``      ``Bucket | None``: the budget the ``x-ratelimit-*`` headers describe.
``connectors.max_wait``            ``float``: total-wait cap for this request (default
                                   ``RetryPolicy.max_total_wait``).
=================================  ================================================================

The returned response carries ``connectors.attempts`` (``int``) and ``connectors.waited`` (``float``
seconds spent in the limiter and in backoff) in ``response.extensions``.

Retry rules
-----------
* Idempotent requests are retried on ``RetryPolicy.retry_statuses`` (429, 500, 502, 503, 504) and on
  transport errors that may hit any request: connect/read/write/pool errors and timeouts and
  :class:`httpx.RemoteProtocolError`.
* Other requests (a POST not marked idempotent, a PATCH) are retried **only when Kustomer certainly never
  processed them**: :class:`httpx.ConnectError`, :class:`httpx.ConnectTimeout` and
  :class:`httpx.PoolTimeout` (nothing was sent), and 429 (refused before processing). Never on 5xx, read or
  write errors: the request may have been applied, and repeating it could duplicate a write.
* 429: the wait is the server's: ``x-ratelimit-reset`` (see :func:`reset_epoch` for epoch vs delay
  detection), ``Retry-After`` (seconds or HTTP date) and ``retry-after-ms``; the latest of these wins,
  plus a little jitter so that clients do not all return at the same instant. The headers bucket is
  penalized (:meth:`~connectors.runtime.ratelimit.RateLimiter.penalize`) until then. Without any of
  these headers, exponential backoff (at least ``backoff_base``).
* 5xx and transport errors: "full jitter" exponential backoff (AWS architecture blog; openai-python):
  retry ``n`` waits a random time in ``[(1 - jitter) * cap, cap]`` with
  ``cap = min(backoff_max, backoff_base * 2 ** (n - 1))``; a ``Retry-After`` on a 5xx raises the wait to it.
* Total wait cap: before any wait, if it would take the request's total wait (limiter plus backoff) past
  ``max_total_wait``, or when ``max_retries`` retries were spent, the transport stops: for a 429 it raises
  :class:`~connectors.errors.RateLimitError` with ``retry_at``; for a 5xx it returns the last response (the
  client maps it to ``ServerError``); for a transport error it re-raises the last ``httpx`` exception.

When retries are enabled the request body is read into memory once (``Request.aread``), so that a streamed
body can be replayed; Kustomer bodies are small (100 kb). The body of a response to an idempotent request that
may still be retried is read inside the retry loop too (a connection dropped mid-body is retried) and replayed
from memory to the caller; other responses are returned untouched (still streaming). Discarded responses are
read and closed before the next attempt. Log lines (logger
``connectors.runtime.transport``) name the method and the URL path only, never headers, query strings or
bodies. A limiter refusal (the budget would make the request wait past its cap) is raised as a
:class:`~connectors.errors.RateLimitError` naming the method and path, before anything is sent.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import httpx

from connectors.errors import ConfigurationError, RateLimitError
from connectors.runtime.ratelimit import Bucket, Clock, RateLimiter, Sleep

__all__ = [
    "EXT_ATTEMPTS",
    "EXT_BUCKETS",
    "EXT_HEADERS_BUCKET",
    "EXT_IDEMPOTENT",
    "EXT_MAX_WAIT",
    "EXT_WAITED",
    "IDEMPOTENT_METHODS",
    "ResilientTransport",
    "RetryPolicy",
    "is_idempotent",
    "reset_epoch",
    "retry_after_epoch",
    "server_retry_at",
]

logger = logging.getLogger(__name__)

EXT_IDEMPOTENT: Final = "connectors.idempotent"
"""Request extension: ``bool``, whether the request is safe to repeat (overrides the method default)."""
EXT_BUCKETS: Final = "connectors.buckets"
"""Request extension: ``Sequence[Bucket]`` to acquire before every attempt."""
EXT_HEADERS_BUCKET: Final = "connectors.headers_bucket"
"""Request extension: the ``Bucket`` that the response's ``x-ratelimit-*`` headers describe."""
EXT_MAX_WAIT: Final = "connectors.max_wait"
"""Request extension: ``float`` seconds, overrides ``RetryPolicy.max_total_wait``."""
EXT_ATTEMPTS: Final = "connectors.attempts"
"""Response extension: ``int``, number of attempts made."""
EXT_WAITED: Final = "connectors.waited"
"""Response extension: ``float``, seconds waited in the limiter and in backoff."""

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods retried on 5xx and read errors unless the request says otherwise."""

# Transport errors after which the request certainly never reached the server.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport errors worth retrying for an idempotent request.
_RETRYABLE_ERRORS: Final = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)

_EPOCH_SECONDS: Final = 1e9  # 2001-09-09; no "seconds to wait" is that large
_EPOCH_MILLIS: Final = 1e12  # as epoch seconds, year 33658; as milliseconds, 2001-09-09
_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


@dataclass(frozen=True)
class RetryPolicy:
    """How :class:`ResilientTransport` retries.

    Attributes:
        max_retries: retries after the first attempt (so at most ``max_retries + 1`` attempts).
        backoff_base: the first backoff cap, in seconds; doubles on every retry.
        backoff_max: the largest backoff cap, in seconds.
        max_total_wait: total seconds a request may spend waiting (limiter plus backoff) before the
            transport gives up; a request may override it with ``connectors.max_wait``.
        retry_statuses: statuses retried (5xx only for idempotent requests; 429 for all).
        jitter: fraction of each backoff that is random: 1.0 is "full jitter" (uniform in ``[0, cap]``),
            0.25 is openai-python's (``[0.75 * cap, cap]``), 0.0 is none.
    """

    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_total_wait: float = 120.0
    retry_statuses: frozenset[int] = field(default=frozenset({429, 500, 502, 503, 504}))
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigurationError(f"RetryPolicy.max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.max_total_wait < 0:
            raise ConfigurationError("RetryPolicy backoff_base, backoff_max and max_total_wait must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigurationError(f"RetryPolicy.jitter must be in [0, 1], got {self.jitter}")

    def backoff_cap(self, retry: int) -> float:
        """Return the backoff cap before retry number ``retry`` (1 for the first retry)."""
        return min(self.backoff_max, self.backoff_base * 2.0 ** min(max(retry - 1, 0), 64))

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Return a jittered backoff in ``[(1 - jitter) * cap, cap]`` for retry number ``retry``."""
        return self.backoff_cap(retry) * (1.0 - self.jitter * rng.random())


def is_idempotent(request: httpx.Request) -> bool:
    """Return whether ``request`` may be repeated: its ``connectors.idempotent`` extension or its method."""
    flag = request.extensions.get(EXT_IDEMPOTENT)
    if flag is not None:
        return bool(flag)
    return request.method.upper() in IDEMPOTENT_METHODS


def reset_epoch(value: str, *, now: float) -> float | None:
    """Interpret an ``x-ratelimit-reset`` value as an absolute time (epoch seconds).

    Kustomer's docs do not say whether the value is an epoch or a delay, so detect it: a number
    ``>= 1e12`` is epoch **milliseconds**, ``>= 1e9`` is epoch seconds (no delay is 31 years long), and
    anything smaller is seconds to wait from ``now``. An HTTP date is accepted too.

    Args:
        value: the header value.
        now: the current time in epoch seconds.

    Returns:
        The epoch seconds at which the window resets (possibly in the past), or None if unparseable.
    """
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return _http_date(text)
    if not math.isfinite(number) or number < 0:
        return None
    if number >= _EPOCH_MILLIS:
        return number / 1000.0
    if number >= _EPOCH_SECONDS:
        return number
    return now + number


def retry_after_epoch(value: str, *, now: float) -> float | None:
    """Interpret a ``Retry-After`` value (delay seconds or HTTP date) as epoch seconds, or None."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return _http_date(text)
    if not math.isfinite(number) or number < 0:
        return None
    return now + number


def _http_date(text: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # HTTP dates are GMT
        return parsed.replace(tzinfo=datetime.UTC).timestamp()
    return parsed.timestamp()


def server_retry_at(headers: httpx.Headers, *, now: float, include_reset: bool = True) -> float | None:
    """Return the earliest time the server allows a retry, from the response headers, or None.

    The latest of ``Retry-After``, ``retry-after-ms`` and (when ``include_reset``) ``x-ratelimit-reset``
    wins: never retry sooner than any of them says.

    Args:
        headers: the response headers.
        now: the current time in epoch seconds.
        include_reset: also consider ``x-ratelimit-reset`` (for a 429; not for a 5xx).
    """
    candidates: list[float] = []
    retry_after = headers.get("retry-after")
    if retry_after is not None and (at := retry_after_epoch(retry_after, now=now)) is not None:
        candidates.append(at)
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            millis = float(value)
        except ValueError:
            millis = math.nan
        if math.isfinite(millis) and millis >= 0:
            candidates.append(now + millis / 1000.0)
    reset = headers.get("x-ratelimit-reset") if include_reset else None
    if reset is not None and (at := reset_epoch(reset, now=now)) is not None:
        candidates.append(at)
    return max(candidates) if candidates else None


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None


def _path(request: httpx.Request) -> str:
    return request.url.path


def _safe_url(request: httpx.Request) -> str:
    url = request.url
    return f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}{url.path}"


def _safe_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        try:
            return response.text
        except (UnicodeDecodeError, httpx.ResponseNotRead):
            return None
    except httpx.ResponseNotRead:
        return None


def _kustomer_error(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, Mapping):
        errors = body.get("errors")
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], Mapping) else body
        code = first.get("code")
        detail = first.get("detail") or first.get("message") or first.get("title")
        return (str(code) if code is not None else None, str(detail) if detail is not None else None)
    return None, None


def _request_id(headers: httpx.Headers) -> str | None:
    for name in ("x-request-id", "x-kustomer-request-id", "request-id"):
        if (value := headers.get(name)) is not None:
            return str(value)
    return None


async def _buffered(response: httpx.Response, request: httpx.Request) -> httpx.Response:
    """Read the raw body now and return a response replaying it (closed either way on failure).

    Over a socket the inner transport returns as soon as the headers are in; without this, a connection
    dropped mid-body would fail in the caller's read, outside the retry loop.
    """
    if response.is_stream_consumed:  # already in memory (a mock transport's response)
        return response
    try:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
        request=request,
    )


async def _discard(response: httpx.Response) -> None:
    try:
        await response.aread()
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()


class ResilientTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that paces requests by rate budgets and retries what is safe to repeat.

    Args:
        inner: the transport that does the I/O; defaults to ``httpx.AsyncHTTPTransport()``. Closed by
            :meth:`aclose`.
        policy: retry and wait limits.
        limiter: the rate limiter holding the budgets named by ``connectors.buckets``; None disables
            pacing (retries still apply).
        clock: current time in epoch seconds (injectable for tests).
        sleep: how to wait (injectable for tests).
        rng: source of jitter; a fresh ``random.Random()`` by default.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        policy: RetryPolicy = RetryPolicy(),
        limiter: RateLimiter | None = None,
        clock: Clock = time.time,
        sleep: Sleep = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._policy = policy
        self._limiter = limiter
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not security

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy."""
        return self._policy

    @property
    def limiter(self) -> RateLimiter | None:
        """The rate limiter, if any."""
        return self._limiter

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` with pacing and retries; see the module docstring for the rules.

        Args:
            request: the request; its ``connectors.*`` extensions tune this call.

        Returns:
            The final response, with ``connectors.attempts`` and ``connectors.waited`` in its extensions.

        Raises:
            RateLimitError: the budget or Kustomer's 429s would make the request wait past its cap.
            httpx.TransportError: the last transport error, when it is not retryable or the cap is reached.
        """
        policy = self._policy
        idempotent = is_idempotent(request)
        buckets = self._buckets(request)
        headers_bucket = request.extensions.get(EXT_HEADERS_BUCKET)
        if headers_bucket is not None and not isinstance(headers_bucket, Bucket):
            raise ConfigurationError(f"request extension {EXT_HEADERS_BUCKET!r} must be a Bucket or None")
        raw_max_wait = request.extensions.get(EXT_MAX_WAIT)
        max_wait = policy.max_total_wait if raw_max_wait is None else float(raw_max_wait)
        if policy.max_retries > 0:
            await request.aread()  # make a streamed body replayable
        waited = 0.0
        attempts = 0
        while True:
            if self._limiter is not None and buckets:
                waited += await self._acquire(request, buckets, max_wait - waited)
            attempts += 1
            retries_left = attempts <= policy.max_retries
            try:
                response = await self._inner.handle_async_request(request)
                if idempotent and retries_left and response.status_code not in policy.retry_statuses:
                    # A connection dropped while the body streams in is retried like one dropped before it.
                    response = await _buffered(response, request)
            except _RETRYABLE_ERRORS as exc:
                if not (idempotent or isinstance(exc, _NOT_SENT)) or not retries_left:
                    raise
                delay = policy.backoff(attempts, self._rng)
                if waited + delay > max_wait:
                    logger.warning(
                        "giving up on %s %s after %d attempt(s): %s; wait cap reached",
                        request.method,
                        _path(request),
                        attempts,
                        type(exc).__name__,
                    )
                    raise
                logger.info(
                    "retrying %s %s in %.2fs after %s (attempt %d)",
                    request.method,
                    _path(request),
                    delay,
                    type(exc).__name__,
                    attempts,
                )
                await self._wait(delay)
                waited += delay
                continue

            now = self._clock()
            if self._limiter is not None and headers_bucket is not None:
                await self._observe(headers_bucket, response.headers, now)
            status = response.status_code
            if status not in policy.retry_statuses or (status != 429 and not idempotent):
                return self._done(response, attempts, waited)

            if status == 429:
                retry_at = server_retry_at(response.headers, now=now)
                if retry_at is not None:
                    if self._limiter is not None and headers_bucket is not None:
                        await self._limiter.penalize(headers_bucket, until=retry_at)
                    delay = max(retry_at - now, 0.0) + policy.jitter * self._rng.uniform(0, policy.backoff_base)
                else:
                    delay = max(policy.backoff(attempts, self._rng), policy.backoff_base)
                if not retries_left or waited + delay > max_wait:
                    await _discard(response)  # read (for the error body) and close
                    raise self._rate_limit_error(request, response, attempts, waited, max_wait, now, delay, retry_at)
            else:
                delay = policy.backoff(attempts, self._rng)
                if (retry_at := server_retry_at(response.headers, now=now, include_reset=False)) is not None:
                    delay = max(delay, retry_at - now)
                if not retries_left or waited + delay > max_wait:
                    logger.warning(
                        "giving up on %s %s after %d attempt(s): HTTP %d",
                        request.method,
                        _path(request),
                        attempts,
                        status,
                    )
                    return self._done(response, attempts, waited)

            logger.info(
                "retrying %s %s in %.2fs after HTTP %d (attempt %d)",
                request.method,
                _path(request),
                delay,
                status,
                attempts,
            )
            await _discard(response)
            await self._wait(delay)
            waited += delay

    # -- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def _buckets(request: httpx.Request) -> list[Bucket]:
        raw = request.extensions.get(EXT_BUCKETS)
        if raw is None:
            return []
        items = [raw] if isinstance(raw, Bucket) else list(raw)
        if not all(isinstance(b, Bucket) for b in items):
            raise ConfigurationError(f"request extension {EXT_BUCKETS!r} must be a sequence of Bucket")
        return items

    async def _acquire(self, request: httpx.Request, buckets: Sequence[Bucket], budget: float) -> float:
        assert self._limiter is not None
        try:
            return await self._limiter.acquire(buckets, max_wait=max(budget, 0.0))
        except RateLimitError as exc:
            logger.warning("rate budget exhausted for %s %s: %s", request.method, _path(request), exc.message)
            raise RateLimitError(
                f"{request.method} {_path(request)}: {exc.message}",
                retry_at=exc.retry_at,
                method=request.method,
                url=_safe_url(request),
            ) from exc

    async def _observe(self, bucket: Bucket, headers: httpx.Headers, now: float) -> None:
        assert self._limiter is not None
        limit = _int_header(headers, "x-ratelimit-limit")
        remaining = _int_header(headers, "x-ratelimit-remaining")
        raw_reset = headers.get("x-ratelimit-reset")
        reset_at = reset_epoch(raw_reset, now=now) if raw_reset is not None else None
        if limit is None and remaining is None and reset_at is None:
            return
        await self._limiter.observe(bucket, limit=limit, remaining=remaining, reset_at=reset_at)

    async def _wait(self, delay: float) -> None:
        if delay > 0:
            await self._sleep(delay)

    @staticmethod
    def _done(response: httpx.Response, attempts: int, waited: float) -> httpx.Response:
        response.extensions[EXT_ATTEMPTS] = attempts
        response.extensions[EXT_WAITED] = waited
        return response

    def _rate_limit_error(
        self,
        request: httpx.Request,
        response: httpx.Response,
        attempts: int,
        waited: float,
        max_wait: float,
        now: float,
        delay: float,
        retry_at: float | None,
    ) -> RateLimitError:
        when = retry_at if retry_at is not None else now + delay
        reason = f"the wait cap of {max_wait:.1f}s" if attempts <= self._policy.max_retries else "the retry limit"
        message = (
            f"Kustomer rate limit: {request.method} {_path(request)} got HTTP 429 after {attempts} "
            f"attempt(s) and {waited:.1f}s of waiting; retrying in {max(when - now, 0.0):.1f}s would exceed "
            f"{reason}"
        )
        logger.warning("giving up on %s %s after %d attempt(s): HTTP 429", request.method, _path(request), attempts)
        body = _body(response)
        code, detail = _kustomer_error(body)
        return RateLimitError(
            message,
            retry_at=when,
            status_code=429,
            error_code=code,
            detail=detail,
            request_id=_request_id(response.headers),
            body=body,
            headers=_safe_headers(response.headers),
            method=request.method,
            url=_safe_url(request),
        )
