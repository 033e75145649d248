"""Server benchmark from the client side: N concurrent WebSocket sessions against `makima-tts serve`.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/server_bench.py --model DIR [--clients 1,4,8] [--frames 25]
        [--repeat 5] [--text "..."] [--env TTS_MAX_STREAMS=8 ...] [--json-out results.json]
        [--open-loop 0.3,0.5,0.7,1.0 --duration 60] [--admission batched,one_per_step]
        [--first-frames together,apart]
    python benchmarks/server_bench.py --url ws://127.0.0.1:8000/api/v1/speak ...   # a running server

The figures issue 10 asks for (CPU, full 0.6B shapes written by `benchmarks/engine_bench.py --build-full
DIR`, nothing else running), before and after batched admission in one sitting:

    OMP_WAIT_POLICY=PASSIVE python benchmarks/server_bench.py --model DIR --clients 1,4,8 --repeat 7 \
        --frames 25 --admission one_per_step,batched --json-out benchmarks/results/server_cpu_admission.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/server_bench.py --model DIR --clients 8 --repeat 7 \
        --frames 25 --open-loop 0.3,0.5,0.7,1.0 --duration 120 --capacity-duration 60 \
        --admission one_per_step,batched --json-out benchmarks/results/server_cpu_open_loop.json

The first gives 8 sessions together (TTFA p50/p95, audio s per wall s) and one session's TTFA (the
`1 session x 7` row) per policy; the second the open loop at 70% of capacity against that p50. On a GPU:
`--env TTS_DEVICE=cuda --env TTS_MAX_STREAMS=32 --clients 1,10,16,32 --frames 0` (same two runs).

Without `--url` it starts `makima-tts serve --host 127.0.0.1 --port <free port> --model DIR` itself with
TTS_PRELOAD=1 (the model loads at start), OMP_WAIT_POLICY=PASSIVE (unless set), TTS_MAX_FRAMES=--frames
(the server's per-utterance frame budget, 80 ms each, so every run is bounded; random weights may still
end earlier on an end token), TTS_DATA_DIR=a temporary folder (unless set), every TTS_* variable of this
environment and the `--env KEY=VALUE` pairs on top; it waits for GET /ready to say `loaded`, and stops the
server (SIGTERM, then SIGKILL) at the end. The server runs in a temporary working directory, so no stray
`.env` changes it unseen. With `--url` the server's own frame budget applies and `--frames` is ignored.
Loopback addresses only.

Each session connects to /api/v1/speak, sends `start` (pcm16, 24000 Hz, binary, the built-in `default`
voice) and then `speak` with one utterance. One unmeasured warm-up utterance first caches the voice
prompt. Measured per utterance: time to first audio (sending `speak` → first binary message), the gaps
between consecutive audio messages, underruns of a client-side playout clock that starts when the first
frame arrives (a frame arriving after the clock needed it is an underrun; playback stalls until it
arrives), frames received vs `complete.frames` (lost must be 0), audio outside `speaking`..terminal.

Phases: `--repeat R` sequential utterances in one session (single-session TTFA p50, cached voice), then
for each N in `--clients` all N sessions open first and send `speak` together (closed bursts), then for
each fraction in `--open-loop` an open loop: utterances of 1-3 sentences (drawn from `SENTENCES`, seeded)
arrive as a Poisson process at that fraction of the capacity for `--duration` s, each on an idle session
of a pool (opened beforehand, grown when all are busy), whether or not earlier ones have finished. The
capacity (utterances per second) is measured first with the same mix in a closed loop: the largest
`--clients` N sessions speak back to back for `--capacity-duration` s (under the first `--admission`
policy; every policy is then offered the same rates), or given with `--capacity`. Random weights never
say the end token, so an utterance runs to its frame budget: `--frames 0` leaves the engine's budget,
which follows the text (38 + 6 frames per text token, about twice natural speech), any other value caps
every utterance at that many frames. Open loops report TTFA p50/p95/p99, inter-frame gaps,
playout underruns, audio s per wall s (audio received over the span from the first arrival to the last
terminal) and frames lost.

Every run also reports where the server's time to first audio went, as the means over its utterances of
the engine's phases (`tts_engine_first_audio_phase_seconds` on /metrics, read before and after the run):
queued (waiting for the frame step in flight or a free slot), prefill (prompt and prefill passes) and
first frame (one frame step and the codec's decode); and the machine's CPU shares over the run from
/proc/stat (`steal`: time the hypervisor gave to others). The machine record has the memory bandwidth
at the start and the end (a copy of 256 MiB, best of 5): small-batch decoding is bound by it, and on a
shared VM it moves between sittings without any steal showing.

`--admission P1,P2` runs everything once per engine admission policy (TTS_ADMISSION, a fresh server each:
`one_per_step` runs with TTS_REUSE_PREFIXES=false, the engine before issue 10; `batched` with prefix
reuse), so before/after comes from one invocation; `--first-frames F1,F2` likewise per TTS_FIRST_FRAMES
(engine/codec_stage.py: `together`, the engine before, or `apart`), crossed with the admission policies.
The JSON carries the command, the machine, the server environment and every raw figure; a markdown
table follows.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
TEXT = "The quick brown fox jumps over the lazy dog, then it runs far away into the quiet forest."
SAMPLE_RATE = 24000
BYTES_PER_SAMPLE = 2  # pcm16
TERMINALS = ("complete", "cancelled", "error")
SENTENCES = (
    "Sure, I can help you with that.",
    "The meeting has been moved to three o'clock on Thursday afternoon.",
    "It looks like rain later today, so you might want to bring an umbrella.",
    "Your order shipped this morning and should arrive within two business days.",
    "Here is a quick summary of what we discussed.",
    "I could not find that file, but there is a similar one in your documents folder.",
    "Traffic on the highway is light right now.",
    "Let me know if there is anything else you need.",
)
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


# --- machine and server process -----------------------------------------------------------------------


def loadavg() -> list[str]:
    return open("/proc/loadavg").read().split()[:3]


def cpu_jiffies() -> dict[str, int]:
    """Whole-machine CPU time from /proc/stat (user, system, idle, iowait, steal), in clock ticks."""
    fields = open("/proc/stat").readline().split()[1:9]
    user, nice, system, idle, iowait, _irq, _softirq, steal = (int(v) for v in fields)
    return {"user": user + nice, "system": system, "idle": idle, "iowait": iowait, "steal": steal}


def cpu_shares(start: dict[str, int], end: dict[str, int]) -> dict[str, float]:
    """Each kind's share of the CPU time between two `cpu_jiffies()` readings (steal: taken by the host)."""
    delta = {k: end[k] - start[k] for k in start}
    total = sum(delta.values()) or 1
    return {k: round(v / total, 4) for k, v in delta.items()}


