"""A replica's room for load balancers: GET /ready (200 only when loaded and accepting; free engine slots,
open sessions, the replica id), the same figures as /metrics gauges, and the HAProxy agent's line."""

from __future__ import annotations

import asyncio
import socket

import httpx
from server_helpers import Client, run

from makima_tts.server.capacity import Capacity


def agent_line(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while chunk := s.recv(100):
            data += chunk
    return data.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ready_metrics_and_agent_report_the_room(start_server):
    port = free_port()
    srv = start_server(agent_port=port, replica_id="replica-a", max_sessions=4, max_streams=2)
    srv.wait_loaded()

    async def main():
        c = await Client.open(srv.ws)
        ready_msg = await c.recv_json("ready")
        assert ready_msg["replicaId"] == "replica-a"
        r = await asyncio.to_thread(httpx.get, f"{srv.http}/ready")
        body = r.json()
        assert r.status_code == 200 and body["ready"] is True and body["accepting"] is True
        assert (body["replicaId"], body["engineSlots"], body["freeSlots"]) == ("replica-a", 2, 2)
        assert (body["sessions"], body["maxSessions"], body["shuttingDown"]) == (1, 4, False)
        assert await asyncio.to_thread(agent_line, port) == "up ready 75%\n"  # 3 of 4 session places free
        metrics = (await asyncio.to_thread(httpx.get, f"{srv.http}/metrics")).text
        for line in ("tts_accepting 1.0", "tts_engine_slots 2.0", "tts_engine_slots_free 2.0",
                     "tts_sessions_active 1.0", "tts_sessions_max 4.0"):
            assert line in metrics, line
        await c.close()

    run(main())


def test_a_lazy_replica_is_not_ready_until_loaded(start_server):
    port = free_port()
    srv = start_server(preload=False, agent_port=port)
    r = httpx.get(f"{srv.http}/ready")
    assert r.status_code == 503 and r.json()["modelState"] == "not_loaded" and r.json()["ready"] is False
    assert agent_line(port) == "down #model not loaded\n"
    assert httpx.post(f"{srv.http}/api/v1/speak", json={"text": "Load now."}, timeout=60).status_code == 200
    assert httpx.get(f"{srv.http}/ready").status_code == 200


def test_the_agent_line_follows_the_room():
    room = Capacity(accepting=True, shutting_down=False, engine_slots=8, free_slots=2, sessions=1, max_sessions=64)
    assert room.agent_reply() == "up ready 25%\n"  # the scarcer of slots (2/8) and places (63/64)
    full = Capacity(accepting=True, shutting_down=False, engine_slots=8, free_slots=0, sessions=64, max_sessions=64)
    assert full.agent_reply() == "up ready 1%\n"
    leaving = Capacity(accepting=False, shutting_down=True, engine_slots=8, free_slots=8, sessions=3, max_sessions=64)
    assert leaving.agent_reply() == "drain\n"
