"""The reconnect policy: which errors are retried, the growing delays, the server's retryAfterMs, the cap."""

import pytest

from makima_tts.client import NO_RETRY, Backoff, ErrorCode, SpeakError


def test_retryable_errors_back_off_exponentially_up_to_the_cap():
    busy = SpeakError("SERVER_BUSY", "busy", close_code=1013)
    policy = Backoff(attempts=6, initial_s=0.5, factor=2, max_s=3)
    assert [policy.delay(n, busy) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, None]


def test_the_servers_retry_after_wins_when_longer():
    limited = SpeakError("RATE_LIMITED", "slow down", retry_after_ms=4000)
    assert Backoff(initial_s=0.1).delay(1, limited) == 4.0


def test_what_is_retried():
    shutdown = SpeakError("CONNECTION_FAILED", "closed", close_code=1001)
    refused = SpeakError("CONNECTION_FAILED", "connection refused")
    unauthorized = SpeakError("UNAUTHORIZED", "bad token", close_code=4001)
    future = SpeakError("SOMETHING_NEW", "a code this client does not know")
    assert shutdown.retryable and refused.retryable
    assert not unauthorized.retryable and Backoff().delay(1, unauthorized) is None
    assert future.code == "SOMETHING_NEW" and not future.retryable
    assert unauthorized.code is ErrorCode.UNAUTHORIZED and str(unauthorized) == "UNAUTHORIZED: bad token"
    assert NO_RETRY.delay(1, refused) is None


def test_nonsense_policies_are_refused():
    with pytest.raises(ValueError, match="attempts >= 1"):
        Backoff(attempts=0)