def engine_phases(http_base: str) -> dict[str, tuple[float, float]]:
    """The server's first-audio phases so far: phase -> (count, sum s) of tts_engine_first_audio_phase_seconds."""
    try:
        with urllib.request.urlopen(f"{http_base}/metrics", timeout=10) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return {}
    figures: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, index in (("_count", 0), ("_sum", 1)):
            head = f"tts_engine_first_audio_phase_seconds{suffix}{{phase=\""
            if line.startswith(head):
                phase, value = line[len(head):].split("\"} ")
                figures.setdefault(phase, [0.0, 0.0])[index] = float(value)
    return {phase: (count, total) for phase, (count, total) in figures.items()}


def phase_means_ms(before: dict, after: dict) -> dict[str, float | None]:
    """Mean ms per utterance of each first-audio phase between two `engine_phases` readings."""
    means = {}
    for phase, (count, total) in after.items():
        count0, total0 = before.get(phase, (0.0, 0.0))
        means[phase] = 1000 * (total - total0) / (count - count0) if count > count0 else None
    return means


def memory_gb_per_s(mib: int = 256, rounds: int = 5) -> float:
    """Best of `rounds` copies of a `mib` MiB buffer, in GB/s: decoding at small batches is bound by memory
    bandwidth, so this says how fast the machine is in this sitting (a shared VM's neighbours take it)."""
    src = np.ones(mib * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - started)
    return round(2 * src.nbytes / best / 1e9, 2)  # read + write


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch_version,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "loadavg_start": loadavg(),
            "memory_gb_per_s_start": memory_gb_per_s()}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Policy(NamedTuple):
    """The engine policies of one sitting (None: the server's default)."""

    admission: str | None = None
    first_frames: str | None = None

    @property
    def label(self) -> str:
        parts = [self.admission, self.first_frames and f"first frames {self.first_frames}"]
        return ", ".join(p for p in parts if p) or "server default"


