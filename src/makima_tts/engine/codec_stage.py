"""The engine's codec side: one streaming codec state row per slot, turning frames of codes into audio.

Used only by the engine's codec thread, which runs beside the generation thread: while the talker and
code predictor make frame k+1 (memory-bound), the codec decodes frame k (compute-bound).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.codec import CodecState


def _first_rows(state: CodecState, n: int) -> CodecState:
    """A view of rows [0, n) of a codec state (the codec updates its state in place)."""
    return CodecState([t[:n] for t in state.conv], [k[:n] for k in state.keys], [v[:n] for v in state.values],
                      state.pos[:n])


class CodecStage:
    def __init__(self, tts, slots: int):
        self.tts = tts
        self.state = tts.codec.new_state(slots, device=tts.device, dtype=tts.dtype)
        self.codebook_size = tts.config.codec.decoder.codebook_size

    @torch.inference_mode()
    def start(self, slot: int, ref_codes: torch.Tensor | None) -> None:
        """A new utterance in `slot`: silence, or (ICL) the state right after its reference codes."""
        self.state.reset_rows([slot])
        if ref_codes is not None:
            self.state.copy_row_from(slot, self.tts.codec_prefix_state(ref_codes), 0)

    @torch.inference_mode()
    def decode(self, frame: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        """frame [n, 16] (rows 0..n-1 of the slots) -> (audio [n, 1920] float32, rejected rows).

        A row holding an id outside the codebook [0, codebook_size) is rejected: it is decoded as
        silence (code 0) so that the other rows' audio is unaffected, and its slot is returned so that
        the engine fails that utterance alone. The check runs on the device; its answer is read with
        the audio (no extra sync)."""
        valid = ((frame >= 0) & (frame < self.codebook_size)).all(dim=1)  # [n]
        codes = frame * valid[:, None]
        audio = self.tts.codec.decode_step(codes[:, :, None], _first_rows(self.state, frame.shape[0]))
        audio, valid = audio.cpu().numpy(), valid.cpu().numpy()
        return audio, [int(row) for row in np.flatnonzero(~valid)]
