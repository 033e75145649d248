"""A real cluster on loopback for the multi-replica tests: `makima-tts serve` processes (tiny checkpoint)
behind Debian's HAProxy running the shipped deploy/haproxy.cfg, sharing one voice store (a directory or a
real S3 server from tests/s3_servers.py). Everything is a child process of the test, stopped by `close()`
however the test ends; every wait is bounded."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from s3_servers import free_port

REPO = Path(__file__).resolve().parents[2]
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
TIMEOUT = 90.0  # seconds any single wait may take (a hang guard, not a timing check)


def wait_for(what: str, check, timeout: float = TIMEOUT, interval: float = 0.1):
    """Poll `check()` until it returns a truthy value; fail naming `what` past `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def serve_command() -> list[str]:
    script = Path(sys.executable).parent / "makima-tts"
    return [str(script), "serve"] if script.exists() else [sys.executable, "-m", "makima_tts.cli", "serve"]


@dataclass
class Replica:
    replica_id: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    agent_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/speak"

    def start(self) -> Replica:
        env = {**self.env, "TTS_REPLICA_ID": self.replica_id, "TTS_AGENT_PORT": str(self.agent_port)}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*serve_command(), "--host", "127.0.0.1", "--port", str(self.port)],
                                         env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.log.parent)
        return self

    def ready(self) -> dict | None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.replica_id} exited; see {self.log}"
        try:
            r = httpx.get(f"{self.http}/ready", timeout=2)
        except httpx.TransportError:
            return None
        return r.json() if r.status_code == 200 else None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)


@dataclass
class Balancer:
    replicas: list[Replica]
    log: Path
    port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/speak"

    def start(self) -> Balancer:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        assert Path(haproxy).exists(), "haproxy not installed (apt-get install haproxy; .ci/run does)"
        env = {**os.environ, "TTS_LB_ADDR": "127.0.0.1", "TTS_LB_PORT": str(self.port),
               "TTS_LB_STATS_PORT": str(self.stats_port)}
        for n, replica in enumerate(self.replicas):
            env.update({f"TTS_{n}_ADDR": "127.0.0.1", f"TTS_{n}_PORT": str(replica.port),
                        f"TTS_{n}_AGENT_PORT": str(replica.agent_port)})
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([haproxy, "-db", "-f", str(HAPROXY_CFG)], env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def servers(self) -> dict[str, dict[str, str]]:
        """HAProxy's view of each replica: its `status` (UP, DOWN, DRAIN, ...), `weight`, `agent_status`..."""
        assert self.proc is not None and self.proc.poll() is None, f"haproxy exited; see {self.log}"
        try:
            text = httpx.get(f"http://127.0.0.1:{self.stats_port}/haproxy;csv", timeout=2).text
        except httpx.TransportError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "replicas" and row["svname"].startswith("tts-")}

    def status(self, n: int) -> str:
        return self.servers().get(f"tts-{n}", {}).get("status", "?")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    """`count` replicas on one store behind HAProxy. `store_env`: TTS_VOICE_STORE and friends."""

    def __init__(self, root: Path, model: Path, store_env: dict[str, str], count: int = 2, **settings: str):
        root.mkdir(parents=True, exist_ok=True)
        base = {**os.environ, "TTS_MODEL_ID": str(model), "TTS_DEVICE": "cpu", "TTS_DTYPE": "float32",
                "TTS_VOICES_DIR": str(REPO / "voices"), "TTS_PRELOAD": "true", "TTS_WARMUP": "false",
                "TTS_LOG_LEVEL": "info", "TTS_MAX_FRAMES": "4", "TTS_SHUTDOWN_GRACE_S": "30",
                "TTS_PING_INTERVAL_S": "5", "OMP_NUM_THREADS": "1", **store_env, **settings}
        self.root = root
        self.replicas = [Replica(f"replica-{n}", {**base, "TTS_DATA_DIR": str(root / f"data-{n}")},
                                 root / f"replica-{n}.log") for n in range(count)]
        self.balancer = Balancer(self.replicas, root / "haproxy.log")

    def start(self) -> Cluster:
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            wait_for(f"{replica.replica_id} ready", replica.ready)
        self.balancer.start()
        for n in range(len(self.replicas)):
            wait_for(f"haproxy marks tts-{n} UP", lambda n=n: self.balancer.status(n) == "UP")
        return self

    def logs(self) -> str:
        parts = []
        for path in sorted(self.root.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        self.balancer.stop()
        for replica in self.replicas:
            replica.stop()


def sigterm(replica: Replica) -> None:
    replica.signal(signal.SIGTERM)


def sigkill(replica: Replica) -> None:
    replica.signal(signal.SIGKILL)


def manifest_problems(keys: dict[str, bytes]) -> list[str]:
    """Whole-voice check of a store's contents (key → bytes): every manifest parses and names a clip
    that is there and matches its hash; nothing but manifests, clips and prompts."""
    import hashlib

    problems = []
    for key, data in keys.items():
        parts = key.split("/")
        if parts[-1] == "voice.json":
            meta = json.loads(data)
            clip = keys.get(f"voices/{parts[1]}/{meta['audio']}")
            if clip is None or hashlib.sha256(clip).hexdigest() != meta["audioSha256"]:
                problems.append(f"{key}: clip missing or damaged")
        elif not (parts[-1].startswith("reference-") or parts[-1].startswith("prompt-")):
            problems.append(f"{key}: unexpected object")
    return problems
