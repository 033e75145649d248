"""Streamed text input: an LLM-like token stream into a real server, streamed (one utterance fed token by
token) against the segmenter (sentences, one utterance each), in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/text_stream_bench.py --model DIR [--tokens-per-s 30]
        [--token-chars 4] [--repeat 3] [--text "..."] [--env TTS_X=VALUE ...] [--json-out results.json]

For each mode it starts `makima-tts serve` on a free 127.0.0.1 port (benchmarks/server_bench.py's
`Server`: preloaded model, temporary data dir, TTS_MAX_FRAMES=--frames, 0 = the budget the text gives)
with TTS_TEXT_INPUT=stream, then =segment. One unmeasured whole-text utterance caches the voice prompt.
Then, `--repeat` times: the text is cut into tokens of `--token-chars` characters and sent as `speak`
messages with `continue: true` at `--tokens-per-s` (the last one with `continue: false`), while the audio
is received. Measured: first token sent -> first binary audio ("first audio"), the gaps between audio
messages while the text still trickles in and over the whole utterance, and underruns of a playout clock
that starts with the first frame. The default text has a long first sentence (the segmenter's worst case).
The JSON carries the command, the machine and every raw figure; a markdown table follows. The servers run
the `makima-tts` of this interpreter in a temporary directory: to measure a checkout that is not the
installed package, set PYTHONPATH to its absolute `src` path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from server_bench import (
    BYTES_PER_SAMPLE,
    SAMPLE_RATE,
    PlayoutClock,
    Server,
    loadavg,
    machine,
    open_session,
    wait_ready,
)

TEXT = ("Well, I have been thinking about what you asked me earlier this morning, and the short answer is that "
        "the weather in Paris this weekend will most likely be sunny and warm with a light breeze from the west. "
        "Pack an umbrella anyway.")
MODES = ("stream", "segment")


@dataclass
class Run:
    first_audio_ms: float | None = None  # first token sent -> first audio message
    text_ms: float = 0.0  # first token sent -> last token sent
    gaps_while_text_ms: list[float] = field(default_factory=list)  # audio gaps that ended before the last token
    gaps_ms: list[float] = field(default_factory=list)
    underruns: int = 0
    stall_ms: float = 0.0
    frames: int = 0
    audio_s: float = 0.0
    terminal: str | None = None


def tokens_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def stream_text(ws, tokens: list[str], per_s: float, uid: str) -> float:
    """Send the tokens at `per_s`; -> the time the last one was sent."""
    start = time.perf_counter()
    for i, token in enumerate(tokens):
        await asyncio.sleep(max(0.0, start + i / per_s - time.perf_counter()))
        await ws.send(json.dumps({"type": "speak", "utteranceId": uid, "text": token,
                                  "continue": i < len(tokens) - 1}))
    return time.perf_counter()


async def one_run(ws, args, uid: str) -> Run:
    run, clock, last = Run(), PlayoutClock(), None
    first_sent = time.perf_counter()
    sender = asyncio.ensure_future(stream_text(ws, tokens_of(args.text, args.token_chars), args.tokens_per_s, uid))
    while True:
        message = await asyncio.wait_for(ws.recv(), args.timeout)
        at = time.perf_counter()
        if isinstance(message, bytes):
            if last is None:
                run.first_audio_ms = 1000 * (at - first_sent)
            else:
                gap = 1000 * (at - last)
                run.gaps_ms.append(gap)
                if not sender.done():
                    run.gaps_while_text_ms.append(gap)
            last = at
            run.frames += 1
            seconds = len(message) // BYTES_PER_SAMPLE / SAMPLE_RATE
            run.audio_s += seconds
            clock.frame(at, seconds)
            continue
        data = json.loads(message)
        if data.get("utteranceId") == uid and data.get("type") in ("complete", "cancelled", "error"):
            run.terminal = data["type"] if data["type"] != "error" else f"error:{data.get('code')}"
            break
    run.text_ms = 1000 * (await sender - first_sent)
    run.underruns, run.stall_ms = clock.underruns, 1000 * clock.stall_s
    return run


async def measure(server: Server, args) -> dict:
    ws = await open_session(server.url, compression=False)
    try:
        await ws.send(json.dumps({"type": "speak", "utteranceId": "warm", "text": "Warming up."}))
        while True:  # the warm-up's terminal (its audio is not measured)
            message = await ws.recv()
            data = json.loads(message) if isinstance(message, str) else {}
            if data.get("utteranceId") == "warm" and data["type"] in ("complete", "cancelled", "error"):
                break
        runs = [await one_run(ws, args, f"r{i}") for i in range(args.repeat)]
    finally:
        await ws.close()
    return {"runs": [asdict(r) for r in runs]}


def summary(runs: list[dict]) -> dict:
    def p(values, q):
        return round(float(np.percentile(values, q)), 1) if values else None

    first = [r["first_audio_ms"] for r in runs if r["first_audio_ms"] is not None]
    while_text = [g for r in runs for g in r["gaps_while_text_ms"]]
    gaps = [g for r in runs for g in r["gaps_ms"]]
    return {"first_audio_ms_p50": p(first, 50), "first_audio_ms_max": p(first, 100),
            "gap_while_text_ms_p50": p(while_text, 50), "gap_while_text_ms_max": p(while_text, 100),
            "gap_ms_max": p(gaps, 100), "underruns": sum(r["underruns"] for r in runs),
            "stall_ms": round(sum(r["stall_ms"] for r in runs), 1), "frames": sum(r["frames"] for r in runs),
            "audio_s": round(sum(r["audio_s"] for r in runs), 2), "text_ms": p([r["text_ms"] for r in runs], 50),
            "terminals": sorted({r["terminal"] for r in runs})}


def table(results: dict) -> str:
    rows = ["| mode | first audio p50 (ms) | first audio max | gap while text p50 / max (ms) | max gap (ms) "
            "| underruns | stall (ms) | audio (s) | text sent in (ms) |", "|---|---|---|---|---|---|---|---|---|"]
    for mode, result in results.items():
        s = result["summary"]
        rows.append(f"| {mode} | {s['first_audio_ms_p50']} | {s['first_audio_ms_max']} | "
                    f"{s['gap_while_text_ms_p50']} / {s['gap_while_text_ms_max']} | {s['gap_ms_max']} | "
                    f"{s['underruns']} | {s['stall_ms']} | {s['audio_s']} | {s['text_ms']} |")
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint for the spawned servers (directory or Hub id)")
    ap.add_argument("--tokens-per-s", type=float, default=30.0)
    ap.add_argument("--token-chars", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="streamed utterances per mode")
    ap.add_argument("--frames", type=int, default=0, help="TTS_MAX_FRAMES of the servers (0: from the text)")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--modes", default=",".join(MODES), help="stream, segment or both (comma-separated)")
    ap.add_argument("--env", action="append", default=[], metavar="TTS_X=VALUE", help="server setting (repeatable)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for any one message")
    ap.add_argument("--load-timeout", type=float, default=300.0)
    ap.add_argument("--json-out", default=None)
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    report = {"command": " ".join(sys.argv), "machine": machine(), "tokens_per_s": args.tokens_per_s,
              "token_chars": args.token_chars, "text": args.text, "results": {}}
    base_env = list(args.env)
    for mode in args.modes.split(","):
        args.env = [*base_env, f"TTS_TEXT_INPUT={mode}"]
        with Server(args, admission=None) as server:  # the engine's default admission
            wait_ready(f"http://127.0.0.1:{server.port}", server.proc, args.load_timeout)
            result = asyncio.run(measure(server, args))
        result["summary"] = summary(result["runs"])
        report["results"][mode] = result
    report["machine"]["loadavg_end"] = loadavg()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    print(json.dumps({m: r["summary"] for m, r in report["results"].items()}, indent=2))
    print(f"\ncommand: {report['command']}\nmachine: {report['machine']}\n")
    print(table(report["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
