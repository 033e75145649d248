"""Run the official `qwen-tts` package on a checkpoint (oracle only; needs the official virtual environment).

    OFFICIAL_PYTHON tests/parity/official_runner.py --model DIR --text T (--ref-audio WAV [--ref-text T] |
        --speaker NAME | --instruct I) [--language L] [--non-streaming] [--greedy | --seed N]
        [--max-new-tokens N] [--no-eos] --codes-out C.npy --wav-out W.npy

Writes the generated codes (int64 [frames, 16]) and the waveform the public API returned, and prints one
JSON line with timings. Never imported by the product or by tests; tests call it as a subprocess.
"""

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from qwen_tts import Qwen3TTSModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--ref-audio")
    ap.add_argument("--ref-text")
    ap.add_argument("--speaker")
    ap.add_argument("--instruct")
    ap.add_argument("--language", default="Auto")
    ap.add_argument("--non-streaming", action="store_true")
    ap.add_argument("--greedy", action="store_true")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--no-eos", action="store_true")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--codes-out")
    ap.add_argument("--wav-out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    tts = Qwen3TTSModel.from_pretrained(args.model, dtype=getattr(torch, args.dtype), device_map=args.device)
    cuda = args.device.startswith("cuda")
    load_s = time.perf_counter() - t0
    captured = {}
    original = tts.model.generate

    def capture(*a, **k):
        out = original(*a, **k)
        captured["codes"] = out[0][0].cpu().numpy()
        return out

    tts.model.generate = capture
    # phase timings: talker call 0 is the prefill; speech_tokenizer.decode is the codec
    marks = {"talker_calls": [], "decode_s": 0.0}

    def talker_pre(module, args, kwargs):
        if cuda:
            torch.cuda.synchronize()
        marks["t"] = time.perf_counter()

    def talker_post(module, args, kwargs, out):
        if cuda:
            torch.cuda.synchronize()
        marks["talker_calls"].append(time.perf_counter() - marks["t"])

    tts.model.talker.register_forward_pre_hook(talker_pre, with_kwargs=True)
    tts.model.talker.register_forward_hook(talker_post, with_kwargs=True)
    decode = tts.model.speech_tokenizer.decode

    def timed_decode(*a, **k):
        t = time.perf_counter()
        out = decode(*a, **k)
        marks["decode_s"] += time.perf_counter() - t
        return out

    tts.model.speech_tokenizer.decode = timed_decode
    gen = {}
    if args.greedy:
        gen.update(do_sample=False, subtalker_dosample=False)
    if args.max_new_tokens:
        gen["max_new_tokens"] = args.max_new_tokens
    if args.no_eos:
        gen["eos_token_id"] = -1
    if args.seed is not None:
        torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.ref_audio:
        wav, sr = sf.read(args.ref_audio, dtype="float32")
        wavs, fs = tts.generate_voice_clone(
            text=args.text, language=args.language, ref_audio=(wav, sr), ref_text=args.ref_text,
            x_vector_only_mode=not args.ref_text, non_streaming_mode=args.non_streaming, **gen)
    elif args.speaker:
        wavs, fs = tts.generate_custom_voice(text=args.text, speaker=args.speaker, language=args.language,
                                             instruct=args.instruct, non_streaming_mode=args.non_streaming, **gen)
    else:
        wavs, fs = tts.generate_voice_design(text=args.text, instruct=args.instruct or "", language=args.language,
                                             non_streaming_mode=args.non_streaming, **gen)
    total_s = time.perf_counter() - t0
    if args.codes_out:
        np.save(args.codes_out, captured["codes"].astype(np.int64))
    if args.wav_out:
        np.save(args.wav_out, wavs[0].astype(np.float32))
    # VmHWM is this process's own peak (ru_maxrss may carry the parent's peak across fork + exec)
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    calls = marks["talker_calls"]
    frames = int(captured["codes"].shape[0])
    print(json.dumps({"load_s": load_s, "total_s": total_s, "frames": frames, "samples": int(wavs[0].shape[0]),
                      "sample_rate": fs, "prefill_s": calls[0] if calls else None,
                      "frame_s": sorted(calls[1:]) if len(calls) > 1 else [],
                      "decode_s": marks["decode_s"], "threads": torch.get_num_threads(),
                      "peak_rss_mb": hwm_kb / 1024,
                      "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}))


if __name__ == "__main__":
    main()
