"""Two `makima-tts serve` replicas behind a real HAProxy (the shipped deploy/haproxy.cfg), one shared voice
store: sessions spread over the replicas, a voice uploaded through the balancer speaks on every replica
and a delete is honoured everywhere (shared directory, moto, rclone), racing uploads of one id through
the two replicas give one 201 and one 409 (moto: it honours If-None-Match as AWS S3 does; rclone does
not), SIGKILL and SIGTERM of a replica mid-utterance, and an unreachable store.

Why two S3 servers: rclone stores real files with real SigV4 but ignores conditional writes (the replicas
run with TTS_VOICE_STORE_ALLOW_UNCONDITIONAL there, the start-up probe refuses it otherwise: tested in
tests/voices/test_store_replicas.py); moto is an emulator that answers a conditional PUT like AWS does."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading

import httpx
import numpy as np
import pytest
import soundfile as sf
from cluster import TIMEOUT, manifest_problems, sigkill, sigterm, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)


def clip(seconds: float = 2.0) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 24000, format="WAV")
    return buf.getvalue()


def upload(base: str, voice_id: str) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/voices", files={"audio": ("clip.wav", clip())},
                      data={"id": voice_id, "transcript": "Hello from the shared store."}, timeout=TIMEOUT)


class Session:
    """One WebSocket session; `replica` is the replicaId its `ready` named."""

    def __init__(self, conn, ready: dict):
        self.conn, self.ready, self.replica = conn, ready, ready["replicaId"]

    @classmethod
    async def open(cls, url: str) -> Session:
        conn = await connect(url, open_timeout=TIMEOUT, max_size=2**24)
        ready = json.loads(await asyncio.wait_for(conn.recv(), TIMEOUT))
        assert ready["type"] == "ready", ready
        return cls(conn, ready)

    async def next_json(self) -> dict:
        while True:
            raw = await asyncio.wait_for(self.conn.recv(), TIMEOUT)
            if isinstance(raw, str):
                return json.loads(raw)

    async def speak(self, uid: str, text: str = "Hello there.", **fields) -> dict:
        """The utterance's terminal (complete, cancelled or error)."""
        await self.conn.send(json.dumps({"type": "speak", "utteranceId": uid, "text": text, **fields}))
        while True:
            msg = await self.next_json()
            if msg.get("utteranceId") == uid and msg["type"] in ("complete", "cancelled", "error"):
                return msg

    async def close(self) -> None:
        await self.conn.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=4 * TIMEOUT))


async def spread(url: str, count: int) -> list[Session]:
    """`count` sessions opened one after another and held open (leastconn sees each one)."""
    return [await Session.open(url) for _ in range(count)]


def store_contents(c) -> dict[str, bytes]:
    """key → bytes of every object of the cluster's voice store (temporary files left out)."""
    if c.s3 is None:
        root = c.root.parent / "shared-voices"
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and not p.name.startswith(".tmp-")}
    client = c.s3.client()
    return {k[len("tts/"):]: client.get_object(Bucket=c.s3.bucket, Key=k)["Body"].read()
            for k in c.s3.keys("tts/")}


@pytest.mark.parametrize("store", ["dir", "moto", "rclone"])
def test_sessions_spread_and_a_voice_is_everywhere(cluster, store):
    c = cluster(store)
    lb = c.balancer
    ids = {r.replica_id for r in c.replicas}

    async def main():
        sessions = await spread(lb.ws, 6)
        for n, s in enumerate(sessions):
            print(f"[{store}] session {n} via haproxy :{lb.port} -> ready.replicaId={s.replica} sessionId={s.ready['sessionId']}")
        assert {s.replica for s in sessions} == ids
        view = await asyncio.to_thread(lambda: wait_for("the agents' weights", lambda: all(
            v["weight"] != "100" for v in lb.servers().values()) and lb.servers()))
        for name, row in sorted(view.items()):
            print(f"[{store}] haproxy {name}: {row['status']} weight={row['weight']} agent={row['agent_status']}"
                  f" ({row['agent_desc']}) check={row['check_status']}")
        r = await asyncio.to_thread(upload, lb.http, "everywhere")
        assert r.status_code == 201, r.text
        for s in sessions:  # every replica speaks it at once: no restart, no polling
            done = await s.speak(f"u-{id(s)}", voice="everywhere")
            assert done["type"] == "complete", (s.replica, done)
        assert (await asyncio.to_thread(httpx.delete, f"{lb.http}/api/v1/voices/everywhere")).status_code == 204
        for s in sessions:
            gone = await s.speak(f"g-{id(s)}", voice="everywhere")
            assert (gone["type"], gone["code"]) == ("error", "VOICE_NOT_FOUND"), (s.replica, gone)
        for s in sessions:
            await s.close()

    run(main())
    for replica in c.replicas:
        assert httpx.get(f"{replica.http}/api/v1/voices/everywhere").status_code == 404
    contents = store_contents(c)
    assert not [k for k in contents if "everywhere" in k] and not manifest_problems(contents)


