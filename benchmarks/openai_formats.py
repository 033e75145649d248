"""The OpenAI speech API, every response_format, through the official `openai` SDK: one file per format,
its probe (container, codec, rate, channels, duration decoded by FFmpeg through PyAV), and the time to the
first streamed byte against the total time of the response.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/openai_formats.py [--model DIR] [--frames 150]
        [--text "..."] [--out-dir DIR] [--json-out results.json]
    python benchmarks/openai_formats.py --url http://127.0.0.1:8000 ...   # a running server

Without `--model` (and `--url`) it writes the tiny random checkpoint (`makima-tts make-tiny-model`) into a
temporary folder. It starts `makima-tts serve` on a free loopback port with TTS_PRELOAD=1 and
TTS_MAX_FRAMES=--frames (the server's frame budget per text piece, 80 ms a frame: random weights rarely
end early, so the audio is about pieces x frames x 80 ms), waits for /ready, sends one unmeasured warm-up
request, then one request per format (and mp3 once more as SSE), sequentially. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import av
import openai

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
TEXT = ("The quick brown fox jumps over the lazy dog, then it runs far away into the quiet forest, "
        "where the old trees stand in long rows and the river turns slowly to the sea.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=2) as r:
                if json.load(r).get("modelState") == "loaded":
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("the server was not ready in time")


def start_server(model: str, frames: int, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, TTS_PRELOAD="1", TTS_MAX_FRAMES=str(frames), TTS_LOG_LEVEL="warning",
               TTS_DATA_DIR=str(workdir / "data"), TTS_VOICES_DIR=str(ROOT / "voices"))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cmd = [sys.executable, "-m", "makima_tts.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--model", model]
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, proc)
    return proc, base


def probe(data: bytes, fmt: str) -> dict:
    if fmt == "pcm":  # raw: nothing to probe; OpenAI's pcm is 24 kHz 16-bit mono
        return {"container": "raw", "codec": "pcm_s16le", "rate": 24000, "channels": 1,
                "duration_s": round(len(data) / 2 / 24000, 3)}
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
        rate = frames[0].sample_rate
        return {"container": container.format.name.split(",")[0], "codec": stream.codec_context.name,
                "rate": stream.codec_context.sample_rate, "channels": stream.codec_context.channels,
                "duration_s": round(sum(f.samples for f in frames) / rate, 3)}


def measure(client: openai.OpenAI, text: str, fmt: str, sse: bool, out_dir: Path) -> dict:
    extra = {"stream_format": "sse"} if sse else {}
    started, first, parts = time.perf_counter(), None, []
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format=fmt, **extra) as response:
        if sse:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["type"] == "speech.audio.delta":
                        first = first or time.perf_counter()
                        parts.append(base64.b64decode(event["audio"]))
        else:
            for chunk in response.iter_bytes():
                first = first or time.perf_counter()
                parts.append(chunk)
    total = time.perf_counter() - started
    data = b"".join(parts)
    path = out_dir / f"speech{'-sse' if sse else ''}.{'raw' if fmt == 'pcm' else fmt}"
    path.write_bytes(data)
    row = {"format": fmt + (" (sse)" if sse else ""), "file": path.name, "bytes": len(data),
           "first_byte_ms": round((first - started) * 1000, 1), "total_ms": round(total * 1000, 1)}
    return {**row, **probe(data, fmt)}


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                    platform.machine())


def table(rows: list[dict]) -> str:
    cols = ["format", "file", "container", "codec", "rate", "channels", "duration_s", "bytes", "first_byte_ms",
            "total_ms"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint dir or Hub id (default: the tiny random one)")
    ap.add_argument("--url", default=None, help="a running server (http://127.0.0.1:PORT); loopback only")
    ap.add_argument("--frames", type=int, default=150, help="TTS_MAX_FRAMES of the started server")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--api-key", default="unused")
    ap.add_argument("--out-dir", default=None, help="where the files go (default: a temporary folder)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="openai_formats-"))
    out_dir = Path(args.out_dir) if args.out_dir else workdir / "files"
    out_dir.mkdir(parents=True, exist_ok=True)
    proc, model = None, args.model
    try:
        if args.url:
            base = args.url.rstrip("/")
            if not base.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
                raise SystemExit("--url must be a loopback address")
        else:
            if model is None:
                from makima_tts.tiny import build_tiny_checkpoint

                model = str(build_tiny_checkpoint(workdir / "tiny", seed=0, kind="base"))
            proc, base = start_server(model, args.frames, workdir)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=args.api_key, max_retries=0, timeout=600)
        client.audio.speech.create(model="tts-1", voice="alloy", input="Warm up.", response_format="pcm")
        rows = [measure(client, args.text, fmt, False, out_dir) for fmt in FORMATS]
        rows.append(measure(client, args.text, "mp3", True, out_dir))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    report = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "av": av.__version__, "openai": openai.__version__},
        "model": model or args.url, "frames_per_piece": None if args.url else args.frames,
        "text_chars": len(args.text), "out_dir": str(out_dir), "rows": rows,
    }
    text = json.dumps(report, indent=2)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    print(text)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
