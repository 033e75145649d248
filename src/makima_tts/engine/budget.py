"""How many frames an utterance may run before it is cut (`Finished.truncated`).

Without an explicit `max_frames`, the budget follows the text: 6 frames (480 ms) per text token plus
3 s, which is well above natural speech (about 3 frames per token) yet stops a model that never emits
its end token. A hard cap and the talker's context size bound it in every case.
"""

from __future__ import annotations

from .prompt import Prompt, PromptError

FRAMES_PER_TOKEN = 6
EXTRA_FRAMES = 38


def frame_budget(requested: int | None, prompt: Prompt, cap: int, max_context: int) -> int:
    room = max_context - prompt.embeds.shape[1] - 1
    if room < 1:
        raise PromptError(
            f"the text is too long for one utterance (its prompt needs {prompt.embeds.shape[1]} positions, "
            f"the limit is {max_context}); split it into shorter pieces"
        )
    if requested is not None:
        if requested < 1:
            raise PromptError("max_frames must be at least 1")
        if requested > room:
            raise PromptError(f"max_frames={requested} does not fit: at most {room} frames for this prompt")
        return requested
    return max(1, min(cap, room, EXTRA_FRAMES + FRAMES_PER_TOKEN * prompt.text_tokens))
