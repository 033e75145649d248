"""The listen page (`/listen`) in Chromium against the real server: a streamed reply, barge-in from the
(fake) microphone, and the loop going on with the next turn."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_listen_page_loads_without_console_errors(tab):
    tab.open("/listen")
    tab.wait_ready()
    tab.page.wait_for_function("makima.phase === 'idle'")
    assert "Ready" in tab.status()
    assert tab.page.evaluate("makima.client.streamsText") is True  # replies stream into one utterance
    assert tab.console_errors == []
    tab.screenshot("listen-page")


def test_barge_in_from_the_microphone_cancels_playback(tab):
    tab.open("/listen")
    tab.wait_ready()
    # a typed turn: the simulated LLM streams its reply through append()/end() while it is spoken
    tab.page.fill("#typed-text", "Tell me something long.")
    tab.page.click("#typed button")
    tab.page.wait_for_function("makima.client.playing !== null && makima.client.playedSamples() > 0")
    reply = tab.page.evaluate(
        """() => {
            const id = makima.client.playing;
            window.reply = {id, ack: null};
            makima.client.addEventListener("cancelled", (e) => {
                if (e.detail.utteranceId === id) window.reply.ack = makima.client.playedSamples(id);
            });
            return id;
        }"""
    )
    # the fake microphone starts with 0.3 s of silence, then the user "talks" over the assistant
    tab.page.click("#mic")
    tab.page.wait_for_function("makima.bargeIns.length > 0", timeout=15_000)
    assert tab.page.inner_text("#mic") == "Stop microphone"
    mic_line = tab.page.inner_text("#metrics")
    assert mic_line.startswith("Microphone on — hearing you."), mic_line
    tab.page.wait_for_function("window.reply.ack !== null")
    played_at_ack = tab.page.evaluate("window.reply.ack")
    assert tab.page.evaluate("makima.bargeIns[0].playedMs") > 0
    assert tab.page.locator("#transcript li.assistant.interrupted").count() == 1
    tab.screenshot("listen-page-barge-in")

    # the user's turn ends after the hangover: (simulated) speech-to-text, then a new streamed reply
    tab.page.wait_for_function("makima.turns >= 2", timeout=15_000)
    tab.page.wait_for_function("makima.client.playing !== null && makima.client.playing !== window.reply.id")
    # the worklet plays in order: anything of the interrupted reply still buffered or in flight played by now
    assert tab.page.evaluate(f"makima.client.playedSamples('{reply}')") == played_at_ack
    assert tab.page.locator("#transcript li.user").count() == 2
    assert tab.console_errors == []
