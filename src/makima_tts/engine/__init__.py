"""The generation engine: many utterances at once, one frame per step (engine.py describes the threads)."""
