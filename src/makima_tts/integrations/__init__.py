"""Voice-agent framework plugins built on `makima_tts.client`.

- `makima_tts.integrations.pipecat.MakimaTTSService` (extra `makima-tts[pipecat]`)
- `makima_tts.integrations.livekit.MakimaTTS` (extra `makima-tts[livekit]`)

Each module imports its framework at import time; this package imports neither.
"""
