"""Stable tokens from trickled text: any split of a text gives exactly the ids of the whole text."""

import random

import pytest

from makima_tts.text_stream import StableTokens, StreamedText

TEXTS = [
    "Hello world. This is a tiny test of speech.",
    "It's 3:45pm — we'll meet at 221B Baker St., okay?!",
    "Numbers: 1234567890, 3.14159 and -42; dates 2026-12-02.",
    "Whitespace   runs\t\tand\n\nnew lines \n  right here   ",
    "你好，世界！这是一个测试。我们明天见。",
    "日本語のテキストとEnglishが混ざった文です。",
    "Emoji 🎉🎉 party 👩‍👩‍👧 family 🇯🇵 flag ✨!",
    "Café naïve résumé — e\u0301 vs é, a\u0316\u0301 marks.",
    "iPhone McDonald's HTTPServer camelCase snake_case",
    "   leading spaces and trailing ones   ",
    "\nstarts with a new line",
    "Ünïcödé ÀÉÎÕÜ ﬁ ligature and ＦＵＬＬ width",
]


def random_pieces(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=rng.randint(0, min(len(text) - 1, 12))))
    if rng.random() < 0.3:  # one character at a time
        cuts = list(range(1, len(text)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def trickled(tokenizer, pieces: list[str]) -> list[int]:
    stream = StableTokens(tokenizer)
    ids = []
    for piece in pieces:
        ids += stream.push(piece)
        assert stream.pending == tokenizer.normalize(stream.pending)  # only normalised text is held
    return ids + stream.close()


@pytest.mark.parametrize("index", range(len(TEXTS)))
def test_any_split_gives_the_ids_of_the_whole_text(tiny_tts, index):
    tokenizer, text = tiny_tts.tokenizer, TEXTS[index]
    rng = random.Random(index)
    whole = tokenizer.encode(text)
    for _ in range(40):
        pieces = random_pieces(text, rng)
        assert trickled(tokenizer, pieces) == whole, pieces


@pytest.mark.parametrize("index", range(len(TEXTS)))
def test_streamed_prompt_text_has_the_role_and_text_ids_of_the_whole_text(tiny_tts, index):
    tokenizer, text = tiny_tts.tokenizer, TEXTS[index]
    rng = random.Random(100 + index)
    assistant = tokenizer.assistant_ids(text)
    for _ in range(20):
        streamed, ids = StreamedText(tokenizer), []
        for piece in random_pieces(text, rng):
            ids += streamed.push(piece)
            assert streamed.ids == ids
        ids += streamed.close()
        assert (streamed.role, ids, streamed.ids) == (assistant[:3], assistant[3:-5], assistant[3:-5])


def test_ids_are_committed_before_the_text_ends(tiny_tts):
    stream = StableTokens(tiny_tts.tokenizer)
    assert stream.push("Hello") == []  # the word may still grow
    first = stream.push(" wor")
    assert first == tiny_tts.tokenizer.encode("Hello")
    assert stream.pending == " wor"
    assert first + stream.push("ld") + stream.close() == tiny_tts.tokenizer.encode("Hello world")
