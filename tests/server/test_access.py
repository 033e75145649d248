"""The access rule over the app's own route table: every route × no / wrong / right token × allowed /
foreign / no Origin, on a real server. A route added later is in the table, so it is checked too: it must
be refused without a token unless this file lists it as open. Also: the cross-site form upload, CORS
preflights, OpenAI's error shape, /ready and /metrics behind TTS_PROTECT_OPS, the start-up warning and
the security settings."""

from __future__ import annotations

import logging
import time
from collections import Counter

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from server_helpers import TIMEOUT, Client, make_settings, run
from starlette.routing import Mount
from test_voices_api import clip, tree
from websockets.exceptions import InvalidStatus

from makima_tts.server.auth import token_valid
from makima_tts.server.run import build_server
from makima_tts.server.settings import Settings

RIGHT, WRONG = "right-token", "wrong-token"
FOREIGN = "http://evil.example"
# Routes anyone may reach (pages must load so a user can type the token; the API description is public).
OPEN = {"/health", "/", "/listen", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/static"}
OPS = {"/ready", "/metrics"}  # open unless TTS_PROTECT_OPS
SAMPLE_PATHS = {"/static": "/static/style.css"}  # a mount is probed at one of its files


def route_table(app) -> list[tuple[str, str, str]]:
    """(kind, method, path) for every route of the app: kind is http or websocket."""
    table = []
    for ctx in iter_route_contexts(app.routes):
        route, path = ctx.original_route, ctx.path
        if isinstance(route, Mount):
            table.append(("http", "GET", path))
        elif hasattr(route, "methods") and route.methods:
            table += [("http", m, path) for m in sorted(route.methods - {"HEAD"})]
        else:
            table.append(("websocket", "WS", path))
    return table


def concrete(path: str) -> str:
    return SAMPLE_PATHS.get(path, path.replace("{voice_id}", "no-such-voice").replace("{model:path}", "tts-1"))


def headers_for(token: str | None, origin: str | None) -> dict[str, str]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["Origin"] = origin
    return headers


def ws_outcome(url: str, headers: dict[str, str]) -> str:
    """'refused-403', 'unauthorized' (close 4001), or 'admitted' (a ping is answered)."""

    async def main() -> str:
        try:
            client = await Client.open(url, additional_headers=headers)
        except InvalidStatus as exc:
            return f"refused-{exc.response.status_code}"
        msg = await client.recv_json()  # ready, or the refusal of a wrong token
        if msg["type"] == "ready":
            await client.send(type="ping", id=1)  # before auth anything but start closes the session
            msg = await client.recv_json()
            if msg["type"] == "pong":
                await client.close()
                return "admitted"
        assert msg["code"] == "UNAUTHORIZED"
        await client.conn.wait_closed()
        assert client.conn.close_code == 4001
        return "unauthorized"

    return run(main())


def expected(path: str, token: str | None, origin: str, tokens_on: bool, protect_ops: bool) -> str:
    if origin == "foreign":
        return "forbidden"
    protected = path not in OPEN and (path not in OPS or protect_ops)
    if tokens_on and protected and token != RIGHT:
        return "unauthorized"
    return "passed"


def outcome(response: httpx.Response) -> str:
    if response.status_code == 403 and response.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED":
        return "forbidden"
    if response.status_code == 401:
        return "unauthorized"
    assert response.status_code < 500, response.text
    return "passed"


def wait_loaded(srv) -> None:
    """The model has loaded (read from the server object: /ready itself may need a token here)."""
    deadline = time.monotonic() + TIMEOUT
    while not srv.services.models.loaded:
        assert time.monotonic() < deadline, "model did not load"
        time.sleep(0.05)


def check_matrix(srv, tokens_on: bool, protect_ops: bool = False) -> Counter:
    wait_loaded(srv)
    own = f"http://127.0.0.1:{srv.port}"
    origins = {"allowed": own, "foreign": FOREIGN, "none": None}
    table = route_table(srv.server.config.app)
    counts: Counter = Counter()
    with httpx.Client(base_url=srv.http, timeout=60) as http:
        for kind, method, path in table:
            for token in (None, WRONG, RIGHT):
                for origin_name, origin in origins.items():
                    want = expected(path, token, origin_name, tokens_on, protect_ops)
                    headers = headers_for(token, origin)
                    if kind == "websocket":
                        got = ws_outcome(f"ws://127.0.0.1:{srv.port}{path}", headers)
                        got = {"refused-403": "forbidden", "admitted": "passed"}.get(got, got)
                    else:
                        response = http.request(method, concrete(path), headers=headers)
                        got = outcome(response)
                        if got == "unauthorized":
                            body = response.json()["error"]
                            assert WRONG not in response.text and RIGHT not in response.text
                            if path.startswith("/v1/"):  # OpenAI's shape
                                assert body["code"] == "invalid_api_key" and body["type"] and "param" in body
                            else:
                                assert body["code"] == "UNAUTHORIZED" and "token" in body["message"]
                    assert got == want, (method, path, token, origin_name, response.text if kind == "http" else "")
                    counts[want] += 1
    counts["routes"] = len(table)
    return counts


def test_every_route_credential_and_origin(start_server, tmp_path):
    srv = start_server(auth_tokens=RIGHT)
    table = route_table(srv.server.config.app)
    paths = {p for _, _, p in table}
    assert {"/api/v1/speak", "/v1/audio/speech", "/api/v1/voices", "/api/v1/voices/{voice_id}/audio"} <= paths
    assert {"/v1/audio/voices", "/v1/models", "/v1/models/{model:path}"} <= paths
    assert ("http", "DELETE", "/api/v1/voices/{voice_id}") in table and ("websocket", "WS", "/api/v1/speak") in table
    counts = check_matrix(srv, tokens_on=True)
    protected = sum(1 for _, _, p in table if p not in OPEN | OPS)
    assert counts["routes"] * 9 == counts["passed"] + counts["unauthorized"] + counts["forbidden"]
    assert counts["unauthorized"] == protected * 4  # (none, wrong) × (allowed, no Origin)
    print(f"\nroute matrix, tokens on: {dict(counts)} over {counts['routes']} routes ({protected} protected)")


def test_ops_routes_behind_their_setting(start_server):
    srv = start_server(auth_tokens=RIGHT, protect_ops=True)
    counts = check_matrix(srv, tokens_on=True, protect_ops=True)
    print(f"\nroute matrix, tokens on and TTS_PROTECT_OPS: {dict(counts)}")


def test_without_tokens_only_the_origin_is_checked(start_server):
    srv = start_server()
    counts = check_matrix(srv, tokens_on=False)
    assert counts["unauthorized"] == 0
    print(f"\nroute matrix, no tokens: {dict(counts)}")


def test_cross_site_form_upload_is_refused(start_server, tmp_path):
    """A page on another site posting a multipart form (no preflight needed) to a local server."""
    srv = start_server(data_dir=tmp_path / "data")
    srv.wait_loaded()  # loading caches the default voice's prompt in the data dir; snapshot after that
    before = tree(tmp_path / "data")
    r = httpx.post(f"{srv.http}/api/v1/voices", files={"audio": ("clip.wav", clip(2.0))}, data={"id": "stolen"},
                   headers={"Origin": FOREIGN}, timeout=60)
    assert r.status_code == 403 and r.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
    assert tree(tmp_path / "data") == before
    speak = httpx.post(f"{srv.http}/api/v1/speak", content=b'{"text": "hi"}',
                       headers={"Origin": FOREIGN, "Content-Type": "text/plain"})
    assert speak.status_code == 403
    voices = httpx.get(f"{srv.http}/api/v1/voices").json()["voices"]
    assert "stolen" not in {v["id"] for v in voices}


def test_cors_answers_preflights_for_listed_origins_only(start_server):
    srv = start_server(allowed_origins="https://app.example", auth_tokens=RIGHT)
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    ok = httpx.options(f"{srv.http}/api/v1/speak", headers={"Origin": "https://app.example", **ask})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    refused = httpx.options(f"{srv.http}/api/v1/speak", headers={"Origin": FOREIGN, **ask})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    listed = httpx.get(f"{srv.http}/api/v1/voices",
                       headers={"Origin": "https://app.example", "Authorization": f"Bearer {RIGHT}"})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "https://app.example"
    assert set(listed.headers["access-control-expose-headers"].lower().split(", ")) == {
        "retry-after", "x-sample-rate", "x-encoding"}
    own = httpx.get(f"{srv.http}/api/v1/voices", headers={"Origin": f"http://127.0.0.1:{srv.port}"})
    assert own.status_code == 403  # a list replaces the default: the server's own origin must be on it


def test_query_token_for_browsers(start_server):
    srv = start_server(auth_tokens=RIGHT)
    assert httpx.get(f"{srv.http}/api/v1/voices/default/audio?token={RIGHT}").status_code == 200
    assert httpx.get(f"{srv.http}/api/v1/voices/default/audio?token={WRONG}").status_code == 401


def test_start_up_warns_beyond_loopback_without_tokens(tiny_model, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="makima_tts.server.run"):
        build_server(make_settings(tiny_model, tmp_path / "a", host="0.0.0.0"))
    assert any("no TTS_AUTH_TOKENS" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="makima_tts.server.run"):
        build_server(make_settings(tiny_model, tmp_path / "b", host="0.0.0.0", auth_tokens=RIGHT))
        build_server(make_settings(tiny_model, tmp_path / "c"))
    assert not [r for r in caplog.records if "SECURITY" in r.getMessage()]


def test_security_settings(tmp_path):
    secret = tmp_path / "tokens"
    secret.write_text("first\n\n second \n")
    s = Settings(_env_file=None, device="cpu", auth_tokens="inline", auth_tokens_file=secret,
                 trusted_proxies="10.0.0.0/8, 127.0.0.1")
    assert s.auth_tokens == ["inline", "first", "second"] and s.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    assert token_valid("second", s) and not token_valid("secon", s) and not token_valid(None, s)
    secret.write_text("\n")
    with pytest.raises(ValueError, match="holds no token"):
        Settings(_env_file=None, device="cpu", auth_tokens_file=secret)
    with pytest.raises(ValueError, match="cannot read"):
        Settings(_env_file=None, device="cpu", auth_tokens_file=tmp_path / "missing")
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(_env_file=None, device="cpu", trusted_proxies="proxy.example")
    assert Settings(_env_file=None, device="cpu", auth_tokens_file="").auth_tokens_file is None
