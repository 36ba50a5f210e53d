"""A remote LLM judge: any OpenAI-compatible /v1/chat/completions endpoint (no Django).

One call asks for a one-letter answer with logprobs. The answer must parse strictly
(verdicts.answer_parse). P("A") comes from the first token's top_logprobs when the server
returns them, else FIXED_P for the letter given. Timeouts, connection errors, 429, 5xx and
malformed answers are retried up to `max_attempts` times in all with exponential backoff
(Retry-After honoured, capped); other 4xx fail at once. The API key goes only into the
Authorization header: it is scrubbed from every error message this module makes.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from curation.judges.verdicts import (
    FIXED_P,
    answer_parse,
    judge_messages,
    p_first_from_top_logprobs,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_CAP = 10.0


class JudgeFailure(Exception):
    """The endpoint gave no usable answer after the allowed attempts."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def endpoint_url(base_url: str) -> str:
    """`https://host/v1` -> `https://host/v1/chat/completions`; `https://host` gets /v1 too."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


@dataclass
class RemoteJudge:
    base_url: str
    model: str
    api_key: str = ""
    timeout: float = 30.0
    max_attempts: int = 3
    backoff: float = 0.5
    max_tokens: int = 2
    top_logprobs: int = 5

    def __repr__(self) -> str:  # never the key
        return f"RemoteJudge({self.base_url!r}, {self.model!r}, key={'set' if self.api_key else 'not set'})"

    def _scrub(self, text: str) -> str:
        return text.replace(self.api_key, "[key]") if self.api_key else text

    def p_first(
        self, messages: list[dict[str, str]], session: requests.Session | None = None
    ) -> tuple[float, int]:
        """(P(first response shown is better), attempts used); JudgeFailure when none worked."""
        http = session or requests.Session()
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._once(http, messages), attempt
            except _Retryable as exc:
                last = self._scrub(str(exc))
                logger.info("remote judge %s: attempt %d failed: %s", self.model, attempt, last)
                if attempt < self.max_attempts:
                    wait = self.backoff * 2 ** (attempt - 1)
                    if exc.wait is not None:
                        wait = max(wait, min(exc.wait, RETRY_AFTER_CAP))
                    time.sleep(wait)
            except JudgeFailure as exc:
                exc.attempts = attempt
                exc.message = self._scrub(exc.message)
                raise JudgeFailure(exc.message, attempt) from None
        raise JudgeFailure(f"gave up after {self.max_attempts} attempts: {last}", self.max_attempts)

    def _once(self, http: requests.Session, messages: list[dict[str, str]]) -> float:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }
        try:
            response = http.post(
                endpoint_url(self.base_url), json=body, headers=headers, timeout=self.timeout
            )
        except requests.Timeout:
            raise _Retryable(f"timed out after {self.timeout:g} s") from None
        except requests.ConnectionError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__})") from None
        except requests.RequestException as exc:  # a bad URL, too many redirects, ...
            raise JudgeFailure(f"request failed ({type(exc).__name__})", 0) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}", _retry_after(response))
        if status >= 400:
            raise JudgeFailure(f"HTTP {status}: {response.text[:200]}", 0)
        try:
            choice = response.json()["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable("malformed response (not a chat completion)") from None
        letter = answer_parse(content)
        if letter is None:
            raise _Retryable(f"malformed answer {str(content)[:40]!r} (expected A or B)")
        p = _p_from_logprobs(choice.get("logprobs"))
        if p is None:
            p = FIXED_P if letter == "A" else 1 - FIXED_P
        return p


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _p_from_logprobs(logprobs) -> float | None:
    """P("A") from the first content token that is a letter, among its top_logprobs."""
    try:
        tokens = logprobs["content"]
    except (TypeError, KeyError):
        return None
    for token in tokens or []:
        if not isinstance(token, dict):
            return None
        if answer_parse(token.get("token")) is None:
            continue  # leading whitespace or punctuation
        top = [
            (t.get("token"), t.get("logprob"))
            for t in token.get("top_logprobs") or []
            if isinstance(t, dict)
        ]
        return p_first_from_top_logprobs(top or [(token.get("token"), token.get("logprob"))])
    return None


@dataclass
class PairAnswer:
    """Both orders of one pair: p_a_ab = P(A) asked A/B, p_a_ba = P(A) asked B/A (already
    mapped back to the canonical A); NaN and `error` set when either order failed."""

    p_a_ab: float
    p_a_ba: float
    attempts: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def pair_ask(
    judge: RemoteJudge,
    prompt: str,
    a: str,
    b: str,
    *,
    template: str = "",
    max_chars: int = 4000,
    session: requests.Session | None = None,
) -> PairAnswer:
    """Ask `judge` about one pair in both orders (A/B, then B/A)."""
    attempts = 0
    with session or requests.Session() as http:
        try:
            p_ab, n = judge.p_first(
                judge_messages(
                    prompt=prompt, first=a, second=b, template=template, max_chars=max_chars
                ),
                http,
            )
            attempts += n
            p_first_ba, n = judge.p_first(
                judge_messages(
                    prompt=prompt, first=b, second=a, template=template, max_chars=max_chars
                ),
                http,
            )
            attempts += n
        except JudgeFailure as exc:
            return PairAnswer(math.nan, math.nan, attempts + exc.attempts, exc.message[:500])
    return PairAnswer(p_ab, 1.0 - p_first_ba, attempts)


def pairs_ask(
    judge: RemoteJudge,
    pairs: list[tuple[str, str, str]],
    *,
    template: str = "",
    max_chars: int = 4000,
    concurrency: int = 4,
) -> list[PairAnswer]:
    """pair_ask over (prompt, a, b) triples, `concurrency` at a time, in order. A plain entry
    point (no Django) for simulations; orders_combine turns the answers into verdicts."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(
            pool.map(lambda t: pair_ask(judge, *t, template=template, max_chars=max_chars), pairs)
        )
