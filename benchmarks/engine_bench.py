"""Engine benchmark: per-frame time split (talker / code predictor / codec), time to first audio,
real-time factor, throughput and peak memory, for 1..N concurrent streams; optionally the official
`qwen-tts` package on the same checkpoint in the same run, with the ratios.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/engine_bench.py --model DIR [--build-full]
        [--dtypes float32,bfloat16] [--streams 1,4,8] [--frames 25] [--threads 2]
        [--official /path/to/official-venv/bin/python] [--json-out results.json]

`--build-full` first writes a random checkpoint with the full 0.6B-Base shapes to DIR (official layout)
if DIR does not exist. Random weights cost the same FLOPs and bytes as the real ones. Every figure is
wall-clock on this machine; the JSON carries the command, the machine and the raw numbers.

Columns: talker / code predictor / codec are the mean time of each phase per step (the codec runs on
its own thread, overlapped with the next step's generation); "step wall" is the steady-state time
between two frames of a stream; ms/frame = step wall / streams. The official package has no
streaming: its per-frame figure is its talker + code-predictor step plus its whole-utterance codec
decode divided by the frames, and its time to first audio is the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "parity" / "official_runner.py"
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3]}


def report(info: dict, table_text: str, json_out: str | None) -> None:
    """The end of a run: the load average now into `info`, then the JSON, the command, the machine and the
    table on stdout, and the JSON into `json_out` when given."""
    info["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(info, indent=1))
    print(f"\n{info['command']}\n{info['machine']}\n\n{table_text}")
    if json_out:
        Path(json_out).write_text(json.dumps(info, indent=1))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def reference_clip(seconds: float = 3.0, sr: int = 24000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 330 * t)
    return (wav + 0.05 * np.random.default_rng(0).standard_normal(t.shape)).astype(np.float32)


def run_streams(engine, voice, streams: int, frames: int) -> dict:
    """`streams` utterances at once, each read through `Engine.generate` on its own thread; a frame's time
    is when its reader receives it."""
    from makima_tts.engine.types import AudioFrame, SpeechRequest

    first, last, count = {}, {}, [0] * streams

    def read(i: int) -> None:
        request = SpeechRequest(TEXT, language="english", voice=voice, seed=i, max_frames=frames, stop_on_eos=False)
        for ev in engine.generate(request):
            if isinstance(ev, AudioFrame):
                at = time.perf_counter() - start
                first.setdefault(i, at)
                last[i] = at
                count[i] += 1

    readers = [threading.Thread(target=read, args=(i,)) for i in range(streams)]
    engine.timer.enable()
    start = time.perf_counter()
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    wall = time.perf_counter() - start
    phases = {k: list(v) for k, v in engine.timer.samples.items()}
    engine.timer.enable(False)
    steps = len(phases.get("codec", [])) or 1
    per_step = {k: 1000 * sum(v) / steps for k, v in phases.items() if k != "prefill"}
    audio_s = sum(count) * 0.08
    # steady state: time between a stream's first and last frame over the frames in between (the codec
    # overlaps generation, so phase times do not add up to the step time)
    steady = [1000 * (last[i] - first[i]) / (count[i] - 1) for i in sorted(last) if count[i] > 1]
    return {
        "streams": streams, "frames_per_stream": count, "wall_s": wall,
        "phase_ms": per_step, "step_wall_ms": statistics.median(steady),
        "step_ms_median": {k: 1000 * statistics.median(v) for k, v in phases.items() if k != "prefill"},
        "prefill_ms": [1000 * x for x in phases.get("prefill", [])],
        "ttfa_ms": [1000 * first[i] for i in sorted(first)],
        "rtf": [last[i] / (count[i] * 0.08) for i in sorted(last)],  # submit -> last frame, over audio length
        "audio_s_per_wall_s": audio_s / wall, "all_streams_progressed": all(c == frames for c in count),
        # with every stream admitted: streams x 80 ms of audio per step
        "steady_audio_s_per_wall_s": streams * 80 / statistics.median(steady),
    }


def bench_ours(model: str, dtype: str, streams_list: list[int], frames: int, device: str, mode: str) -> dict:
    """`mode`: "auto" (CUDA graphs on cuda, eager frames elsewhere) or "eager"."""
    from makima_tts.engine.engine import Engine
    from makima_tts.model.tts import TTSModel

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    tts = TTSModel.load(model, dtype=dtype, device=device)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    voice = tts.create_voice_prompt(reference_clip(), 24000)
    voice_s = time.perf_counter() - t0
    engine = Engine(tts, max_streams=max(streams_list), static_frames=False if mode == "eager" else None)
    t0 = time.perf_counter()
    engine.warmup()
    warmup_s = time.perf_counter() - t0
    frames_kind = "graphs" if engine.uses_cuda_graphs else "eager"
    runs = [run_streams(engine, voice, s, frames) for s in streams_list]
    engine.close()
    return {"engine": "makima", "frames": frames_kind, "dtype": dtype, "load_s": load_s, "voice_prompt_s": voice_s,
            "warmup_s": warmup_s, "runs": runs, "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": peak_gpu_mb()}


def bench_official(python: str, model: str, dtype: str, frames: int, threads: int, ref_wav: Path,
                   device: str) -> dict:
    cmd = [python, str(RUNNER), "--model", model, "--text", TEXT, "--ref-audio", str(ref_wav), "--language",
           "English", "--seed", "0", "--max-new-tokens", str(frames + 1), "--no-eos", "--dtype", dtype,
           "--threads", str(threads), "--device", device]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"official run failed:\n{done.stderr[-3000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    frame_ms = 1000 * statistics.median(info["frame_s"])
    codec_ms = 1000 * info["decode_s"] / info["frames"]
    audio_s = info["frames"] * 0.08
    return {"engine": "official", "dtype": dtype, "frame_ms_median": frame_ms, "codec_ms_per_frame": codec_ms,
            "total_ms_per_frame": frame_ms + codec_ms, "prefill_ms": 1000 * info["prefill_s"],
            "ttfa_ms": 1000 * info["total_s"], "rtf": info["total_s"] / audio_s,
            "audio_s_per_wall_s": audio_s / info["total_s"], "peak_rss_mb": info["peak_rss_mb"],
            "peak_gpu_mb": info.get("peak_gpu_mb"), "raw": info}


def table(results: list[dict]) -> str:
    gpu = any(r.get("peak_gpu_mb") is not None for r in results)
    rows = ["| engine | dtype | streams | talker ms | code pred. ms | codec ms | step wall ms | ms/frame | TTFA ms "
            "| RTF | audio s / wall s (steady) | peak RSS MB |" + (" peak GPU MB |" if gpu else ""),
            "|" + "---|" * (13 if gpu else 12)]

    def memory(r: dict) -> str:
        gpu_cell = f" {r['peak_gpu_mb']:.0f} |" if r.get("peak_gpu_mb") is not None else " |"
        return f" {r['peak_rss_mb']:.0f} |" + (gpu_cell if gpu else "")

    for r in results:
        if r["engine"] == "official":
            rows.append(f"| official | {r['dtype']} | 1 | {r['frame_ms_median']:.1f} (talker+CP) | | "
                        f"{r['codec_ms_per_frame']:.1f} | | {r['total_ms_per_frame']:.1f} | {r['ttfa_ms']:.0f} | "
                        f"{r['rtf']:.2f} | {r['audio_s_per_wall_s']:.2f} |" + memory(r))
            continue
        name = "makima" if r["frames"] == "eager" or not gpu else f"makima ({r['frames']})"
        for run in r["runs"]:
            s, ms, step = run["streams"], run["phase_ms"], run["step_wall_ms"]
            rows.append(
                f"| {name} | {r['dtype']} | {s} | {talker_cell(ms)} | {predictor_cell(ms)} | "
                f"{ms.get('codec', 0):.1f} | {step:.1f} | {step / s:.1f} | "
                f"{statistics.median(run['ttfa_ms']):.0f} | {statistics.median(run['rtf']):.2f} | "
                f"{run['audio_s_per_wall_s']:.2f} ({run['steady_audio_s_per_wall_s']:.2f}) |" + memory(r))
    return "\n".join(rows)


def talker_cell(ms: dict) -> str:
    """Talker column; static (CUDA-graph) frames time talker and code predictor as one phase."""
    return f"{ms['frame']:.1f} (talker+CP)" if "frame" in ms else f"{ms.get('talker', 0):.1f}"


def predictor_cell(ms: dict) -> str:
    return "" if "frame" in ms else f"{ms.get('code_predictor', 0):.1f}"


def ratios(results: list[dict]) -> dict:
    official = [r for r in results if r["engine"] == "official"]
    ours = [r for r in results if r["engine"] == "makima"]
    if not official or not ours:
        return {}
    best_official = min(official, key=lambda r: r["total_ms_per_frame"])
    single = [(f"{r['dtype']}/{r['frames']}", run) for r in ours for run in r["runs"] if run["streams"] == 1]
    best_dtype, best_single = min(single, key=lambda x: x[1]["step_wall_ms"])
    out = {"official_best_dtype": best_official["dtype"], "ours_best_dtype": best_dtype,
           "single_stream_speedup": best_official["total_ms_per_frame"] / best_single["step_wall_ms"]}
    for r in ours:
        for run in r["runs"]:
            key = f"[{r['dtype']}/{r['frames']},{run['streams']}]"
            out[f"throughput_x_official_single{key}"] = run["audio_s_per_wall_s"] / best_official["audio_s_per_wall_s"]
            out[f"steady_throughput_x_official_single{key}"] = (
                run["steady_audio_s_per_wall_s"] / best_official["audio_s_per_wall_s"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--build-full", action="store_true", help="write full 0.6B random weights to --model first")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--streams", default="1,4,8")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both engines; ours runs frames as CUDA graphs)")
    ap.add_argument("--modes", default="auto", help="auto (CUDA graphs on cuda), eager, or both: auto,eager")
    ap.add_argument("--official", default=None, help="python of a virtual environment with qwen-tts")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.build_full and not Path(args.model).exists():
        from makima_tts.tiny import build_tiny_checkpoint

        print(f"building full 0.6B-shape random checkpoint in {args.model} ...", file=sys.stderr)
        build_tiny_checkpoint(args.model, size="0.6b")
    streams = [int(s) for s in args.streams.split(",")]
    info = {"command": " ".join(sys.argv), "machine": machine(), "frames": args.frames}
    results = []
    for dtype in args.dtypes.split(","):
        for mode in args.modes.split(","):
            print(f"makima {dtype} {mode} ...", file=sys.stderr)
            results.append(bench_ours(args.model, dtype, streams, args.frames, args.device, mode))
    if args.official:
        import soundfile as sf

        ref = Path(args.json_out or "bench").with_suffix(".ref.wav")
        sf.write(ref, reference_clip(), 24000, subtype="FLOAT")
        for dtype in args.dtypes.split(","):
            print(f"official {dtype} ...", file=sys.stderr)
            results.append(bench_official(args.official, args.model, dtype, args.frames, args.threads, ref,
                                          args.device))
    info["results"], info["ratios"] = results, ratios(results)
    lines = [f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}"
             for key, value in info["ratios"].items()]
    report(info, "\n".join([table(results), *lines]), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
