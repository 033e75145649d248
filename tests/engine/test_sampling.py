"""sampling.py on hand-made logits: repetition penalty, warping (temperature, top-k, top-p), greedy and
seeded choices, codebook-0 masks, and the static (pre-drawn noise) path against the eager one."""

import torch

from makima_tts.engine.sampling import (
    RowSampling,
    choose,
    choose_codebook0,
    draw_noise,
    repetition_penalty,
    warp,
)


def rows(n, *, temperature=1.0, top_k=0, top_p=1.0, draw=True, generators=None, noise=None, k_max=None,
         any_top_p=None):
    """RowSampling for n rows with the same settings (lists allowed per row)."""
    def per_row(value, dtype):
        return torch.tensor(value if isinstance(value, list) else [value] * n, dtype=dtype)

    top_k_t, top_p_t = per_row(top_k, torch.long), per_row(top_p, torch.float32)
    draw_t = per_row(draw, torch.bool)
    return RowSampling(
        temperature=per_row(temperature, torch.float32), top_k=top_k_t, top_p=top_p_t, draw=draw_t,
        k_max=int(top_k_t.max()) if k_max is None else k_max,
        any_top_p=bool((top_p_t < 1).any()) if any_top_p is None else any_top_p,
        any_draw=bool(draw_t.any()) or noise is not None, generators=generators, noise=noise,
    )


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_scores():
    scores = torch.tensor([[2.0, -2.0, 1.0, -1.0], [2.0, -2.0, 1.0, -1.0]])
    seen = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = repetition_penalty(scores, seen, torch.tensor([2.0, 2.0]))
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0], [2.0, -2.0, 1.0, -1.0]]


def test_temperature_divides_scores():
    out = warp(torch.tensor([[1.0, -2.0, 4.0]]), rows(1, temperature=0.5))
    assert out.tolist() == [[2.0, -4.0, 8.0]]


def test_top_k_keeps_ties_at_the_kth_value():
    scores = torch.tensor([[3.0, 1.0, 3.0, 0.0, 3.0], [3.0, 1.0, 3.0, 0.0, 3.0]])
    out = warp(scores, rows(2, top_k=[2, 0], k_max=2))
    assert torch.isfinite(out[0]).tolist() == [True, False, True, False, True]  # three tied at the 2nd value
    assert torch.isfinite(out[1]).all()  # top_k 0 = off for that row


def test_top_p_keeps_the_nucleus_and_at_least_one_token():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = warp(probs.log(), rows(1, top_p=0.75))
    assert torch.isfinite(out[0]).tolist() == [True, True, False, False]  # 0.5 + 0.3 reach 0.75
    uniform = torch.zeros(1, 6)
    out = warp(uniform, rows(1, top_p=1e-6))
    assert int(torch.isfinite(out).sum()) == 1
    out = warp(uniform.repeat(2, 1), rows(2, top_p=[1e-6, 1.0]))
    assert int(torch.isfinite(out[1]).sum()) == 6  # top_p 1.0 = off for that row


def test_greedy_rows_take_the_argmax():
    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(choose(scores, rows(4, draw=False)), scores.argmax(-1))
    # greedy rows beside sampling rows stay argmax
    generators = [torch.Generator().manual_seed(1), None, torch.Generator().manual_seed(2), None]
    mixed = choose(scores, rows(4, draw=[True, False, True, False], top_k=5, generators=generators))
    assert mixed[1] == scores[1].argmax() and mixed[3] == scores[3].argmax()


def test_seeded_draws_repeat_per_row_generator_whatever_the_batch():
    scores = torch.randn(3, 100, generator=torch.Generator().manual_seed(3))

    def draw(seeds, batch_rows):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return choose(scores[batch_rows], rows(len(seeds), top_k=20, temperature=1.3, generators=generators))

    picks = [draw([7, 8, 9], [0, 1, 2]) for _ in range(2)]
    assert torch.equal(picks[0], picks[1])
    assert draw([8], [1])[0] == picks[0][1]  # row 1 alone draws what it drew beside the others
    many = torch.stack([draw([seed], [0])[0] for seed in range(30)])
    assert len(set(many.tolist())) > 1  # different seeds draw differently


def test_draw_is_argmax_of_probabilities_over_exponential_noise():
    scores = torch.randn(2, 30, generator=torch.Generator().manual_seed(4))
    noise = draw_noise(scores, [torch.Generator().manual_seed(5), None])
    assert noise[1].eq(1).all() and noise[0].gt(0).all() and not noise[0].eq(1).all()
    picked = choose(scores, rows(2, generators=[torch.Generator().manual_seed(5), None], draw=[True, False]))
    assert picked[0] == (scores[0].softmax(-1) / noise[0]).argmax() and picked[1] == scores[1].argmax()


def test_static_noise_path_equals_eager_path():
    """Static frames: worst-case control flow (top-k over the vocabulary, top-p always evaluated) and
    noise drawn beforehand from the same generators give the eager tokens."""
    vocab = 64
    scores = torch.randn(3, vocab, generator=torch.Generator().manual_seed(6))
    settings = dict(top_k=[5, 0, 3], top_p=[1.0, 0.7, 0.9], temperature=[0.8, 1.2, 1.0], draw=[True, True, False])
    for seed in range(5):
        eager_gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 100), None]
        eager = choose(scores, rows(3, generators=eager_gens, **settings))
        static_gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 100), None]
        noise = draw_noise(scores, static_gens)
        static = choose(scores, rows(3, noise=noise, k_max=vocab, any_top_p=True, **settings))
        assert torch.equal(eager, static)


def test_codebook0_blocks_eos_and_suppressed_ids():
    logits = torch.zeros(2, 8)
    logits[:, 5] = 10.0  # the end id, by far the best
    logits[:, 7] = 5.0  # a control id
    eos_mask = torch.zeros(8, dtype=torch.bool)
    eos_mask[5] = True
    suppress = torch.zeros(8, dtype=torch.bool)
    suppress[7] = True
    seen = torch.zeros(2, 8, dtype=torch.bool)
    token = choose_codebook0(logits, rows(2, draw=False), seen, torch.ones(2), torch.tensor([False, True]),
                             eos_mask, suppress)
    assert token[0] == 5  # allowed: the end token wins
    assert token[1] not in (5, 7)  # blocked end token, suppressed control id