def server_env(args: argparse.Namespace, workdir: Path, policy: Policy) -> dict[str, str]:
    """What the spawned server sees; the TTS_* part is returned for the report too."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("TTS_DATA_DIR", str(workdir / "data"))
    env.setdefault("TTS_VOICES_DIR", str(ROOT / "voices"))
    env.setdefault("TTS_LOG_LEVEL", "warning")
    env.setdefault("TTS_MAX_SESSIONS", "256")  # open loops and big bursts: every session from this one client
    env.setdefault("TTS_MAX_SESSIONS_PER_CLIENT", "256")
    for pair in args.env:
        key, _, value = pair.partition("=")
        env[key] = value
    env["TTS_PRELOAD"] = "1"
    if policy.admission:
        env["TTS_ADMISSION"] = policy.admission
        env["TTS_REUSE_PREFIXES"] = "false" if policy.admission == "one_per_step" else "true"  # "before": neither
    if policy.first_frames:
        env["TTS_FIRST_FRAMES"] = policy.first_frames
    env["TTS_MAX_FRAMES"] = str(args.frames)
    return env


def ready_status(http_base: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{http_base}/ready", timeout=2) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # 503 while loading: the body still says how far
        return json.load(exc)
    except (OSError, ValueError):
        return None


def wait_ready(http_base: str, proc: subprocess.Popen | None, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        status = ready_status(http_base)
        if status and status.get("modelState") == "loaded":
            return status
        if status and status.get("error"):
            raise RuntimeError(f"the server failed to load the model: {status['error']}")
        time.sleep(0.25)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s")


class Server:
    """`makima-tts serve` as a subprocess (context manager); its log goes to a file in its workdir."""

    def __init__(self, args: argparse.Namespace, policy: Policy):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="server_bench-"))
        self.port = free_port()
        self.env = server_env(args, self.workdir, policy)
        self.log_path = self.workdir / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/speak"

    def command(self) -> list[str]:
        model = Path(self.args.model).expanduser()
        model_arg = str(model.resolve()) if model.exists() else self.args.model  # a Hub id stays as it is
        exe = Path(sys.executable).with_name("makima-tts")
        head = [str(exe)] if exe.exists() else [sys.executable, "-m", "makima_tts.cli"]
        return [*head, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--model", model_arg]

    def __enter__(self) -> Server:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


# --- one session ----------------------------------------------------------------------------------------


@dataclass
class Utterance:
    ttfa_ms: float | None = None  # `speak` sent → first binary message
    gaps_ms: list[float] = field(default_factory=list)  # between consecutive binary messages
    underruns: int = 0
    stall_ms: float = 0.0
    frames: int = 0  # binary messages between `speaking` and the terminal
    samples: int = 0
    terminal: str | None = None  # complete | cancelled | error:CODE | timeout | closed
    complete_frames: int | None = None
    complete_audio_ms: float | None = None
    server_ttfa_ms: float | None = None
    truncated: bool | None = None
    stray_audio: int = 0  # binary messages outside this utterance's speaking..terminal
    sent_at: float = 0.0
    done_at: float = 0.0

    @property
    def audio_s(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def lost(self) -> int:
        return (self.complete_frames - self.frames) if self.complete_frames is not None else 0


class PlayoutClock:
    """Plays each frame for its length; it starts at the first frame and stalls while the buffer is empty."""

    def __init__(self) -> None:
        self.buffered_until: float | None = None  # when the audio received so far runs out
        self.underruns, self.stall_s = 0, 0.0

    def frame(self, at: float, seconds: float) -> None:
        if self.buffered_until is None:
            self.buffered_until = at
        elif at > self.buffered_until:
            self.underruns += 1
            self.stall_s += at - self.buffered_until
            self.buffered_until = at
        self.buffered_until += seconds


async def expect(ws: ClientConnection, kind: str) -> dict:
    """Receive until a JSON message of type `kind` (an `error` instead is fatal)."""
    while True:
        message = await ws.recv()
        if isinstance(message, bytes):
            continue
        data = json.loads(message)
        if data.get("type") == kind:
            return data
        if data.get("type") == "error":
            raise RuntimeError(f"server error while waiting for {kind}: {data}")


async def open_session(url: str, compression: bool) -> ClientConnection:
    ws = await connect(url, subprotocols=["tts.v1"], compression="deflate" if compression else None,
                       open_timeout=30, max_size=2**22)
    await expect(ws, "ready")
    await ws.send(json.dumps({"type": "start", "voice": "default", "encoding": "pcm16",
                              "sampleRate": SAMPLE_RATE, "audioTransport": "binary"}))
    await expect(ws, "started")
    return ws


def on_text(u: Utterance, data: dict, utterance_id: str) -> bool:
    """Handle one JSON message of an utterance; True when it was this utterance's terminal."""
    kind = data.get("type")
    if kind not in TERMINALS or data.get("utteranceId") != utterance_id:
        return False
    u.terminal = kind if kind != "error" else f"error:{data.get('code')}"
    if kind == "complete":
        u.complete_frames, u.complete_audio_ms = data.get("frames"), data.get("audioLengthMs")
        u.server_ttfa_ms, u.truncated = data.get("ttfaMs"), data.get("truncated")
    return True


