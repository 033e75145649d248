"""The listen page with a real LLM and the browser's speech recognition, in Chromium against the real
server: the reply streams from an OpenAI-compatible endpoint (a stand-in started here, as a user's Ollama
or vLLM would run) into speech that starts before the reply is complete; barge-in from the fake
microphone cuts both the speech and the LLM request, and the LLM's next request holds the interrupted
reply cut to the text the user heard; the browser's recognizer (a stand-in injected into
the page, since Chromium's own would call Google's servers) drives turns; without one it is not offered."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_peer import LlmPeer  # noqa: E402

pytestmark = pytest.mark.browser
WAIT_S = 30
REPLY = "Sure, I can help with that. Here is a longer answer that keeps going for a while, so that the speech starts well before the " \
        "language model has finished writing it, which is the whole point of streaming text into speech."
TOKENS = [w + " " for w in REPLY.split()]
HOLD_AFTER = 8  # the stand-in sends this many tokens, then waits for release()

FAKE_RECOGNITION = """
window.SpeechRecognition = class {
  constructor() { window.fakeRecognition = this; }
  start() { window.recognitionStarts = (window.recognitionStarts || 0) + 1; }
  abort() { this.onend?.(); }
  stop() { this.onend?.(); }
  say(text) {
    const result = Object.assign([{ transcript: text }], { isFinal: true });
    this.onresult?.({ resultIndex: 0, results: [result] });
  }
};
"""
NO_RECOGNITION = "delete window.SpeechRecognition; delete window.webkitSpeechRecognition;"


def configure(tab, **fields) -> None:
    """Fill and save the Assistant form (route, url, model, key → #llm-…; stt → #stt)."""
    tab.page.click("#assistant summary")
    if "route" in fields:
        tab.page.select_option("#llm-route", fields.pop("route"))
    if "stt" in fields:
        tab.page.select_option("#stt", fields.pop("stt"))
    for name, value in fields.items():
        tab.page.fill(f"#llm-{name}", value)
    tab.page.click("#assistant-form button[type=submit]")


def test_a_real_llm_streams_into_speech_and_barge_in_cuts_both(tab):
    """... and the interrupted reply goes back to the LLM cut to the text the user heard."""
    with LlmPeer(TOKENS, hold_after=HOLD_AFTER, key="sk-local") as llm:
        tab.open("/listen")
        tab.wait_ready()
        configure(tab, route="direct", url=llm.base, model="test-model", key="sk-local")
        tab.page.evaluate("makima.client.addEventListener('interrupted', (e) => (window.interrupted = e.detail))")
        tab.page.fill("#typed-text", "What can you do?")
        tab.page.click("#typed button")
        assert llm.held.wait(WAIT_S), "the page did not ask the LLM"
        # the reply is still being written (the stand-in holds its rest) and its start is already playing
        tab.wait_for("makima.client.playing !== null && makima.client.playedSamples() > 0")
        tab.page.click("#mic")  # the fake microphone "talks" after 0.3 s, long before the reply's ~3 s end
        assert not llm.aborted.is_set()
        said = "".join(TOKENS[:HOLD_AFTER])
        assert tab.page.inner_text("#transcript li.assistant").strip() == said.strip()

        ask = llm.requests[0]
        assert ask["model"] == "test-model" and ask["stream"] is True
        assert [m["role"] for m in ask["messages"]] == ["system", "user"]
        assert ask["messages"][-1] == {"role": "user", "content": "What can you do?"}
        assert llm.headers[0]["authorization"] == "Bearer sk-local"  # the key goes to the LLM ...
        assert tab.page.evaluate("localStorage.getItem('makima-tts.assistant')").count("sk-local") == 1

        # barge-in from the fake microphone: speech stops, and the LLM request is aborted
        tab.wait_for("makima.bargeIns.length > 0")
        assert llm.aborted.wait(WAIT_S), "the LLM request went on after the barge-in"
        assert tab.page.locator("#transcript li.assistant.interrupted").count() == 1
        # the user's (simulated) turn goes to the LLM with the interrupted reply in the history
        tab.wait_for("makima.turns >= 2")
        assert llm.wait_requests(2), "the next turn did not reach the LLM"
        history = llm.requests[1]["messages"]
        assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]
        # the assistant turn holds only what was heard: a part of what was said, as the speech client reported
        heard = tab.page.evaluate("makima.bargeIns[0].heardText")
        assert history[-2]["content"] == heard == tab.page.evaluate("window.interrupted.heardText")
        assert heard and said.startswith(heard) and len(heard) < len(said), (heard, said)
        # the transcript keeps the whole reply, the unheard rest struck through
        unheard = tab.page.locator("#transcript li.assistant.interrupted .unheard").first.text_content()
        assert unheard == said[len(heard):]
        assert tab.console_errors == []
    # ... and never to the speech server
    assert all("sk-local" not in url for url in tab.requests)


def test_an_unreachable_llm_is_said_in_words(tab):
    gone = LlmPeer(TOKENS)
    gone.sock.close()
    tab.open("/listen")
    tab.wait_ready()
    configure(tab, route="direct", url=gone.base, model="m")
    tab.page.fill("#typed-text", "Hello?")
    tab.page.click("#typed button")
    tab.wait_for("document.querySelector('#status').dataset.kind === 'error'")
    assert "Cannot reach the LLM" in tab.status()


def test_the_browsers_speech_recognition_drives_the_turns(tab):
    tab.page.add_init_script(FAKE_RECOGNITION)
    tab.open("/listen")
    tab.wait_ready()
    configure(tab, stt="browser")
    tab.page.uncheck("#barge-in")  # the fake microphone's own "speech" must not interrupt this test's reply
    tab.page.click("#mic")
    tab.wait_for("window.recognitionStarts >= 1")
    tab.page.evaluate("fakeRecognition.say('What time is it?')")
    tab.wait_for("makima.client.playing !== null && makima.client.playedSamples() > 0")
    users = tab.page.locator("#transcript li.user")
    assert users.count() == 1 and users.inner_text() == "What time is it?"
    tab.page.click("#mic")  # off: the recognizer stops with the microphone
    tab.wait_for("makima.client.state === 'ready'", timeout=60_000)
    assert users.count() == 1  # the transcribe hook (simulated) was not used
    assert tab.console_errors == []


def test_without_speech_recognition_it_is_not_offered(tab):
    tab.page.add_init_script(NO_RECOGNITION)
    tab.open("/listen")
    tab.wait_ready()
    assert tab.page.evaluate("typeof webkitSpeechRecognition") == "undefined"
    assert tab.page.evaluate("[...document.querySelectorAll('#stt option')].map((o) => o.value)") == ["hook"]
