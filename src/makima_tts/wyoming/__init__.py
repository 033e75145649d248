"""A Wyoming protocol TTS server (Home Assistant's voice pipeline) in front of makima-tts.

It is a bridge: each Wyoming connection gets one `makima_tts.client.SpeakClient` session on a running
server (`--url`), or on a server this process starts on a loopback port (`--model`). One text
(`synthesize`) or a text stream (`synthesize-start/-chunk/-stop`) becomes ONE utterance of protocol v1,
the stream through `speak{continue:true}` pieces, so its audio starts before the text ends.
"""