async def receive_utterance(ws: ClientConnection, u: Utterance, utterance_id: str) -> None:
    clock, speaking, last = PlayoutClock(), False, None
    while True:
        message = await ws.recv()
        at = time.perf_counter()
        if isinstance(message, bytes):
            if not speaking:
                u.stray_audio += 1
                continue
            if last is None:
                u.ttfa_ms = 1000 * (at - u.sent_at)
            else:
                u.gaps_ms.append(1000 * (at - last))
            last = at
            u.frames += 1
            samples = len(message) // BYTES_PER_SAMPLE
            u.samples += samples
            clock.frame(at, samples / SAMPLE_RATE)
            continue
        data = json.loads(message)
        if data.get("type") == "speaking" and data.get("utteranceId") == utterance_id:
            speaking = True
        elif on_text(u, data, utterance_id):
            u.done_at = at
            u.underruns, u.stall_ms = clock.underruns, 1000 * clock.stall_s
            return


async def speak(ws: ClientConnection, text: str, utterance_id: str, timeout: float) -> Utterance:
    u = Utterance()
    u.sent_at = time.perf_counter()
    await ws.send(json.dumps({"type": "speak", "utteranceId": utterance_id, "text": text}))
    try:
        await asyncio.wait_for(receive_utterance(ws, u, utterance_id), timeout)
    except asyncio.TimeoutError:
        u.terminal, u.done_at = "timeout", time.perf_counter()
    except Exception as exc:  # the connection closed under us
        u.terminal, u.done_at = f"closed:{type(exc).__name__}", time.perf_counter()
    return u


async def close_session(ws: ClientConnection) -> int:
    """Send `stop` and read until `stopped`/close; returns the audio messages that still arrived."""
    stray = 0

    async def drain() -> None:
        nonlocal stray
        async for message in ws:
            if isinstance(message, bytes):
                stray += 1
            elif json.loads(message).get("type") == "stopped":
                return

    try:
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(drain(), 10)
    except Exception:  # closed or slow: what arrived is counted
        pass
    await ws.close()
    return stray


