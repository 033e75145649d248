"""Soak run from the client side: N WebSocket sessions speaking, streaming text and cancelling against
`makima-tts serve`, counting terminals by kind (errors must be 0).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ws_soak.py --model DIR [--sessions 8] [--utterances 40]
        [--seconds 240] [--seed 1] [--frames 0] [--env TTS_X=VALUE ...] [--json-out soak.json]

Bounded in count and time: each session stops after `--utterances` utterances or when `--seconds` have
passed. Each utterance is, at random (seeded): one whole `speak` (60 %), text streamed in 2-4 pieces
with `continue` (25 %), or a `speak` cancelled after 0-5 audio messages (15 %). With `--frames 0` the
server derives each budget from the text, so a checkpoint whose utterances end on the end token (the
parity fixtures' `base_eos`, as real weights) ends them at different frames. Checked per utterance:
exactly one terminal, `complete.frames` equal to the audio messages received. The server is spawned as
in `server_bench.py` (loopback, temporary working directory); its log is scanned for errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from server_bench import Server, loadavg, machine, wait_ready
from websockets.asyncio.client import connect

WORDS = "hello world this is a tiny test of speech that ends when the model says so today".split()


async def session(url: str, index: int, args: argparse.Namespace, deadline: float, tally: Counter) -> None:
    rng = random.Random(args.seed * 1000 + index)
    async with connect(url, subprotocols=["tts.v1"], max_size=2**24) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for k in range(args.utterances):
            if time.monotonic() > deadline:
                break
            uid, roll = f"s{index}-u{k}", rng.random()
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
            cancel_after = rng.randint(0, 5) if roll >= 0.85 else None
            if 0.6 <= roll < 0.85:
                tally["streamed_text"] += 1
                cut = sorted(rng.sample(range(1, len(words)), min(len(words) - 1, rng.randint(1, 3))))
                pieces = [" ".join(words[a:b]) + " " for a, b in zip([0, *cut], [*cut, len(words)], strict=True)]
                for j, piece in enumerate(pieces):
                    await ws.send(json.dumps({"type": "speak", "utteranceId": uid, "text": piece,
                                              "continue": j < len(pieces) - 1}))
            else:
                await ws.send(json.dumps({"type": "speak", "utteranceId": uid, "text": " ".join(words) + "."}))
            audio = 0
            while True:
                message = await asyncio.wait_for(ws.recv(), args.timeout)
                if isinstance(message, bytes):
                    audio += 1
                    if audio - 1 == cancel_after:
                        await ws.send(json.dumps({"type": "cancel", "utteranceId": uid}))
                    continue
                msg = json.loads(message)
                if msg.get("utteranceId") != uid or msg["type"] not in ("complete", "cancelled", "error"):
                    continue
                tally["utterances"] += 1
                if msg["type"] == "complete":
                    tally["complete_truncated" if msg["truncated"] else "complete_end_token"] += 1
                    tally["frames_mismatch"] += msg["frames"] != audio
                else:
                    tally[msg["type"] if msg["type"] == "cancelled" else f"error_{msg['code']}"] += 1
                tally["audio_messages"] += audio
                break
        await ws.send(json.dumps({"type": "stop"}))


async def soak(url: str, args: argparse.Namespace) -> Counter:
    tally: Counter = Counter()
    deadline = time.monotonic() + args.seconds
    await asyncio.gather(*(session(url, i, args, deadline, tally) for i in range(args.sessions)))
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint for the spawned server")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--utterances", type=int, default=40, help="per session at most")
    ap.add_argument("--seconds", type=float, default=240.0, help="no new utterance after this")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frames", type=int, default=0, help="TTS_MAX_FRAMES (0: budget from the text)")
    ap.add_argument("--env", action="append", default=[], metavar="TTS_X=VALUE")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one message may take")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    info = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine()}
    with Server(args) as server:
        wait_ready(f"http://127.0.0.1:{server.port}", server.proc, 300)
        started = time.perf_counter()
        tally = asyncio.run(soak(server.url, args))
        info["wall_s"] = round(time.perf_counter() - started, 1)
        log = server.log_path.read_text(errors="replace")
    info["terminals"] = dict(sorted(tally.items()))
    info["server_log_errors"] = sum("ERROR" in line for line in log.splitlines())
    info["machine"]["loadavg_end"] = loadavg()
    print(json.dumps(info, indent=1))
    print("\n| " + " | ".join(info["terminals"]) + " | server log ERROR lines | wall s |")
    print("|" + "---|" * (len(info["terminals"]) + 2))
    print("| " + " | ".join(str(v) for v in info["terminals"].values())
          + f" | {info['server_log_errors']} | {info['wall_s']} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(info, indent=1))
    errors = sum(v for k, v in tally.items() if k.startswith("error_")) + tally["frames_mismatch"]
    return 1 if errors or info["server_log_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
