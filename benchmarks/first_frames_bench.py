"""A newcomer's first frame beside running streams: decoded apart from them or together with them.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/first_frames_bench.py --model DIR [--running 2,4,6]
        [--rounds 10] [--json-out results.json]

One engine (bf16 on CPU, `TTS_FIRST_FRAMES`' two ways: engine/codec_stage.py) keeps `--running` x-vector
streams generating (the built-in default voice, budgets long enough to outlast the run) and admits one
newcomer at a time: a short reply of 4 frames, the next one once the previous has finished. The codec's
policy alternates newcomer by newcomer, apart then together, so both are measured in the same sitting,
interleaved, on the same machine state (sittings on a shared 2-core VM differ by up to 1.5x). Measured
per newcomer: prefilled -> first audio (`Job.prefilled_at` -> `Job.first_audio_at`: its first frame step,
the codec's decode and the hand-over; the phase that the policy changes) and submitted -> first audio.
The JSON carries the command, the machine and every figure; a markdown table follows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path

import soundfile as sf
import torch
from engine_bench import machine, report

from makima_tts.engine.codec_stage import FirstFrames
from makima_tts.engine.engine import Engine
from makima_tts.engine.types import AudioFrame, Finished, SpeechRequest
from makima_tts.model.tts import TTSModel

ROOT = Path(__file__).resolve().parents[1]
RUNNING_TEXT = "The quick brown fox jumps over the lazy dog, then it runs far away into the quiet forest."
NEWCOMER_TEXT = "Sure, I can help you with that."
TIMEOUT = 300  # seconds for one newcomer (a hang guard)


def newcomer(engine: Engine, voice, seed: int) -> tuple[float, float]:
    """One newcomer, to its end -> (prefilled -> first audio, submitted -> first audio) in ms."""
    finished = threading.Event()
    request = SpeechRequest(NEWCOMER_TEXT, language="english", voice=voice, seed=seed, max_frames=4,
                            stop_on_eos=False)
    job = engine.submit(request, lambda event: isinstance(event, Finished) and finished.set())
    if not finished.wait(TIMEOUT):
        raise SystemExit(f"newcomer {seed} did not finish within {TIMEOUT} s")
    return 1000 * (job.first_audio_at - job.prefilled_at), 1000 * (job.first_audio_at - job.submitted_at)


def sitting(engine: Engine, voice, running: int, rounds: int) -> dict:
    started = threading.Event()
    streams = [engine.submit(SpeechRequest(RUNNING_TEXT, language="english", voice=voice, seed=i, max_frames=1500,
                                           stop_on_eos=False),
                             lambda event: isinstance(event, AudioFrame) and event.index == 2 and started.set())
               for i in range(running)]
    started.wait(TIMEOUT)  # the running streams are under way
    figures: dict[str, dict[str, list[float]]] = {m.value: {"prefilled_ms": [], "submitted_ms": []} for m in FirstFrames}
    for k in range(2 * rounds):
        mode = (FirstFrames.APART, FirstFrames.TOGETHER)[k % 2]
        engine._codec.first_frames = mode  # read by the codec thread per frame
        prefilled, submitted = newcomer(engine, voice, seed=1000 + k)
        figures[mode.value]["prefilled_ms"].append(prefilled)
        figures[mode.value]["submitted_ms"].append(submitted)
    for stream in streams:
        stream.cancel()
    for stream in streams:
        stream.done.wait(TIMEOUT)
    return {"running": running, "rounds": rounds, "figures": figures}


def table(results: list[dict]) -> str:
    rows = ["| running streams | first frames | prefilled -> first audio p50 / mean (ms) "
            "| submitted -> first audio p50 / mean (ms) |", "|---|---|---|---|"]
    for r in results:
        for mode, f in r["figures"].items():
            rows.append(f"| {r['running']} | {mode} | {statistics.median(f['prefilled_ms']):.0f} / "
                        f"{statistics.mean(f['prefilled_ms']):.0f} | {statistics.median(f['submitted_ms']):.0f} / "
                        f"{statistics.mean(f['submitted_ms']):.0f} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    ap.add_argument("--running", default="2,4,6", help="running streams per sitting, comma-separated")
    ap.add_argument("--rounds", type=int, default=10, help="newcomers per policy per sitting")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    counts = [int(c) for c in args.running.split(",") if c.strip()]
    torch.set_grad_enabled(False)
    tts = TTSModel.load(args.model, dtype="bfloat16", device="cpu")
    wav, sr = sf.read(ROOT / "voices" / "default" / "reference.wav", dtype="float32")
    voice = tts.create_voice_prompt(wav, sr)
    engine = Engine(tts, max_streams=max(counts) + 1)
    try:
        engine.warmup()
        info = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
                "results": [sitting(engine, voice, n, args.rounds) for n in counts]}
    finally:
        engine.close()
    report(info, table(info["results"]), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