# --- runs -----------------------------------------------------------------------------------------------


async def run_concurrent(url: str, clients: int, text: str, timeout: float, compression: bool) -> dict:
    sessions = await asyncio.gather(*(open_session(url, compression) for _ in range(clients)))
    results = await asyncio.gather(*(speak(ws, text, f"c{i}", timeout) for i, ws in enumerate(sessions)))
    strays = await asyncio.gather(*(close_session(ws) for ws in sessions))
    for u, stray in zip(results, strays, strict=True):
        u.stray_audio += stray
    return summarize(clients, results)


async def run_repeat(url: str, repeat: int, text: str, timeout: float, compression: bool) -> dict:
    ws = await open_session(url, compression)
    results = [await speak(ws, text, f"r{i}", timeout) for i in range(repeat)]
    results[-1].stray_audio += await close_session(ws)
    summary = summarize(1, results)
    summary["wall_s"] = sum(u.done_at - u.sent_at for u in results)  # sequential: the sum, not the span
    summary["audio_s_per_wall_s"] = summary["audio_s"] / summary["wall_s"] if summary["wall_s"] else 0.0
    return summary


def open_loop_text(rng: np.random.Generator) -> str:
    """A reply of 1-3 sentences."""
    picks = rng.choice(len(SENTENCES), size=int(rng.integers(1, 4)), replace=False)
    return " ".join(SENTENCES[i] for i in picks)


