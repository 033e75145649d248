"""Per-client limits, hit and recovered: WebSocket sessions, HTTP syntheses in flight, voice uploads per
hour; counted per token when tokens are on, per address otherwise, and X-Forwarded-For believed only
from a trusted proxy."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from server_helpers import TIMEOUT, Client, run

from makima_tts.server.limits import ClientLimits, RateLimited
from makima_tts.server.settings import Settings


def limited(settings_overrides: dict) -> tuple[ClientLimits, list[float]]:
    now = [1000.0]
    settings = Settings(_env_file=None, device="cpu", **settings_overrides)
    return ClientLimits(settings, clock=lambda: now[0]), now


def test_uploads_per_hour_recover_as_the_window_slides():
    limits, now = limited({"voice_uploads_per_hour": 2})
    limits.count_upload("a")
    now[0] += 600
    limits.count_upload("a")
    with pytest.raises(RateLimited) as over:
        limits.count_upload("a")
    assert over.value.retry_after_s == 3000  # the first upload leaves the window in 50 minutes
    limits.count_upload("b")  # another client has its own share
    now[0] += 3000
    limits.count_upload("a")  # recovered


def test_concurrency_slots_are_given_back_once():
    limits, _ = limited({"max_syntheses_per_client": 1})
    held = limits.hold_synthesis("a")
    with pytest.raises(RateLimited):
        limits.hold_synthesis("a")
    held.release()
    held.release()  # idempotent: never frees a slot it does not hold
    again = limits.hold_synthesis("a")
    with pytest.raises(RateLimited):
        limits.hold_synthesis("a")
    again.release()


def until(predicate, what: str):
    """Wait for an observable state of the server (a hang guard, not a timing check)."""
    deadline = time.monotonic() + TIMEOUT
    while not (result := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return result


def test_websocket_sessions_per_token(start_server):
    srv = start_server(auth_tokens="alpha,beta", max_sessions_per_client=2)

    async def main():
        def url(token: str) -> str:
            return f"{srv.ws}?token={token}"

        held = [await Client.open(url("alpha")) for _ in range(2)]
        for c in held:
            await c.recv_json("ready")
        over = await Client.open(url("alpha"))
        err = await over.recv_json()
        assert err["code"] == "RATE_LIMITED" and err["retryAfterMs"] >= 1000
        await over.conn.wait_closed()
        assert over.conn.close_code == 1013
        other = await Client.open(url("beta"))  # per token, not per address
        await other.recv_json("ready")
        await other.close()
        await held.pop().close()
        # recovered once the server has ended that session
        while True:
            again = await Client.open(url("alpha"))
            first = await again.recv_json()
            if first["type"] == "ready":
                break
            assert first["code"] == "RATE_LIMITED"
            await again.conn.wait_closed()
        for c in (again, *held):
            await c.close()

    run(main())


def test_http_syntheses_per_address(start_server):
    """One synthesis is held in flight (its voice lookup waits on a gate) while the same client asks again."""
    srv = start_server(max_syntheses_per_client=1)
    srv.wait_loaded()
    entered, gate = threading.Event(), threading.Event()
    resolver = srv.services.resolver
    lookup = resolver.check

    def gated_lookup(voice_id, tts) -> None:  # runs in a worker thread
        entered.set()
        gate.wait(TIMEOUT)
        lookup(voice_id, tts)

    resolver.check = gated_lookup
    first: list[httpx.Response] = []
    speak = threading.Thread(target=lambda: first.append(httpx.post(f"{srv.http}/api/v1/speak", json={"text": "hi"},
                                                                    timeout=TIMEOUT)))
    speak.start()
    assert entered.wait(TIMEOUT)
    try:
        second = httpx.post(f"{srv.http}/v1/audio/speech", json={"input": "hi"})
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        error = second.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
        third = httpx.post(f"{srv.http}/api/v1/speak", json={"text": "hi"})
        assert third.status_code == 429 and third.json()["error"]["code"] == "RATE_LIMITED"
    finally:
        resolver.check = lookup
        gate.set()
        speak.join(TIMEOUT)
    assert first[0].status_code == 200
    # recovered once the server has finished the first response (it may still be closing it right now)
    until(lambda: httpx.post(f"{srv.http}/api/v1/speak", json={"text": "hi"}, timeout=TIMEOUT).status_code == 200,
          "the synthesis slot was not given back")


def bad_upload(srv, **headers) -> httpx.Response:
    return httpx.post(f"{srv.http}/api/v1/voices", files={"audio": ("x.wav", b"not audio")}, headers=headers)


def test_uploads_per_hour_and_forwarded_for(start_server, tmp_path):
    srv = start_server(data_dir=tmp_path / "a", voice_uploads_per_hour=1)
    assert bad_upload(srv, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 415  # counted, then refused
    over = bad_upload(srv, **{"X-Forwarded-For": "203.0.113.2"})  # not trusted: still 127.0.0.1
    assert over.status_code == 429 and 3500 <= int(over.headers["retry-after"]) <= 3600

    proxied = start_server(data_dir=tmp_path / "b", voice_uploads_per_hour=1, trusted_proxies="127.0.0.1")
    assert bad_upload(proxied, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 415
    assert bad_upload(proxied, **{"X-Forwarded-For": "203.0.113.2"}).status_code == 415  # another client
    assert bad_upload(proxied, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 429
