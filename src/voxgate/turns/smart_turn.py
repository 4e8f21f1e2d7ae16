"""Smart Turn v3.2: a learned end-of-turn classifier on the audio itself (optional).

The model (Daily's smart-turn v3.2, ONNX, BSD-2-Clause; fetched by
``voxgate models assemble``, see ``voxgate.models.smart_turn_asset``) is a
Whisper-encoder classifier. Its input contract, read from the ONNX graph and
from pipecat 1.14.0's reference code:

- ``input_features``: float32 ``(batch, 80, 800)``, the Whisper log-mel
  spectrogram of exactly 8 s of 16 kHz audio (n_fft 400, hop 160, 80 Slaney
  mel bins, last STFT frame dropped, clamped to max - 8, then (x + 4) / 4);
- the 8 s are the LAST 8 s of the turn so far; shorter audio is zero-padded
  at the START, so the end of speech always sits at the right edge;
- before the spectrogram the padded 8 s waveform is normalised to zero mean
  and unit variance (variance + 1e-7);
- output ``logits``: float32 ``(batch, 1)``, already a sigmoid: the
  probability that the turn is complete (pipecat's threshold is 0.5).

faster-whisper's ``FeatureExtractor`` computes the same log-mel (same Slaney
mel filters, periodic Hann window, reflect-padded framing), in float32 where
pipecat's numpy port of transformers' extractor uses float64: checked against
that reference on tests/data speech, the features differ by at most 1e-5 and
the model's probabilities are identical.

Sessions opt in with ``"smart_turn": true``: the turn machine then asks for a
score at every pause (``ScoreTurn``), and a complete-looking transcript whose
audio scores below 0.5 waits ``endpoint_mid_ms`` instead of the minimum
(``Endpointer.delay_ms``). Off by default: ``voxgate bench endpointing`` and
``voxgate bench latency --ablate`` measure why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from voxgate.audio.pcm import FloatArray
from voxgate.onnx_options import session_options

RATE = 16000
WINDOW_S = 8
WINDOW = RATE * WINDOW_S  # 128000 samples
N_MELS = 80
N_FRAMES = WINDOW // 160  # 800
THRESHOLD = 0.5
_VARIANCE_EPS = 1e-7


def fit_window(audio: FloatArray) -> FloatArray:
    """The last 8 s of ``audio``, zero-padded at the start to exactly 8 s."""
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)[-WINDOW:]
    if samples.size == WINDOW:
        return samples
    out = np.zeros(WINDOW, dtype=np.float32)
    out[WINDOW - samples.size :] = samples
    return out


def normalise(window: FloatArray) -> FloatArray:
    """Zero mean, unit variance over the whole (padded) window, in float32."""
    centred = window - window.mean(dtype=np.float32)
    scale = np.sqrt(window.var(dtype=np.float32) + np.float32(_VARIANCE_EPS))
    out: FloatArray = (centred / scale).astype(np.float32)
    return out


class SmartTurn:
    """One ONNX session on one thread; ``predict`` is synchronous (about 50 ms on one core)."""

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        if model_path is None:
            from voxgate.models.smart_turn_asset import verify_smart_turn

            model_path = verify_smart_turn()
        options = session_options(threads)
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session: Any = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._mel = FeatureExtractor(feature_size=N_MELS, sampling_rate=RATE, chunk_length=WINDOW_S)

    def features(self, audio: FloatArray) -> FloatArray:
        """``(1, 80, 800)`` float32 model input for the turn so far (16 kHz mono float)."""
        log_mel = self._mel(normalise(fit_window(audio)), padding=0)
        assert log_mel.shape == (N_MELS, N_FRAMES), log_mel.shape
        return np.asarray(log_mel, dtype=np.float32)[np.newaxis]

    def predict(self, audio: FloatArray) -> float:
        """Probability (0..1) that the speaker has finished the turn at the end of ``audio``."""
        outputs = self._session.run(None, {self._input: self.features(audio)})
        return float(np.asarray(outputs[0]).reshape(-1)[0])

    def is_complete(self, audio: FloatArray, threshold: float = THRESHOLD) -> bool:
        return self.predict(audio) > threshold


class SmartTurnScorer:
    """Smart Turn for sessions: scores a pause's audio on its own thread, off the loop.

    It does not take the compute gate: one call is ~50 ms on one thread, and it runs
    at the pause next to the decode, which it must not queue behind.
    """

    name = "smart-turn-v3.2"

    def __init__(self, model: SmartTurn) -> None:
        from voxgate.engine_thread import EngineThread

        self._model = model
        self._thread = EngineThread("smart-turn")

    async def score(self, audio: FloatArray) -> float:
        """Probability that the turn ends with ``audio``."""
        return await self._thread.run(lambda: self._model.predict(audio))

    async def close(self) -> None:
        self._thread.shutdown()


def load_scorer() -> SmartTurnScorer | None:
    """Smart Turn if set-up fetched it (voxgate models assemble), else None."""
    from voxgate.models.assets import MissingModelError

    try:
        return SmartTurnScorer(SmartTurn())
    except MissingModelError:
        return None
