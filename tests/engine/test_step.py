"""`FrameStep.prefill_batch`: prompts packed into one talker pass fill each slot as a prefill alone does.

Alone, a whole prompt is the very computation the parity tests check (bit for bit). Packed beside
others, or cut into chunks, the matrix products have other shapes: the CPU BLAS picks its kernel and
splits the sums by the number of rows, so a row's dot products are added in another order and the
floats may differ in the last bits (we measured up to ~1e-4 on 1024-wide products); attention of a later
chunk runs under a mask over the cached keys instead of plain causal. So these tests ask for the same
codebook-0 choice and cache contents equal to float noise, and the engine tests (test_admission.py) ask
for identical codes.
"""

import pytest
import torch

from makima_tts.engine.prompt import build_prompt
from makima_tts.engine.slots import SlotPool, SlotSettings
from makima_tts.engine.step import FrameStep, PrefillPart
from makima_tts.engine.types import SamplingParams, SpeechRequest

NOISE = 1e-4  # float noise of a reordered fp32 sum at these sizes (see the module docstring)


def parts_for(tts, requests):
    greedy = SamplingParams.from_defaults(tts.config.generation, greedy=True)
    parts = []
    for slot, request in enumerate(requests):
        prompt = build_prompt(request, tts.config, tts.tokenizer, tts.talker, tts.code_predictor)
        generator = torch.Generator().manual_seed(slot)
        parts.append(PrefillPart(slot, prompt, SlotSettings(greedy, generator, 50, True, prompt.feed)))
    return parts


def prefill(tts, requests, schedule):
    """Prefill every request into its slot of a fresh pool; `schedule(parts)` yields the passes."""
    pool = SlotPool(tts, len(requests), 512)
    step = FrameStep(tts, pool)
    parts = parts_for(tts, requests)
    tokens = {}
    for chunks in schedule(parts):
        tokens.update(step.prefill_batch(chunks))
    return pool, tokens, [part.prompt.embeds.shape[1] for part in parts]


def alone(parts):
    for part in parts:
        yield [(part, part.remaining)]


def together(parts):
    yield [(part, part.remaining) for part in parts]


def in_chunks(size):
    def schedule(parts):
        while any(part.remaining for part in parts):
            yield [(part, min(size, part.remaining)) for part in parts if part.remaining]
    return schedule


def assert_same_slots(tts, a, b, lengths, exact):
    (pool_a, tokens_a), (pool_b, tokens_b) = a, b
    assert tokens_a == tokens_b
    check = torch.equal if exact else (lambda x, y: torch.allclose(x, y, atol=NOISE, rtol=0))
    for slot, length in enumerate(lengths):
        assert pool_a.host_lengths[slot] == pool_b.host_lengths[slot] == length
        assert check(pool_a.past_hidden[slot], pool_b.past_hidden[slot])
        with torch.inference_mode():  # the prefill logits codebook 0 of frame 0 was chosen from
            logits_a, logits_b = (tts.talker.logits(p.past_hidden[slot : slot + 1]) for p in (pool_a, pool_b))
        assert check(logits_a, logits_b)
        for cache_a, cache_b in ((pool_a.talker_kv.k, pool_b.talker_kv.k), (pool_a.talker_kv.v, pool_b.talker_kv.v)):
            assert check(cache_a[:, slot, :, :length], cache_b[:, slot, :, :length])
    assert torch.equal(pool_a.last_token, pool_b.last_token) and torch.equal(pool_a.lengths, pool_b.lengths)
    assert torch.equal(pool_a.occupied, pool_b.occupied) and bool(pool_a.occupied.all())


@pytest.mark.parametrize("model", ["base", "custom_voice"])
def test_packed_and_chunked_prefill_fill_slots_as_prefill_alone(model, tiny_tts, custom_tts, base_batch, custom_batch):
    tts, requests = (tiny_tts, base_batch) if model == "base" else (custom_tts, custom_batch)
    pool, tokens, lengths = prefill(tts, requests, alone)
    assert len(set(lengths)) > 3  # prompts of different lengths share the pass
    reference = (pool, tokens)
    for schedule in (together, in_chunks(7), in_chunks(2)):
        pool_b, tokens_b, _ = prefill(tts, requests, schedule)
        assert_same_slots(tts, reference, (pool_b, tokens_b), lengths, exact=False)


def test_a_prompt_alone_is_the_unbatched_prefill_bit_for_bit(tiny_tts, icl_voice):
    """One whole prompt through prefill_batch is exactly a plain causal talker pass over it (the parity path)."""
    request = SpeechRequest("Hello world. This is a tiny test of speech.", voice=icl_voice)
    pool, _, (length,) = prefill(tiny_tts, [request], alone)
    prompt = parts_for(tiny_tts, [request])[0].prompt
    plain = SlotPool(tiny_tts, 1, 512)
    with torch.inference_mode():
        hidden = tiny_tts.talker(prompt.embeds, range(length), plain.talker_kv.view(slice(0, 1), length), 0, None)
    assert torch.equal(pool.past_hidden[0], hidden[0, -1])
    assert torch.equal(pool.talker_kv.k[:, 0, :, :length], plain.talker_kv.k[:, 0, :, :length])


def test_chunked_prompt_leaves_its_slot_row_alone_until_its_last_chunk(tiny_tts, voice):
    """Frames run between chunks (their free rows write into the pool), so chunks fill a cache of their own."""
    pool = SlotPool(tiny_tts, 2, 512)
    step = FrameStep(tiny_tts, pool)
    (part,) = parts_for(tiny_tts, [SpeechRequest("Hello world. This is a tiny test of speech.", voice=voice,
                                                 text_mode="non_streaming")])
    before = pool.talker_kv.k[:, 0].clone()
    assert step.prefill_batch([(part, 5)]) == {}
    assert part.done == 5 and part.scratch is not None and pool.settings[0] is None
    assert torch.equal(pool.talker_kv.k[:, 0], before)
    chosen = step.prefill_batch([(part, part.remaining)])
    assert list(chosen) == [0] and part.scratch is None and pool.settings[0] is part.settings
