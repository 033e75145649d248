"""Concurrent WebSocket sessions whose utterances end on the end token at different times (the `base_eos`
checkpoint, as real weights do): nobody's utterance fails when another one ends first."""

from __future__ import annotations

import asyncio

from server_helpers import Client, run

SESSIONS = 4
UTTERANCES = 6  # per session, one after another


async def speak_all(url: str, session: int) -> list[tuple[dict, int]]:
    """Every utterance of one session: (terminal, binary audio messages received for it)."""
    client = await Client.open(url, subprotocols=["tts.v1"])
    await client.recv_json("ready")
    results = []
    for k in range(UTTERANCES):
        uid = f"s{session}-u{k}"
        if k % 3 == 2:  # streaming text: the utterance is opened, then closed by its last piece
            await client.send(type="speak", utteranceId=uid, text=f"Session {session} says ", **{"continue": True})
            await client.send(type="speak", utteranceId=uid, text=f"sentence {k}.", **{"continue": False})
        else:
            await client.send(type="speak", utteranceId=uid, text=f"Session {session}, sentence {k}, hello there.")
        terminal, seen = await client.until_terminal(uid)
        results.append((terminal, sum(isinstance(m, bytes) for m in seen)))
    await client.send(type="stop")
    await client.recv_json("stopped")
    await client.close()
    return results


def test_concurrent_sessions_ending_on_the_end_token(start_server, eos_checkpoint_dir):
    server = start_server(model_id=str(eos_checkpoint_dir), max_frames=0, max_streams=4)
    server.wait_loaded()

    async def main():
        return await asyncio.gather(*(speak_all(server.ws, s) for s in range(SESSIONS)))

    terminals = [t for session in run(main()) for t in session]
    kinds = [t["type"] for t, _ in terminals]
    assert kinds.count("error") == 0, [t for t, _ in terminals if t["type"] == "error"]
    assert kinds == ["complete"] * SESSIONS * UTTERANCES
    ended_by_eos = [t for t, _ in terminals if not t["truncated"]]
    assert len(ended_by_eos) >= SESSIONS * UTTERANCES // 2  # the end token, at different frames
    assert len({t["frames"] for t in ended_by_eos}) >= 3
    for terminal, audio_messages in terminals:
        assert terminal["frames"] == audio_messages >= 1
