"""Command line: `makima-tts serve | say | speak | wyoming | make-voice | make-tiny-model`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="Hub id (e.g. Qwen/Qwen3-TTS-12Hz-0.6B-Base) or local directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--device", default="cpu", help="cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="makima-tts", description="Streaming Qwen3-TTS 12Hz server and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP/WebSocket server (settings from TTS_* environment)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--model", default=None, help="overrides TTS_MODEL_ID")

    say = sub.add_parser("say", help="synthesize TEXT into a WAV file, streaming frames as they are made")
    say.add_argument("text")
    _add_model_args(say)
    voice = say.add_mutually_exclusive_group()
    voice.add_argument("--ref-audio", help="reference clip to clone (Base models)")
    voice.add_argument("--voice-prompt", help="a voice saved by `makima-tts make-voice`")
    voice.add_argument("--speaker", help="a CustomVoice speaker name")
    say.add_argument("--ref-text", help="transcript of --ref-audio (ICL cloning); without it x-vector only")
    say.add_argument("--language", default="auto")
    say.add_argument("--instruct", default=None, help="voice/style instruction (VoiceDesign, CustomVoice 1.7B)")
    say.add_argument("--text-mode", choices=["streaming", "non-streaming"], default=None)
    pick = say.add_mutually_exclusive_group()
    pick.add_argument("--greedy", action="store_true", help="official do_sample=False, subtalker_dosample=False")
    pick.add_argument("--seed", type=int, default=None)
    say.add_argument("--max-frames", type=int, default=None)
    say.add_argument("--no-eos", action="store_true", help="ignore the end token: exactly --max-frames frames")
    say.add_argument("-o", "--output", required=True, help="output WAV (24 kHz, float32)")
    say.add_argument("--codes-out", default=None, help="save the codes as int64 [frames, 16] .npy")

    from .client.command import add_arguments as add_speak_arguments
    from .wyoming.command import add_arguments as add_wyoming_arguments

    add_speak_arguments(sub.add_parser("speak", help="speak TEXT through a running server (the Python client)"))
    add_wyoming_arguments(sub.add_parser("wyoming", help="a Wyoming protocol TTS server (Home Assistant)"))

    make_voice = sub.add_parser("make-voice", help="clone a voice once and save its prompt for --voice-prompt")
    _add_model_args(make_voice)
    make_voice.add_argument("--ref-audio", required=True)
    make_voice.add_argument("--ref-text", default=None)
    make_voice.add_argument("-o", "--output", required=True)

    tiny = sub.add_parser("make-tiny-model", help="write a small random checkpoint in the official layout")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--kind", default="base", choices=["base", "custom_voice", "voice_design"])
    tiny.add_argument("--size", default="tiny", choices=["tiny", "0.6b"],
                      help="0.6b: the full 0.6B shapes with random weights (for benchmarks)")
    return parser


def _voice(args, tts):
    from .audio import load_audio
    from .voice_prompt import VoicePrompt

    if args.voice_prompt:
        return VoicePrompt.load(args.voice_prompt)
    if args.ref_audio:
        wav, sr = load_audio(args.ref_audio)
        return tts.create_voice_prompt(wav, sr, args.ref_text)
    if args.ref_text:
        raise SystemExit("--ref-text needs --ref-audio")
    return None


def cmd_say(args) -> int:
    import numpy as np
    import soundfile as sf

    from .engine.engine import Engine
    from .engine.types import AudioFrame, SamplingParams, SpeechRequest
    from .model.tts import TTSModel

    if args.no_eos and args.max_frames is None:
        raise SystemExit("--no-eos needs --max-frames")
    tts = TTSModel.load(args.model, device=args.device, dtype=args.dtype)
    request = SpeechRequest(
        text=args.text, language=args.language, voice=_voice(args, tts), speaker=args.speaker,
        instruct=args.instruct, text_mode=args.text_mode.replace("-", "_") if args.text_mode else None,
        sampling=SamplingParams.from_defaults(tts.config.generation, greedy=args.greedy),
        seed=args.seed, max_frames=args.max_frames, stop_on_eos=not args.no_eos,
    )
    engine = Engine(tts, max_streams=1)
    codes, first_audio = [], None
    start = time.perf_counter()
    with sf.SoundFile(args.output, "w", samplerate=tts.sample_rate, channels=1, subtype="FLOAT") as wav:
        for event in engine.generate(request):
            if isinstance(event, AudioFrame):
                first_audio = first_audio or time.perf_counter() - start
                wav.write(event.audio)
                wav.flush()
                codes.append(event.codes)
    elapsed = time.perf_counter() - start
    engine.close()
    if event.error:
        print(f"error: {event.error}", file=sys.stderr)
        return 1
    if args.codes_out:
        np.save(args.codes_out, np.asarray(codes, dtype=np.int64).reshape(-1, tts.config.talker.num_code_groups))
    audio_s = len(codes) * tts.frame_samples / tts.sample_rate
    ttfa = f"{first_audio * 1000:.0f} ms" if first_audio else "n/a"
    rtf = f"{elapsed / audio_s:.3f}" if audio_s else "n/a"
    note = " (truncated at the frame budget)" if event.truncated else ""
    print(f"{len(codes)} frames, {audio_s:.2f} s of audio{note}; time to first audio {ttfa}; "
          f"real-time factor {rtf}; wrote {args.output}", file=sys.stderr)
    return 0


def cmd_make_voice(args) -> int:
    from .model.tts import TTSModel

    tts = TTSModel.load(args.model, device=args.device, dtype=args.dtype)
    prompt = _voice(args, tts)
    prompt.save(args.output)
    print(f"saved a {prompt.mode} voice to {args.output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from .server.run import serve

            serve(args.host, args.port, args.model)
            return 0
        if args.command == "say":
            return cmd_say(args)
        if args.command == "speak":
            from .client.command import run as run_speak

            return run_speak(args)
        if args.command == "wyoming":
            from .wyoming.command import run as run_wyoming

            return run_wyoming(args)
        if args.command == "make-voice":
            return cmd_make_voice(args)
        from .tiny import build_tiny_checkpoint

        out = build_tiny_checkpoint(Path(args.dir), seed=args.seed, kind=args.kind, size=args.size)
        print(f"wrote a random {args.size} {args.kind} checkpoint to {out}", file=sys.stderr)
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI reports every failure as one readable line
        from .audio import AudioError
        from .engine.prompt import PromptError
        from .hub import ModelNotFoundError
        from .weights import WeightsError

        if isinstance(exc, (ModelNotFoundError, WeightsError, PromptError, AudioError, ValueError, FileNotFoundError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
