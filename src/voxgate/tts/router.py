"""Several TTS engines behind one TTSEngine: dispatch by voice, deliver at one rate.

A session sends audio at one sample rate (``output_sample_rate`` in its
welcome), but Piper speaks at 22 050 Hz and Kokoro at 24 000 Hz. The
router wraps every engine that is not at the output rate in a
``ResamplingTTS`` and picks the engine by ``VoiceSpec.engine``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import numpy as np

from voxgate.audio.pcm import Int16Array, resample
from voxgate.models.assets import KOKORO_FIX, MissingModelError
from voxgate.personas.persona import Persona, VoiceSpec
from voxgate.scheduler import ComputeGate, PriorityLike
from voxgate.tts.base import TTSEngine, TTSError

log = logging.getLogger("voxgate.tts")

# What to tell the user when a persona asks for an engine that is not loaded.
_INSTALL_HINT = {"kokoro": f"Kokoro is not installed (fix: {KOKORO_FIX})"}


class ResamplingTTS:
    """Deliver ``engine``'s audio at ``rate``.

    A clause is resampled whole (soxr, ~1 ms per second of audio): clauses
    start and end near silence, so the joins between them do not click.
    """

    def __init__(self, engine: TTSEngine, rate: int) -> None:
        self.engine = engine
        self.sample_rate = rate
        self.name = f"{engine.name}@{rate}"

    async def synthesize(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        pcm = await self.engine.synthesize(text, voice, priority)
        if self.engine.sample_rate == self.sample_rate or len(pcm) == 0:
            return pcm
        samples = pcm.astype(np.float32) / 32768.0
        out = resample(samples, self.engine.sample_rate, self.sample_rate)
        return (np.clip(out, -1.0, 1.0) * 32767.0).astype(np.int16)

    async def warm(self) -> None:
        await self.engine.warm()

    async def close(self) -> None:
        await self.engine.close()


class VoiceRouter:
    """A TTSEngine that hands each voice to the engine named by ``voice.engine``."""

    name = "router"

    def __init__(self, engines: Mapping[str, TTSEngine], sample_rate: int | None = None,
                 missing: Mapping[str, str] | None = None) -> None:
        """``missing``: engine name -> why it is unavailable, reported when a voice asks for it.
        ``sample_rate`` defaults to the rate of the first engine."""
        if not engines:
            raise ValueError("VoiceRouter needs at least one engine")
        rate = sample_rate or next(iter(engines.values())).sample_rate
        self.sample_rate = rate
        self.engines: dict[str, TTSEngine] = {
            key: engine if engine.sample_rate == rate else ResamplingTTS(engine, rate)
            for key, engine in engines.items()
        }
        self.missing = dict(missing or {})

    def engine_for(self, voice: VoiceSpec) -> TTSEngine:
        engine = self.engines.get(voice.engine)
        if engine is None:
            why = self.missing.get(voice.engine) or _INSTALL_HINT.get(voice.engine)
            loaded = ", ".join(sorted(self.engines))
            raise TTSError(f"voice {voice.label()} needs the {voice.engine!r} TTS engine, "
                           f"which is not loaded (loaded: {loaded})" + (f": {why}" if why else ""))
        return engine

    def check_voice(self, voice: VoiceSpec) -> None:
        """Raise TTSError now if ``voice`` cannot be spoken (engine missing, unknown style)."""
        engine = self.engine_for(voice)
        inner = engine.engine if isinstance(engine, ResamplingTTS) else engine
        check = getattr(inner, "check_voice", None)
        if check is not None:
            check(voice)

    async def synthesize(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        return await self.engine_for(voice).synthesize(text, voice, priority)

    async def warm(self) -> None:
        for engine in self.engines.values():
            await engine.warm()

    async def close(self) -> None:
        await asyncio.gather(*(engine.close() for engine in self.engines.values()))


def voice_problem(tts: TTSEngine, voice: VoiceSpec) -> str | None:
    """Why ``tts`` cannot speak ``voice``, or None. Engines without ``check_voice`` pass."""
    check = getattr(tts, "check_voice", None)
    if check is None:
        return None
    try:
        check(voice)
    except TTSError as exc:
        return str(exc)
    return None


def build_tts(gate: ComputeGate, personas: Iterable[Persona], sample_rate: int | None = None,
              threads: int = 1) -> VoiceRouter:
    """Load the engines the personas' voices need.

    A missing optional engine (Kokoro) is logged and left out: personas using
    it fail when chosen, with the install command, and the others still work.
    ``sample_rate`` defaults to Piper's when Piper is loaded, so the default
    persona's audio is never resampled.
    """
    wanted = {p.voice.engine for p in personas} or {"piper"}
    engines: dict[str, TTSEngine] = {}
    missing: dict[str, str] = {}
    if "piper" in wanted:
        from voxgate.tts.piper_tts import PiperTTS

        engines["piper"] = PiperTTS(gate, threads=threads)
    if "kokoro" in wanted:
        try:
            from voxgate.tts.kokoro_tts import KokoroTTS

            engines["kokoro"] = KokoroTTS(gate, threads=threads)
        except MissingModelError as exc:
            log.warning("Kokoro voices unavailable: %s", exc)
            missing["kokoro"] = str(exc)
    if not engines:
        raise MissingModelError("no TTS engine could be loaded: " + "; ".join(missing.values()))
    return VoiceRouter(engines, sample_rate, missing)
