"""A fresh engine's first bursts: N utterances submitted together, one burst after another.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/burst_bench.py --model DIR [--streams 8] [--bursts 3]
        [--warmup engine,alone] [--json-out results.json]

For each `--warmup` way, in a process of its own (oneDNN keeps the kernels it built for the process, so a
second engine in one process would find them made), a fresh engine (bf16 on CPU, `--streams` slots) is
warmed up, then gets
`--bursts` bursts of `--streams` short replies (the built-in default voice, 4 frames each, end token
ignored), each once the previous one has finished. `engine`: `Engine.warmup()` (one utterance alone,
then one in every slot at once); `alone`: only one warm-up utterance alone (what the engine did before).
Measured per burst: submitted -> first audio (p50 over the burst) and the codec's first decode of it;
per way: the warm-up's wall time. Bursts after the first show what the first one paid extra for.
The JSON carries the command, the machine and every figure; a markdown table follows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import soundfile as sf
import torch
from engine_bench import machine, report

from makima_tts.engine.engine import Engine
from makima_tts.engine.types import Finished, SpeechRequest
from makima_tts.engine.warmup import warmup_request
from makima_tts.model.tts import TTSModel

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["Sure, I can help you with that.", "The weather in Paris is sunny today.",
         "Let me check that for you right now.", "Your order has been shipped and arrives tomorrow.",
         "I'm sorry, I didn't quite catch that.", "Here is what I found.",
         "That sounds like a great plan to me.", "Please hold on for just a moment."]
TIMEOUT = 300  # seconds for one burst (a hang guard)


def burst(engine: Engine, voice, streams: int, seed: int) -> dict:
    done = [threading.Event() for _ in range(streams)]
    engine.timer.enable()
    jobs = [engine.submit(SpeechRequest(TEXTS[i % len(TEXTS)], language="english", voice=voice, seed=seed + i,
                                        max_frames=4, stop_on_eos=False),
                          lambda event, d=done[i]: isinstance(event, Finished) and d.set())
            for i in range(streams)]
    for d in done:
        if not d.wait(TIMEOUT):
            raise SystemExit(f"a burst did not finish within {TIMEOUT} s")
    codec = engine.timer.samples.get("codec", [float("nan")])
    engine.timer.enable(False)
    first = [1000 * (j.first_audio_at - j.submitted_at) for j in jobs]
    return {"first_audio_ms_p50": statistics.median(first), "first_audio_ms": first, "first_decode_ms": 1000 * codec[0]}


def sitting(tts: TTSModel, voice, way: str, streams: int, bursts: int) -> dict:
    engine = Engine(tts, max_streams=streams)
    try:
        started = time.perf_counter()
        if way == "engine":
            engine.warmup()
        else:
            for _ in engine.generate(warmup_request(tts.config, 2)):
                pass
        warmup_s = time.perf_counter() - started
        return {"warmup": way, "warmup_s": warmup_s, "bursts": [burst(engine, voice, streams, 100 * k) for k in range(bursts)]}
    finally:
        engine.close()


def table(results: list[dict]) -> str:
    rows = ["| warm-up | warm-up s | burst | first audio p50 (ms) | codec's first decode (ms) |", "|---|---|---|---|---|"]
    for r in results:
        for k, b in enumerate(r["bursts"], 1):
            rows.append(f"| {r['warmup']} | {r['warmup_s']:.1f} | {k} | {b['first_audio_ms_p50']:.0f} | "
                        f"{b['first_decode_ms']:.0f} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    ap.add_argument("--streams", type=int, default=8, help="slots, and utterances per burst")
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--warmup", default="engine,alone", help="warm-up ways, comma-separated: engine, alone")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one way, in this process
    args = ap.parse_args()
    ways = [w.strip() for w in args.warmup.split(",") if w.strip()]
    if not set(ways) <= {"engine", "alone"}:
        ap.error("--warmup takes engine and/or alone")
    if args.child:
        torch.set_grad_enabled(False)
        tts = TTSModel.load(args.model, dtype="bfloat16", device="cpu")
        wav, sr = sf.read(ROOT / "voices" / "default" / "reference.wav", dtype="float32")
        print(json.dumps(sitting(tts, tts.create_voice_prompt(wav, sr), ways[0], args.streams, args.bursts)))
        return 0
    info = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), "results": []}
    for way in ways:
        child = subprocess.run([sys.executable, __file__, "--model", args.model, "--streams", str(args.streams),
                                "--bursts", str(args.bursts), "--warmup", way, "--child"],
                               capture_output=True, text=True, timeout=TIMEOUT * (args.bursts + 1), check=True)
        info["results"].append(json.loads(child.stdout.strip().splitlines()[-1]))
    report(info, table(info["results"]), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
