"""The speak page (`/`) in Chromium against the real server: loading, speaking, cancelling, creating a voice,
and a wrong token."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

SAMPLE_RATE = 24000
SERVER_LOAD_TIMEOUT_MS = 120_000  # the first utterance of a lazy server loads the model


def test_page_loads_without_console_errors(tab):
    tab.open("/")
    tab.wait_ready()
    tab.page.wait_for_function(
        "document.querySelector('#voice').options.length > 0 && makima.voices.length > 0"
    )
    assert tab.page.input_value("#voice") == "default"
    assert "Ready" in tab.status()
    assert tab.console_errors == []
    tab.screenshot("speak-page")


def test_speak_plays_every_sample_through_the_worklet(tab, server):
    tab.open("/")
    tab.wait_ready()
    tab.page.fill("#text", "Hello from the browser test.")
    tab.page.press("#text", "Control+Enter")
    tab.page.wait_for_function("makima.last !== null")
    result = tab.page.evaluate(
        """async () => {
            const r = await makima.last.done;
            const id = makima.last.id;
            return {type: r.type, audioLengthMs: r.message.audioLengthMs, frames: r.message.frames,
                    played: makima.client.playedSamples(id), peak: makima.client.playedPeak(id)};
        }"""
    )
    assert result["type"] == "complete"
    assert 0 < result["frames"] <= server.max_frames
    # every sample the server announced went through the worklet to the output, and it was not silence
    assert result["played"] == round(result["audioLengthMs"] * SAMPLE_RATE / 1000)
    assert result["peak"] > 0
    assert "Done" in tab.status()
    assert "First audio" in tab.page.inner_text("#metrics")
    assert tab.console_errors == []
    tab.screenshot("speak-page-after-speaking")


def test_cancel_stops_playback_and_nothing_plays_after_the_ack(tab, server):
    tab.open("/")
    tab.wait_ready()
    # four sentences: the server synthesises them one after another, so it is still generating at the cancel
    tab.page.fill(
        "#text", "One sentence is here. Another one follows. A third one comes next. And the last one."
    )
    tab.page.click("#speak")
    tab.page.wait_for_function("makima.last && makima.client.playedSamples(makima.last.id) > 0")
    tab.screenshot("speak-page-speaking")
    tab.page.evaluate(
        """() => {
            window.ack = null;
            makima.client.addEventListener("cancelled", (e) => {
                if (e.detail.utteranceId === makima.last.id) window.ack = makima.client.playedSamples(makima.last.id);
            });
        }"""
    )
    tab.page.click("#cancel")
    tab.page.wait_for_function("window.ack !== null")
    result = tab.page.evaluate("makima.last.done.then((r) => ({type: r.type, stopped: r.stopped}))")
    assert result == {"type": "cancelled", "stopped": True}
    played_at_ack = tab.page.evaluate("window.ack")
    assert played_at_ack < 4 * server.max_frames * 1920
    assert "Cancelled" in tab.status()
    assert tab.page.is_disabled("#cancel")

    # the next utterance plays: the worklet plays in order, so anything of the cancelled one still buffered or
    # in flight would have played before it
    cancelled_id = tab.page.evaluate("makima.last.id")
    tab.page.fill("#text", "Next.")
    tab.page.click("#speak")
    tab.page.wait_for_function(
        "id => makima.last.id !== id && makima.client.playedSamples(makima.last.id) > 0", arg=cancelled_id
    )
    assert tab.page.evaluate("id => makima.client.playedSamples(id)", cancelled_id) == played_at_ack
    assert tab.console_errors == []


def test_create_voice_from_file_appears_in_picker(tab, voice_clip):
    tab.open("/")
    tab.wait_ready()
    tab.page.click("#create-voice summary")
    tab.page.set_input_files("#voice-file", str(voice_clip))
    tab.page.fill("#voice-transcript", "This is my test voice speaking clearly.")
    tab.page.fill("#voice-name", "Browser test voice")
    tab.page.fill("#voice-id", "browser-test")
    tab.page.click("#voice-submit")
    tab.page.wait_for_function("document.querySelector('#status').dataset.kind !== 'busy'", timeout=60_000)
    assert "Created" in tab.status(), tab.status()
    assert tab.page.input_value("#voice") == "browser-test"
    labels = tab.page.eval_on_selector_all("#voice option", "opts => opts.map((o) => o.textContent)")
    assert any("Browser test voice" in label for label in labels)
    tab.screenshot("speak-page-voice-created")

    # the new voice speaks
    tab.page.click("#speak")
    tab.page.wait_for_function("makima.last !== null")
    assert tab.page.evaluate("makima.last.done.then((r) => r.type)") == "complete"
    assert tab.console_errors == []


def test_create_voice_from_a_microphone_recording(tab):
    tab.open("/")
    tab.wait_ready()
    tab.page.click("#create-voice summary")
    tab.page.click("#record")
    tab.page.wait_for_function("document.querySelector('#record').textContent.startsWith('Stop')")
    # the fake microphone: 0.3 s of silence, then speech; the page counts the recorded seconds
    tab.page.wait_for_function(
        "parseFloat(document.querySelector('#record-info').textContent.match(/([0-9.]+) s/)?.[1] ?? 0) >= 2.0"
    )
    tab.page.click("#record")
    assert "Recorded" in tab.page.inner_text("#record-info")
    tab.page.fill("#voice-name", "Recorded voice")
    tab.page.click("#voice-submit")
    tab.page.wait_for_function("document.querySelector('#status').dataset.kind !== 'busy'", timeout=60_000)
    assert "Created the voice “Recorded voice”" in tab.status(), tab.status()
    assert tab.console_errors == []


def test_status_follows_what_plays(tab):
    """Speaking shows "Speaking…", then the result; with the model loaded the page never claims it will load
    the model on the first utterance."""
    tab.open("/")
    tab.wait_ready()
    tab.page.wait_for_function("document.querySelector('#status').textContent === 'Ready.'")
    tab.record_status_texts()
    tab.page.click("#speak")
    tab.page.wait_for_function("makima.last && makima.client.playedSamples(makima.last.id) > 0")
    assert tab.status() == "Speaking…"
    tab.page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')")
    texts = tab.page.evaluate("statusTexts")
    assert not any("loads when you first speak" in t for t in texts), texts
    assert tab.console_errors == []


def test_wrong_token_shows_a_clear_message_and_the_right_one_connects(tab, server):
    tab.open("/", token="not-the-token")
    tab.page.wait_for_function("document.querySelector('#status').dataset.kind === 'error'")
    assert "Access denied" in tab.status() and "token" in tab.status()
    tab.screenshot("speak-page-wrong-token")

    assert tab.page.evaluate("document.getElementById('connection').open")  # the page asks for the token
    tab.page.fill("#token", server.token)
    tab.page.click("#token-form button")
    tab.wait_ready()
    tab.page.wait_for_function("document.querySelector('#status').textContent.startsWith('Ready')")


def test_without_a_token_the_page_asks_for_one_once(tab, server):
    """No token: the page says so in words and opens the token field; once entered it is kept in this
    browser and sent on every fetch and on the WebSocket, also on the next visit."""
    tab.page.goto(f"{server.base}/")
    # twice out of seven full-suite runs this first wait ran out at 20 s (never when run alone), the suspect being
    # the audio stack coming up slowly on a loaded machine: the client now reports a refused handshake without
    # waiting for its player (speak-client.js open()); the guard stays long, and reports the page state
    tab.wait_for("document.querySelector('#status').dataset.kind === 'error'", timeout=60_000)
    assert "needs an access token" in tab.status(), tab.status()
    assert tab.page.evaluate("document.getElementById('connection').open")
    tab.screenshot("speak-page-needs-token")

    tab.page.fill("#token", server.token)
    tab.page.click("#token-form button")
    tab.wait_ready()
    tab.page.wait_for_function("window.makima.voices.length > 0")  # GET /api/v1/voices with the token

    tab.page.goto(f"{server.base}/")  # a later visit, no token in the address
    tab.wait_ready()
    tab.page.wait_for_function("window.makima.voices.length > 0")
    assert tab.page.evaluate("localStorage.getItem('makima-tts.token')") == server.token
    tab.page.click("#speak")
    tab.page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')", timeout=60_000)


def test_a_token_in_the_address_is_saved_and_leaves_the_address(tab, server):
    tab.open("/")
    tab.wait_ready()
    assert "token" not in tab.page.url
    assert tab.page.evaluate("localStorage.getItem('makima-tts.token')") == server.token
    tab.page.click("nav a[href='/listen']")
    tab.page.wait_for_function("window.makima?.client !== undefined")
    assert tab.page.evaluate("window.makima.client.options.token") == server.token
    assert tab.console_errors == []


def test_a_fresh_page_while_the_model_is_not_loaded_logs_nothing_and_says_what_happens(lazy_tab):
    """A server that loads its model on the first utterance: the pages open with a clean console (they never
    poll `/ready`, whose 503 while loading the browser would log), the speak page says the model loads on the
    first utterance, then follows it (loading, speaking, done), and a page opened afterwards says "Ready."."""
    tab = lazy_tab
    tab.open("/listen")
    tab.wait_ready()
    tab.page.wait_for_function("makima.phase === 'idle'")
    assert tab.page.evaluate("makima.model.state") == "not_loaded"

    tab.open("/")
    tab.wait_ready()
    tab.page.wait_for_function("document.querySelector('#status').textContent.startsWith('Ready')")
    assert tab.status() == "Ready. The model loads when you first speak."
    tab.record_status_texts()
    tab.page.click("#speak")
    tab.page.wait_for_function(
        "document.querySelector('#status').textContent.startsWith('Done')", timeout=SERVER_LOAD_TIMEOUT_MS
    )
    texts = tab.page.evaluate("statusTexts")
    assert "Speaking…" in texts, texts
    assert not any("loads when you first speak" in t for t in texts), texts
    assert tab.page.evaluate("makima.model.state") == "loaded"

    tab.page.reload()  # a new page (the token is saved in this browser): the model is loaded now
    tab.wait_ready()
    tab.page.wait_for_function("document.querySelector('#status').textContent === 'Ready.'")
    assert tab.console_errors == []
    assert not [url for url in tab.requests if url.split("?")[0].endswith("/ready")]
