"""speak-client.js in Chromium against the real server: what each utterance resolves with as `heardText`
(the server's `cancelled.heardText`, or `complete.textMarks` cut at what played), and the `playedMs` a
cancel carries (that of the utterance it reaches). The client is driven on the speak page (`/`), which
exposes it as `makima.client`; the expected texts from marks are computed here, not by the page."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

# The tiny checkpoint's tokens are about one character each and a frame reads one more: TEXT takes ~3 s
# (under the test server's 4 s cap), so a stop after MIN_PLAYED_S cuts it well before its end.
TEXT = "Sure, the weather in Paris is sunny."
MIN_PLAYED_S = 0.4

# Records every JSON message the client sends and every `complete`; `until(cond)` waits for page state.
PREPARE = """() => {
    const c = makima.client;
    window.sent = [];
    const send = c.ws.send.bind(c.ws);
    c.ws.send = (m) => { if (typeof m === "string") sent.push(JSON.parse(m)); send(m); };
    window.completes = {};
    c.addEventListener("complete", (e) => (completes[e.detail.utteranceId] = e.detail));
    window.until = (cond) => new Promise((resolve) => {
        const check = () => (cond() ? resolve() : setTimeout(check, 5));
        check();
    });
}"""


def open_client(tab) -> None:
    tab.open("/")
    tab.wait_ready()
    tab.page.evaluate(PREPARE)


def heard_by_marks(marks: list, played_samples: int, sample_rate: int) -> str:
    """The rule of server/text_marks.py: the texts of the marks before the played position, joined."""
    return "".join(text for ms, text in marks if ms * sample_rate / 1000 < played_samples)


def test_cancelled_mid_generation_resolves_with_the_servers_heard_text(tab):
    open_client(tab)
    result = tab.page.evaluate(
        """async ([text, minPlayed]) => {
            const c = makima.client;
            const u = c.append(text);  // left open: the server waits for more text, so it is not finished
            await until(() => c.playedSamples(u.id) >= minPlayed * c.sampleRate);
            const cancelMs = await c.cancel(u.id);
            const r = await u.done;
            return {id: u.id, type: r.type, stopped: r.stopped, heardText: r.heardText, message: r.message,
                    cancelMs, played: c.playedSamples(u.id), rate: c.sampleRate,
                    cancels: sent.filter((m) => m.type === "cancel")};
        }""",
        [TEXT, MIN_PLAYED_S],
    )
    assert result["type"] == "cancelled" and result["stopped"] is True
    assert result["heardText"] == result["message"]["heardText"]
    heard = result["heardText"]
    assert heard and TEXT.startswith(heard) and len(heard) < len(TEXT), heard
    # the cancel named it and carried what played of it
    [cancel] = result["cancels"]
    assert cancel["utteranceId"] == result["id"]
    assert cancel["playedMs"] == pytest.approx(result["played"] * 1000 / result["rate"], abs=0.001)
    assert result["cancelMs"] == round(cancel["playedMs"])


def test_interrupted_after_the_server_completed_resolves_with_the_marks_at_the_played_ms(tab):
    """A whole text the server completes while it plays, then an open utterance the server is on: the
    interrupt's cancel reaches the second one (nothing of it played: playedMs 0), the first one resolves
    with its marks cut at what of it played."""
    open_client(tab)
    result = tab.page.evaluate(
        """async ([text, minPlayed]) => {
            const c = makima.client;
            const first = c.speak(text);
            const second = c.append("And this is still being written");
            await until(() => completes[first.id] && c.playing === first.id
                              && c.playedSamples(first.id) >= minPlayed * c.sampleRate);
            const interruption = await c.interrupt();
            const [a, b] = [await first.done, await second.done];
            return {firstId: first.id, interruption, a: {...a}, b: {...b}, played: c.playedSamples(first.id),
                    rate: c.sampleRate, marks: completes[first.id].textMarks,
                    audioMs: completes[first.id].audioLengthMs, cancels: sent.filter((m) => m.type === "cancel")};
        }""",
        [TEXT, MIN_PLAYED_S],
    )
    a, b = result["a"], result["b"]
    assert a["type"] == "complete" and a["stopped"] is True
    assert result["played"] < result["audioMs"] * result["rate"] / 1000  # cut in the middle
    assert "".join(text for _, text in result["marks"]) == TEXT  # played to its end it would be all of it
    expected = heard_by_marks(result["marks"], result["played"], result["rate"])
    assert a["heardText"] == expected
    assert expected and TEXT.startswith(expected) and len(expected) < len(TEXT), expected
    assert result["interruption"] == {"utteranceId": result["firstId"], "playedMs": a["playedMs"], "heardText": expected}
    # one cancel-all, carrying the playedMs of the utterance it reached (the second: not played yet)
    assert result["cancels"] == [{"type": "cancel", "playedMs": 0}]
    assert b["type"] == "cancelled" and b["heardText"] == "" and b["message"]["heardText"] == ""


def test_played_to_its_end_resolves_with_the_whole_text(tab):
    open_client(tab)
    result = tab.page.evaluate(
        """async () => {
            const r = await makima.client.speak("Hello from the browser test.").done;
            return {type: r.type, stopped: r.stopped, heardText: r.heardText, marks: r.message.textMarks};
        }"""
    )
    assert result["type"] == "complete" and result["stopped"] is False
    assert result["heardText"] == "Hello from the browser test."
    assert len(result["marks"]) > 1  # read token by token, so a stop in the middle would cut it
