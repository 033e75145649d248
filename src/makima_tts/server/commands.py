"""What each client message does to a session (`Session` dispatches here, in order of arrival):
`start` and the query defaults (the session's audio format, voice, language), `speak` (a new utterance,
or more text for an open one), `cancel`, `flush`, `stop`, `ping`; and the `ready` greeting.

Control messages are answered at once; the audio itself is the player's work (session.py).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from ..voices import VoiceError
from . import protocol as p
from .protocol import CloseCode
from .settings import AUDIO_TRANSPORTS, ENCODINGS, SAMPLE_RATES
from .speech_requests import check_voice, voice_error_code
from .utterances import AudioFormat, TextState, Utterance

if TYPE_CHECKING:
    from .session import Session


def ready(session: Session) -> dict[str, Any]:
    services, s = session.services, session.settings
    tts = services.models.tts
    voice = session.voice or s.default_voice
    voice_loaded = tts is not None and (
        tts.config.tts_model_type != "base" or services.voices.cached_prompt(voice, tts.fingerprint) is not None
    )
    fmt = session.format
    return p.dump(p.Ready(
        sessionId=session.id,
        replicaId=s.replica_id,
        voiceLoaded=voice_loaded,
        modelState=services.models.state,
        capabilities=p.Capabilities(
            languages=services.models.languages(),
            encodings=list(ENCODINGS),
            sampleRates=list(SAMPLE_RATES),
            audioTransports=list(AUDIO_TRANSPORTS),
            maxTextChars=s.max_text_chars,
            streamingTextInput=streams_session_text(session),
        ),
        audioFormat=p.AudioFormat(encoding=fmt.encoding, sampleRate=fmt.sample_rate),
        limits=p.Limits(maxMessageBytes=s.max_message_bytes, idleTimeoutS=s.idle_timeout_s),
    ))


def streams_session_text(session: Session) -> bool:
    """What `ready` says of continue:true text: streamed into one utterance by the session's model (Base
    voices take text in the streaming layout; CustomVoice and VoiceDesign whole texts), unless set off."""
    tts = session.services.models.tts
    model_type = tts.config.tts_model_type if tts is not None else None
    return session.settings.text_input == "stream" and model_type in ("base", None)


async def configure(session: Session, values: dict[str, Any]) -> tuple[str, str] | None:
    """Validate, then apply session settings; (code, message) of the first problem, if any."""
    fmt = session.format
    try:
        sample_rate = int(values.get("sampleRate", fmt.sample_rate))
    except (TypeError, ValueError):
        sample_rate = -1
    if sample_rate not in SAMPLE_RATES:
        return "UNSUPPORTED_FORMAT", f"sampleRate must be one of {', '.join(map(str, SAMPLE_RATES))}"
    encoding = values.get("encoding", fmt.encoding)
    if encoding not in ENCODINGS:
        return "UNSUPPORTED_FORMAT", f"encoding must be one of {', '.join(ENCODINGS)}"
    transport = values.get("audioTransport", fmt.transport)
    if transport not in AUDIO_TRANSPORTS:
        return "UNSUPPORTED_FORMAT", f"audioTransport must be one of {', '.join(AUDIO_TRANSPORTS)}"
    language = session.language
    if "language" in values:
        try:
            language = session.services.models.canonical_language(values["language"])
        except ValueError as exc:
            return "INVALID_MESSAGE", str(exc)
    voice = values.get("voice", session.voice)
    if voice is not None:
        try:
            await check_voice(session.services, voice)
        except VoiceError as exc:
            return voice_error_code(exc), exc.message
    session.format = AudioFormat(sample_rate, encoding, transport)
    session.voice, session.language = voice, language
    return None


async def start(session: Session, msg: p.Start) -> None:
    if session.queue.live():
        session.error("INVALID_STATE", "start is only allowed between utterances")
        return
    fields = {"sampleRate": msg.sampleRate, "encoding": msg.encoding, "audioTransport": msg.audioTransport,
              "voice": msg.voice, "language": msg.language}
    problem = await configure(session, {k: v for k, v in fields.items() if v is not None})
    if problem is not None:
        session.error(*problem)
        return
    fmt = session.format
    session.send(p.dump(p.Started(
        sampleRate=fmt.sample_rate,
        encoding=fmt.encoding,
        voice=session.voice or session.settings.default_voice,
        language=session.language or "auto",
        audioTransport=fmt.transport,
    )))


async def speak(session: Session, msg: p.Speak) -> None:
    s, queue = session.settings, session.queue
    uid = msg.utteranceId
    if uid is not None and not 1 <= len(uid) <= 64:
        session.error("INVALID_MESSAGE", "utteranceId must be 1-64 characters")
        return
    existing = queue.get(uid) if uid is not None else None
    if existing is not None:
        if existing.text is TextState.OPEN:
            extend(session, existing, msg.text, close=not msg.continue_)
        else:
            session.error("INVALID_STATE", f"utterance {uid!r} is already queued or playing")
        return
    uid = uid or queue.new_id(secrets.token_hex(3))

    def reject(code: str, message: str, **extra: Any) -> None:
        session.error(code, message, utterance_id=uid, rejected=True, **extra)

    if session.draining:
        reject("SERVER_BUSY" if session.services.shutting_down else "INVALID_STATE",
               "the session is stopping; no new utterances")
        return
    if not msg.continue_ and not msg.text.strip():
        reject("INVALID_TEXT", "text is empty")
        return
    if len(msg.text) > s.max_text_chars:
        reject("INVALID_TEXT", f"text is {len(msg.text)} characters; the limit is {s.max_text_chars}")
        return
    voice = msg.voice or session.voice or s.default_voice
    try:
        language = session.services.models.canonical_language(msg.language) if msg.language else session.language
        checked = await check_voice(session.services, voice)
    except ValueError as exc:
        reject("INVALID_MESSAGE", str(exc))
        return
    except VoiceError as exc:
        reject(voice_error_code(exc), exc.message)
        return
    models = session.services.models
    if not models.loaded:
        models.start_loading()
        if not s.queue_while_loading:
            reject("MODEL_LOADING", models.message, retryAfterMs=s.loading_retry_after_ms)
            return
    if len(queue) >= s.max_queued_utterances and msg.priority != "interrupt":
        reject("QUEUE_FULL", f"{len(queue)} utterances are queued; wait for some to finish")
        return
    # text OPEN until `extend` closes it (a whole `speak` at once), which queues the end marker
    utt = Utterance(id=uid, voice=voice, language=language, format=session.format, priority=msg.priority,
                    text=TextState.OPEN, incremental=msg.continue_, manifest=checked)
    if msg.priority == "interrupt":
        for other in queue.live():
            session.cancel(other, "interrupt")
    queue.add(utt)
    extend(session, utt, msg.text, close=not msg.continue_)


def extend(session: Session, utt: Utterance, text: str, close: bool) -> None:
    """Add text to `utt`; `close` ends its text."""
    limit = session.settings.max_text_chars
    if utt.chars + len(text) > limit:
        session.fail(utt, "INVALID_TEXT", f"utterance text exceeds {limit} characters")
        return
    utt.add_text(text)
    if close:
        utt.close_text()


def _named(session: Session, utterance_id: str | None, verb: str) -> Utterance | None:
    utt = session.queue.get(utterance_id)
    if utt is None:
        session.error("INVALID_STATE", f"no queued or playing utterance {utterance_id!r} to {verb}",
                      utterance_id=utterance_id)
    return utt


async def cancel(session: Session, msg: p.Cancel) -> None:
    """`playedMs` is the named utterance's; without a name, the current one's (the queued ones were not
    heard at all)."""
    if msg.utteranceId is None:
        current = session.queue.current
        for utt in session.queue.live():
            session.cancel(utt, "cancel", msg.playedMs if utt is current else 0.0)
    elif (utt := _named(session, msg.utteranceId, "cancel")) is not None:
        session.cancel(utt, "cancel", msg.playedMs)


async def flush(session: Session, msg: p.Flush) -> None:
    if msg.utteranceId is not None:
        utt = _named(session, msg.utteranceId, "flush")
        if utt is None:
            return
    else:
        live = session.queue.live()
        open_ = session.queue.open_text()
        utt = open_[-1] if open_ else (live[-1] if live else None)
        if utt is None:
            session.send(p.dump(p.Flushed(utteranceId=None, audioMs=0.0)))
            return
    utt.flush_text()


async def stop(session: Session, msg: p.Stop) -> None:
    reason = msg.reason or "user_requested"
    if msg.mode == "immediate":
        session.close_soon(reason, CloseCode.NORMAL)
        return
    session.drain(reason)


async def ping(session: Session, msg: p.Ping) -> None:
    session.send(p.dump(p.Pong(id=msg.id)))
