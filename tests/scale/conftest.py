"""Multi-replica fixtures: `cluster(store, **settings)` starts replicas behind HAProxy on one voice store
(`dir`: a shared directory; `moto` / `rclone`: a real S3 server on loopback) and stops every process
after the test, printing the logs (shown when the test fails)."""

from __future__ import annotations

import pytest
from cluster import Cluster
from s3_servers import S3Server


@pytest.fixture
def cluster(tiny_base_dir, tmp_path):
    started: list[tuple[Cluster, S3Server | None]] = []

    def start(store: str, **settings: str) -> Cluster:
        server = None
        if store == "dir":
            store_env = {"TTS_VOICE_STORE": str(tmp_path / "shared-voices")}
        else:
            server = S3Server(store, tmp_path / f"{store}-root").start()
            store_env = {**server.env(), "TTS_VOICE_STORE": server.url()}
            if not server.honours_conditional_writes:
                store_env["TTS_VOICE_STORE_ALLOW_UNCONDITIONAL"] = "true"
        c = Cluster(tmp_path / f"cluster-{len(started)}", tiny_base_dir, store_env, **settings)
        c.s3 = server
        started.append((c, server))
        return c.start()

    yield start
    for c, server in started:
        c.close()
        if server is not None:
            server.stop()
        print(c.logs())