def test_racing_uploads_through_two_replicas(cluster):
    c = cluster("moto")
    a, b = c.replicas
    for round_ in range(3):
        voice_id, results = f"race-{round_}", {}
        barrier = threading.Barrier(2)

        def go(replica, voice_id=voice_id, barrier=barrier, results=results):
            barrier.wait(TIMEOUT)
            results[replica.replica_id] = upload(replica.http, voice_id)

        threads = [threading.Thread(target=go, args=(r,)) for r in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        statuses = sorted(r.status_code for r in results.values())
        print(f"race {voice_id}: " + ", ".join(f"{k}: {v.status_code}" for k, v in sorted(results.items())))
        assert statuses == [201, 409], {k: v.text for k, v in results.items()}
        loser = next(v for v in results.values() if v.status_code == 409)
        assert loser.json()["error"]["code"] == "VOICE_EXISTS"
        winner = next(v for v in results.values() if v.status_code == 201).json()
        assert httpx.get(f"{a.http}/api/v1/voices/{voice_id}").json() == httpx.get(
            f"{b.http}/api/v1/voices/{voice_id}").json() == winner
    contents = store_contents(c)
    assert not manifest_problems(contents)
    assert sorted(k for k in contents if k.endswith("voice.json")) == [f"voices/race-{n}/voice.json" for n in range(3)]
    assert len(contents) == 9  # per id: the manifest, the winner's clip and prompt; the losers left nothing


def test_an_unreachable_store_fails_clearly_and_built_in_voices_speak(cluster):
    c = cluster("moto")
    lb = c.balancer
    assert upload(lb.http, "remote").status_code == 201
    c.s3.stop()
    for r in (httpx.get(f"{lb.http}/api/v1/voices", timeout=TIMEOUT), upload(lb.http, "new-one"),
              httpx.get(f"{lb.http}/api/v1/voices/remote", timeout=TIMEOUT)):
        error = r.json()["error"]
        assert r.status_code == 503 and error["code"] == "VOICE_STORE_UNAVAILABLE", r.text
        assert "s3://voices/tts/" in error["message"]

    async def main():
        s = await Session.open(lb.ws)
        failed = await s.speak("uploaded", voice="remote")
        assert (failed["type"], failed["code"]) == ("error", "VOICE_STORE_UNAVAILABLE"), failed
        assert "s3://" in failed["message"]
        assert (await s.speak("built-in", voice="default"))["type"] == "complete"
        await s.close()

    run(main())
    r = httpx.post(f"{lb.http}/api/v1/speak", json={"text": "Still speaking."}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.content[:4] == b"RIFF"


async def session_on(url: str, replica_id: str, tries: int = 8) -> tuple[Session, list[Session]]:
    """A session that landed on `replica_id` (and the others opened on the way, still open)."""
    others = []
    for _ in range(tries):
        s = await Session.open(url)
        if s.replica == replica_id:
            return s, others
        others.append(s)
    raise AssertionError(f"no session reached {replica_id} in {tries} tries")


async def first_audio(s: Session, uid: str, text: str = LONG_TEXT) -> None:
    await s.conn.send(json.dumps({"type": "speak", "utteranceId": uid, "text": text}))
    while not isinstance(await asyncio.wait_for(s.conn.recv(), TIMEOUT), bytes):
        pass


def test_sigkill_mid_utterance(cluster):
    c = cluster("dir", TTS_MAX_FRAMES="400")
    lb, (victim, survivor) = c.balancer, c.replicas
    assert upload(lb.http, "kept").status_code == 201

    async def main():
        doomed, others = await session_on(lb.ws, victim.replica_id)
        await first_audio(doomed, "cut")
        sigkill(victim)
        with pytest.raises(ConnectionClosed):  # the connection ends: no terminal can come
            while True:
                await asyncio.wait_for(doomed.conn.recv(), TIMEOUT)
        await asyncio.to_thread(wait_for, "haproxy marks the killed replica DOWN", lambda: lb.status(0) == "DOWN")
        fresh = await spread(lb.ws, 4)
        print("after SIGKILL: new sessions on " + ", ".join(s.replica for s in fresh))
        assert {s.replica for s in fresh} == {survivor.replica_id}
        assert (await fresh[0].speak("kept", voice="kept"))["type"] == "complete"  # the voice survived
        for s in fresh + others:
            await s.close()

    run(main())
    assert not manifest_problems(store_contents(c))


def test_sigterm_mid_utterance(cluster):
    c = cluster("dir", TTS_MAX_FRAMES="300", TTS_SHUTDOWN_GRACE_S="60")  # one piece of 300 frames: 24 s of audio
    lb, (leaving, staying) = c.balancer, c.replicas

    async def main():
        s, others = await session_on(lb.ws, leaving.replica_id)
        await first_audio(s, "finishing", "One sentence that is spoken to its end.")
        sigterm(leaving)
        # At once, while its utterance plays on: /ready 503, new upgrades and HTTP speech 503 + Retry-After.
        status = await asyncio.to_thread(
            wait_for, "/ready 503", lambda: httpx.get(f"{leaving.http}/ready").status_code == 503, 10, 0.02)
        body = httpx.get(f"{leaving.http}/ready").json()
        assert status and body["shuttingDown"] is True and body["accepting"] is False
        with pytest.raises(InvalidStatus) as refused:
            await connect(leaving.ws, open_timeout=TIMEOUT)
        assert refused.value.response.status_code == 503 and refused.value.response.headers["Retry-After"]
        speech = httpx.post(f"{leaving.http}/api/v1/speak", json={"text": "Too late."}, timeout=TIMEOUT)
        assert speech.status_code == 503 and speech.headers["Retry-After"]
        assert speech.json()["error"]["code"] == "SHUTTING_DOWN"
        await asyncio.to_thread(wait_for, "haproxy stops sending to it", lambda: lb.status(0) != "UP")
        print(f"after SIGTERM: haproxy shows tts-0 {lb.status(0)}")
        fresh = await spread(lb.ws, 4)
        print("after SIGTERM: new sessions on " + ", ".join(x.replica for x in fresh))
        assert {x.replica for x in fresh} == {staying.replica_id}
        seen = []
        while True:  # the utterance in flight completes, then the session ends properly
            msg = await s.next_json()
            seen.append(msg["type"])
            if msg["type"] == "stopped":
                assert msg == {"type": "stopped", "reason": "server_shutdown"}
                break
            if msg.get("utteranceId") == "finishing" and msg["type"] in ("complete", "error", "cancelled"):
                assert msg["type"] == "complete", msg
        await s.conn.wait_closed()
        assert "complete" in seen and s.conn.close_code == 1001
        for x in fresh + others:
            await x.close()

    run(main())
    assert leaving.proc.wait(TIMEOUT) in (0, -15)


def test_a_store_that_ignores_conditional_writes_stops_the_start(tiny_base_dir, tmp_path):
    """rclone overwrites on a conditional PUT: without TTS_VOICE_STORE_ALLOW_UNCONDITIONAL the replica
    refuses to start, saying why and what to do."""
    import subprocess

    from cluster import Replica
    from s3_servers import S3Server

    server = S3Server("rclone", tmp_path / "rclone-root").start()
    try:
        env = {**os.environ, **server.env(), "TTS_VOICE_STORE": server.url(), "TTS_MODEL_ID": str(tiny_base_dir),
               "TTS_DEVICE": "cpu", "TTS_DTYPE": "float32", "TTS_DATA_DIR": str(tmp_path / "data")}
        replica = Replica("strict", env, tmp_path / "strict.log").start()
        try:
            code = replica.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            replica.stop()
            raise
        log = replica.log.read_text()
        assert code != 0 and "ignores conditional writes" in log and "TTS_VOICE_STORE_ALLOW_UNCONDITIONAL" in log
        assert server.keys() == []  # the probe left nothing behind
    finally:
        server.stop()