async def run_open_loop(url: str, rate: float, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    """Poisson arrivals at `rate` utterances/s for `args.duration` s, each on an idle pooled session."""
    idle = list(await asyncio.gather(*(open_session(url, args.compression) for _ in range(args.pool))))
    opened = len(idle)

    async def one(text: str, utterance_id: str) -> Utterance:
        nonlocal opened
        if idle:
            ws = idle.pop()
        else:
            opened += 1
            ws = await open_session(url, args.compression)
        u = await speak(ws, text, utterance_id, args.timeout)
        idle.append(ws) if u.terminal == "complete" else await close_session(ws)
        return u

    tasks, start = [], time.perf_counter()
    arrival = start
    while (arrival := arrival + rng.exponential(1 / rate)) < start + args.duration:
        await asyncio.sleep(max(0.0, arrival - time.perf_counter()))
        tasks.append(asyncio.create_task(one(open_loop_text(rng), f"o{len(tasks)}")))
    results = list(await asyncio.gather(*tasks))
    strays = await asyncio.gather(*(close_session(ws) for ws in idle))
    if results:
        results[-1].stray_audio += sum(strays)
    summary = summarize(len(results), results)
    summary.update(rate_utt_per_s=rate, duration_s=args.duration, sessions_opened=opened)
    return summary


async def measure_capacity(url: str, sessions: int, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    """Closed loop at saturation: `sessions` sessions speak mix utterances back to back for
    `args.capacity_duration` s; capacity = utterances completed per second."""
    pool = await asyncio.gather(*(open_session(url, args.compression) for _ in range(sessions)))
    start = time.perf_counter()
    done: list[Utterance] = []

    async def loop(ws: ClientConnection, k: int) -> None:
        while time.perf_counter() < start + args.capacity_duration:
            u = await speak(ws, open_loop_text(rng), f"k{k}-{len(done)}", args.timeout)
            done.append(u)
            if u.terminal != "complete":
                return

    await asyncio.gather(*(loop(ws, k) for k, ws in enumerate(pool)))
    await asyncio.gather(*(close_session(ws) for ws in pool))
    span = max(u.done_at for u in done) - start
    completed = sum(u.terminal == "complete" for u in done)
    return {"sessions": sessions, "utterances": completed, "span_s": span, "utt_per_s": completed / span,
            "audio_s_per_wall_s": sum(u.audio_s for u in done) / span}


async def warm_up(url: str, text: str, timeout: float, compression: bool) -> dict:
    ws = await open_session(url, compression)
    u = await speak(ws, text, "warmup", timeout)
    await close_session(ws)
    return {"ttfa_ms": u.ttfa_ms, "terminal": u.terminal, "frames": u.frames}


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(clients: int, results: list[Utterance]) -> dict:
    ttfa = [u.ttfa_ms for u in results if u.ttfa_ms is not None]
    gaps = [g for u in results for g in u.gaps_ms]
    wall = max(u.done_at for u in results) - min(u.sent_at for u in results)
    audio = sum(u.audio_s for u in results)
    return {
        "clients": clients, "utterances": len(results), "wall_s": wall, "audio_s": audio,
        "audio_s_per_wall_s": audio / wall if wall > 0 else 0.0,
        "ttfa_ms": {"p50": pct(ttfa, 50), "p95": pct(ttfa, 95), "p99": pct(ttfa, 99), "min": min(ttfa, default=None),
                    "max": max(ttfa, default=None)},
        "server_ttfa_ms_p50": pct([u.server_ttfa_ms for u in results if u.server_ttfa_ms is not None], 50),
        "gap_ms": {"p50": pct(gaps, 50), "p95": pct(gaps, 95), "max": max(gaps, default=None)},
        "clients_with_underruns": sum(1 for u in results if u.underruns), "underruns": sum(u.underruns for u in results),
        "stall_ms": sum(u.stall_ms for u in results),
        "frames_received": sum(u.frames for u in results),
        "frames_complete": sum(u.complete_frames or 0 for u in results),
        "frames_lost": sum(u.lost for u in results), "stray_audio": sum(u.stray_audio for u in results),
        "truncated": sum(1 for u in results if u.truncated),
        "audio_ms_mismatch": sum(1 for u in results if u.complete_audio_ms is not None
                                 and abs(u.complete_audio_ms - 1000 * u.audio_s) > 1),
        "failed": [u.terminal for u in results if u.terminal != "complete"],
        "per_utterance": [{k: v for k, v in asdict(u).items() if k not in ("sent_at", "done_at")}
                          for u in results],
    }


async def measured(url: str, run) -> dict:
    """Await one run's coroutine; add the server's mean first-audio phases and the machine's CPU shares."""
    http_base, cpu = check_loopback(url), cpu_jiffies()
    before = await asyncio.to_thread(engine_phases, http_base)
    result = await run
    after = await asyncio.to_thread(engine_phases, http_base)
    return {**result, "engine_first_audio_ms": phase_means_ms(before, after), "cpu": cpu_shares(cpu, cpu_jiffies())}


async def bench(url: str, args: argparse.Namespace, capacity: float | None) -> dict:
    out: dict = {"warmup": await warm_up(url, args.text, args.timeout, args.compression)}
    if args.repeat:
        print(f"single session, {args.repeat} utterances ...", file=sys.stderr)
        out["repeat"] = await measured(url, run_repeat(url, args.repeat, args.text, args.timeout, args.compression))
    out["runs"] = []
    for n in [int(c) for c in args.clients.split(",") if c.strip()]:
        print(f"{n} concurrent client(s) ...", file=sys.stderr)
        out["runs"].append(await measured(url, run_concurrent(url, n, args.text, args.timeout, args.compression)))
    out["open_loop"] = []
    if args.open_loop:
        # the capacity run and each rate draw from generators of their own, so every sitting (whether it
        # measures the capacity or is given it) is offered the same arrivals and texts at each rate
        if not (capacity or args.capacity):
            sessions = max(int(c) for c in args.clients.split(",") if c.strip())
            print(f"capacity: {sessions} sessions back to back for {args.capacity_duration:.0f} s ...", file=sys.stderr)
            out["capacity_run"] = await measure_capacity(url, sessions, args, np.random.default_rng(args.seed + 1))
        capacity = capacity or args.capacity or out["capacity_run"]["utt_per_s"]
        out["capacity_utt_per_s"] = capacity
        for k, fraction in enumerate(float(f) for f in args.open_loop.split(",") if f.strip()):
            print(f"open loop at {fraction:.0%} of {capacity:.3f} utterances/s ...", file=sys.stderr)
            rng = np.random.default_rng([args.seed, k])
            run = await measured(url, run_open_loop(url, fraction * capacity, args, rng))
            out["open_loop"].append({"fraction": fraction, **run})
    return out


# --- report ---------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def phases(run: dict) -> str:
    means = run.get("engine_first_audio_ms") or {}
    return " / ".join(fmt(means.get(phase)) for phase in ("queued", "prefill", "first_frame"))


def table(sittings: list[dict]) -> str:
    rows = ["| policy | run | clients | TTFA p50 ms | TTFA p95 ms | TTFA p99 ms | server ttfaMs p50 | gap p50 ms "
            "| gap p95 ms | gap max ms | clients w/ underrun | underruns | stall ms | audio s / wall s "
            "| frames recv/complete | lost | stray audio | truncated | failed "
            "| engine queued / prefill / first frame ms | CPU steal |", "|" + "---|" * 21]
    for sitting in sittings:
        results = sitting["results"]
        runs = [(f"1 session x {results['repeat']['utterances']}", results["repeat"])] if "repeat" in results else []
        runs += [("together", r) for r in results["runs"]]
        runs += [(f"open loop {r['fraction']:.0%} ({r['rate_utt_per_s']:.2f}/s)", r) for r in results["open_loop"]]
        for label, r in runs:
            rows.append(
                f"| {sitting['policy']} | {label} | {r['clients']} | {fmt(r['ttfa_ms']['p50'])} | "
                f"{fmt(r['ttfa_ms']['p95'])} | {fmt(r['ttfa_ms']['p99'])} | {fmt(r['server_ttfa_ms_p50'])} | "
                f"{fmt(r['gap_ms']['p50'])} | {fmt(r['gap_ms']['p95'])} | {fmt(r['gap_ms']['max'])} | "
                f"{r['clients_with_underruns']}/{r['utterances']} | {r['underruns']} | {r['stall_ms']:.0f} | "
                f"{r['audio_s_per_wall_s']:.2f} | {r['frames_received']}/{r['frames_complete']} | {r['frames_lost']} | "
                f"{r['stray_audio']} | {r['truncated']} | {len(r['failed'])} | {phases(r)} | "
                f"{fmt(100 * r['cpu']['steal'], 1) + '%' if 'cpu' in r else '-'} |")
    return "\n".join(rows)


def check_loopback(url: str) -> str:
    """The http:// base of a ws:// URL on a loopback host (anything else is refused)."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname not in LOOPBACK:
        raise SystemExit(f"--url must be ws:// on a loopback host ({', '.join(LOOPBACK)}), not {url}")
    return f"http://{parts.netloc}"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint for the spawned server (directory or Hub id)")
    ap.add_argument("--url", help="ws://127.0.0.1:PORT/api/v1/speak of a running server instead")
    ap.add_argument("--clients", default="1,4,8", help="concurrent sessions per run, comma-separated")
    ap.add_argument("--frames", type=int, default=25, help="TTS_MAX_FRAMES of the spawned server (80 ms each)")
    ap.add_argument("--repeat", type=int, default=5, help="sequential utterances in one session (0: skip)")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--env", action="append", default=[], metavar="TTS_X=VALUE", help="server setting (repeatable)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds one utterance may take")
    ap.add_argument("--load-timeout", type=float, default=300.0, help="seconds the server may take to load")
    ap.add_argument("--compression", action="store_true", help="offer permessage-deflate (browsers do)")
    ap.add_argument("--open-loop", default="", metavar="F1,F2", help="open-loop rates as fractions of capacity")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals per open-loop rate")
    ap.add_argument("--capacity", type=float, default=None, help="utterances/s at 100%% (default: measured)")
    ap.add_argument("--capacity-duration", type=float, default=30.0, help="seconds of the capacity run")
    ap.add_argument("--pool", type=int, default=16, help="sessions opened before each open loop")
    ap.add_argument("--seed", type=int, default=0, help="seed of the open-loop arrivals and texts")
    ap.add_argument("--admission", default="", metavar="P1,P2",
                    help="TTS_ADMISSION policies to run one after the other (batched, one_per_step)")
    ap.add_argument("--first-frames", default="", metavar="F1,F2",
                    help="TTS_FIRST_FRAMES policies to run one after the other (together, apart)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if not (args.model or args.url):
        ap.error("give --model (spawn a server) or --url (a running one)")
    if args.url and (args.admission or args.first_frames):
        ap.error("--admission and --first-frames set the spawned server's policies (--model), not --url's")
    if args.open_loop and not args.clients and args.capacity is None:
        ap.error("an open loop needs a closed burst (--clients) to measure the capacity, or --capacity")
    return args


def report(info: dict, json_out: str | None) -> None:
    print(json.dumps(info, indent=1))
    print(f"\n{info['command']}\n{info['machine']}")
    for sitting in info["sittings"]:
        print(f"server ({sitting['policy']}): "
              f"{ {k: v for k, v in sitting['server'].items() if k != 'log_tail'} }")
    print()
    print(table(info["sittings"]))
    if json_out:
        Path(json_out).write_text(json.dumps(info, indent=1))


def sitting_on_spawned_server(args: argparse.Namespace, policy: Policy, capacity: float | None) -> dict:
    with Server(args, policy) as server:
        started = time.perf_counter()
        try:
            ready = wait_ready(f"http://127.0.0.1:{server.port}", server.proc, args.load_timeout)
        except RuntimeError:
            print(server.log_tail(), file=sys.stderr)
            raise
        tts_env = {k: ("[redacted]" if k == "TTS_AUTH_TOKENS" else v)
                   for k, v in server.env.items() if k.startswith("TTS_")}
        info = {"command": " ".join(server.command()), "env": tts_env, "omp_wait_policy": server.env.get("OMP_WAIT_POLICY"),
                "ready_s": time.perf_counter() - started, "ready": ready}
        print(f"server ({policy.label}) ready in {info['ready_s']:.1f} s", file=sys.stderr)
        results = asyncio.run(bench(server.url, args, capacity))
        info["log_tail"] = server.log_tail(2000)
    return {"admission": policy.admission, "first_frames": policy.first_frames, "policy": policy.label,
            "server": info, "results": results}


def policies(args: argparse.Namespace) -> list[Policy]:
    """One sitting per admission policy x first-frames policy asked for, in the order given."""
    def listed(value: str) -> list[str | None]:
        return [v.strip() for v in value.split(",") if v.strip()] or [None]

    return [Policy(a, f) for a in listed(args.admission) for f in listed(args.first_frames)]


def main() -> int:
    args = parse_args()
    info = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), "text": args.text,
            "compression": args.compression, "sittings": []}
    cpu_start = cpu_jiffies()
    if args.url:
        http_base = check_loopback(args.url)
        server = {"url": args.url, "ready": wait_ready(http_base, None, args.load_timeout)}
        info["sittings"].append({"admission": None, "first_frames": None, "policy": "the server's own",
                                 "server": server, "results": asyncio.run(bench(args.url, args, None))})
    else:
        capacity = None  # measured under the first policy, offered to every one
        for policy in policies(args):
            sitting = sitting_on_spawned_server(args, policy, capacity)
            capacity = capacity or sitting["results"].get("capacity_utt_per_s")
            info["sittings"].append(sitting)
    info["machine"]["loadavg_end"] = loadavg()
    info["machine"]["cpu_shares"] = cpu_shares(cpu_start, cpu_jiffies())
    info["machine"]["memory_gb_per_s_end"] = memory_gb_per_s()
    report(info, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
