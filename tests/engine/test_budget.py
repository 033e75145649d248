"""budget.py: the frame budget of an utterance, exact numbers for each limit."""

import pytest
import torch

from makima_tts.engine.budget import EXTRA_FRAMES, FRAMES_PER_TOKEN, frame_budget
from makima_tts.engine.prompt import Prompt, PromptError
from makima_tts.engine.text_feed import TextFeed


def prompt(rows: int, text_tokens: int) -> Prompt:
    return Prompt(torch.zeros(1, rows, 4), TextFeed(torch.zeros, [], None, torch.zeros(4)), None, text_tokens)


def test_constants_are_the_documented_ones():
    assert (FRAMES_PER_TOKEN, EXTRA_FRAMES) == (6, 38)  # 480 ms per token + about 3 s


@pytest.mark.parametrize(
    "rows, tokens, cap, context, expected",
    [
        (20, 10, 1500, 4096, 98),  # 38 + 6 * 10
        (20, 0, 1500, 4096, 38),
        (20, 1, 1500, 4096, 44),
        (20, 400, 1500, 4096, 1500),  # 2438 frames, capped
        (20, 400, 3000, 4096, 2438),
        (50, 100, 1500, 200, 149),  # room in the context: 200 - 50 - 1
        (198, 100, 1500, 200, 1),
    ],
)
def test_budget_from_the_text(rows, tokens, cap, context, expected):
    assert frame_budget(None, prompt(rows, tokens), cap, context) == expected


def test_requested_budget_is_taken_as_is_when_it_fits():
    assert frame_budget(7, prompt(20, 10), 1500, 4096) == 7
    assert frame_budget(2000, prompt(20, 10), 1500, 4096) == 2000  # the cap bounds derived budgets only
    assert frame_budget(149, prompt(50, 10), 1500, 200) == 149


def test_requested_budget_errors():
    with pytest.raises(PromptError, match="at least 1"):
        frame_budget(0, prompt(20, 10), 1500, 4096)
    with pytest.raises(PromptError, match="at most 149 frames"):
        frame_budget(150, prompt(50, 10), 1500, 200)


def test_prompt_without_room_is_rejected():
    with pytest.raises(PromptError, match="needs 199 positions, the limit is 200"):
        frame_budget(None, prompt(199, 10), 1500, 200)
