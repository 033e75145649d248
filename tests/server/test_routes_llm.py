"""`POST /api/v1/llm/chat/completions` on a real server in front of a real (stand-in) LLM endpoint: the
answer streams through, the operator's key and model are used (never a key from the page), an abort
reaches the LLM, and every failure is a clear error in our shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_peer import LlmPeer  # noqa: E402

from makima_tts.server.routes_llm import chat_url  # noqa: E402

TOKENS = ["Hello", " there", ",", " how", " can", " I", " help", "?"]
ASK = {"model": "page-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
ROUTE = "/api/v1/llm/chat/completions"


def contents(lines) -> str:
    """The text of an OpenAI chat-completions event stream."""
    text = ""
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            delta = json.loads(line[6:])["choices"][0]["delta"]
            text += delta.get("content", "")
    return text


def test_chat_url_accepts_a_base_or_the_full_address():
    assert chat_url("http://h:11434/v1") == "http://h:11434/v1/chat/completions"
    assert chat_url("http://h:11434/v1/") == "http://h:11434/v1/chat/completions"
    assert chat_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


def test_the_answer_streams_through_with_the_operators_key_and_model(start_server):
    with LlmPeer(TOKENS, hold_after=3, key="operator-key") as llm:
        srv = start_server(auth_tokens="page-token", llm_proxy_url=llm.base, llm_proxy_key="operator-key",
                           llm_proxy_model="served-model")
        headers = {"Authorization": "Bearer page-token"}
        with httpx.stream("POST", srv.http + ROUTE, json=ASK, headers=headers, timeout=60) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            first = [next(lines) for _ in range(6)]  # three events (data + blank line each) came through
            assert contents(first) == "".join(TOKENS[:3])  # while the LLM still holds the rest (not released)
            assert llm.held.wait(30)
            llm.release()
            rest = list(lines)
        assert contents(first + rest) == "".join(TOKENS) and "data: [DONE]" in rest
        assert llm.requests[0]["model"] == "served-model" and llm.requests[0]["messages"] == ASK["messages"]
        assert llm.headers[0]["authorization"] == "Bearer operator-key"  # our token never goes upstream


def test_a_page_that_goes_away_ends_the_llm_request(start_server):
    with LlmPeer(TOKENS, hold_after=2) as llm:
        srv = start_server(llm_proxy_url=llm.base)
        with httpx.stream("POST", srv.http + ROUTE, json=ASK, timeout=60) as r:
            assert r.status_code == 200
            next(r.iter_lines())
        # the client closed mid-answer (as the page's AbortController does on barge-in)
        assert llm.aborted.wait(30), "the upstream request was not closed"


def test_off_unless_the_operator_names_an_llm(start_server):
    srv = start_server()
    r = httpx.post(srv.http + ROUTE, json=ASK, timeout=30)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "LLM_PROXY_OFF" and "TTS_LLM_PROXY_URL" in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [(b"not json", 400, "JSON"), (b'{"messages": []}', 422, "messages"), (b'[1, 2]', 422, "messages")],
)
def test_bad_requests_say_what_to_fix(start_server, body, status, words):
    with LlmPeer(TOKENS) as llm:
        srv = start_server(llm_proxy_url=llm.base)
        r = httpx.post(srv.http + ROUTE, content=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == status and words in r.json()["error"]["message"]
        assert llm.requests == []


def test_llm_failures_are_clear_errors(start_server):
    with LlmPeer(TOKENS, key="the-right-key") as llm:
        srv = start_server(llm_proxy_url=llm.base, llm_proxy_key="a-wrong-key")
        r = httpx.post(srv.http + ROUTE, json=ASK, timeout=30)
        assert r.status_code == 502
        error = r.json()["error"]
        assert error["code"] == "LLM_ERROR" and "401" in error["message"] and "bad key" in error["message"]
    gone = LlmPeer(TOKENS)  # a port nobody listens on any more
    gone.sock.close()
    srv = start_server(llm_proxy_url=gone.base)
    r = httpx.post(srv.http + ROUTE, json=ASK, timeout=30)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "LLM_UNREACHABLE" and "cannot reach" in error["message"] and "Traceback" not in r.text
