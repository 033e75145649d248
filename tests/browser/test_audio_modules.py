"""The page's audio building blocks in Chromium, without synthesis: the player worklet joins 80 ms frames
without gaps or clicks, and the voice-activity detector starts, holds over pauses and ends."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

# Frames of one continuous 200 Hz sine arrive on an 80 ms schedule, like a real-time server; the player's
# output is recorded by the microphone worklet and must be the same sine, sample after sample.
PLAYER_SCRIPT = """async () => {
    const rate = 24000, frame = 1920, frames = 12, hz = 200;
    const ctx = new AudioContext({sampleRate: rate});
    await ctx.audioWorklet.addModule("/static/player-worklet.js");
    await ctx.audioWorklet.addModule("/static/mic-worklet.js");
    await ctx.resume();
    const player = new AudioWorkletNode(ctx, "makima-pcm-player",
        {numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1], processorOptions: {jitterMs: 100}});
    const recorder = new AudioWorkletNode(ctx, "makima-mic", {numberOfInputs: 1, numberOfOutputs: 0});
    player.connect(recorder);
    const out = [];
    recorder.port.onmessage = (e) => { if (e.data.type === "samples") out.push(e.data.samples); };
    recorder.port.postMessage({type: "capture", on: true});
    let underruns = 0, done = null;
    player.port.onmessage = (e) => {
        if (e.data.type === "underrun") underruns += 1;
        if (e.data.type === "done") done = e.data;
    };
    const t0 = performance.now();
    for (let k = 0; k < frames; k++) {
        const s = new Float32Array(frame);
        for (let i = 0; i < frame; i++) s[i] = 0.5 * Math.sin(2 * Math.PI * hz * (k * frame + i) / rate);
        player.port.postMessage({type: "push", id: "u", samples: s});
        await new Promise((r) => setTimeout(r, Math.max(0, t0 + (k + 1) * 80 - performance.now())));
    }
    player.port.postMessage({type: "end", id: "u"});
    while (done === null) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    const all = new Float32Array(out.reduce((n, c) => n + c.length, 0));
    out.reduce((at, c) => (all.set(c, at), at + c.length), 0);
    let first = -1, last = -1, maxStep = 0;
    for (let i = 0; i < all.length; i++) if (Math.abs(all[i]) > 1e-4) { if (first < 0) first = i; last = i; }
    for (let i = first; i < last; i++) maxStep = Math.max(maxStep, Math.abs(all[i + 1] - all[i]));
    await ctx.close();
    return {underruns, played: done.played, span: last - first + 1, maxStep, expected: frames * frame,
            sineStep: 0.5 * 2 * Math.PI * hz / rate};
}"""


def test_player_joins_80ms_frames_without_gaps_or_clicks(tab):
    tab.open("/")
    r = tab.page.evaluate(PLAYER_SCRIPT)
    assert r["underruns"] == 0
    assert r["played"] == r["expected"]
    assert abs(r["span"] - r["expected"]) <= 2  # the sine starts at 0; no silent holes stretch it
    assert r["maxStep"] <= r["sineStep"] * 1.01  # a gap or a jump would step far more than the sine does


VAD_SCRIPT = """async () => {
    const { VoiceActivityDetector } = await import("/static/vad.js");
    const vad = new VoiceActivityDetector({attackMs: 80, hangoverMs: 600});
    const events = [];
    const feed = (db, n) => { for (let i = 0; i < n; i++) { const e = vad.update(db); if (e) events.push([e, frameNo]); frameNo++; } };
    let frameNo = 0;
    feed(-75, 100);   // 1 s of room noise: the floor settles
    feed(-68, 50);    // slightly louder noise is not speech
    feed(-20, 30);    // speech
    feed(-75, 30);    // a 300 ms pause inside the turn
    feed(-22, 30);    // more speech
    feed(-75, 100);   // silence: the turn ends after the hangover
    return events;
}"""


def test_vad_starts_holds_over_pauses_and_ends_after_hangover(tab):
    tab.open("/listen")
    events = tab.page.evaluate(VAD_SCRIPT)
    assert [e for e, _ in events] == ["start", "end"]
    start, end = (frame for _, frame in events)
    assert 150 <= start < 160  # within the attack time of the first loud frame
    assert end == 240 + 60 - 1  # 600 ms after the last loud frame
