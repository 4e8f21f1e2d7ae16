"""The default offline models: where each one is, and how the chunked LLM is assembled."""

from voxgate.models.assets import (
    DEFAULT_LLM,
    LLM_MODELS,
    CorruptModelError,
    LLMModel,
    MissingModelError,
    assemble_llm,
    cache_dir,
    kokoro_available,
    llm_choice,
    llm_model_path,
    piper_voice_paths,
    silero_vad_available,
    silero_vad_model_path,
    verify_llm,
    whisper_model_dir,
)

__all__ = [
    "DEFAULT_LLM",
    "LLM_MODELS",
    "CorruptModelError",
    "LLMModel",
    "MissingModelError",
    "assemble_llm",
    "cache_dir",
    "kokoro_available",
    "llm_choice",
    "llm_model_path",
    "piper_voice_paths",
    "silero_vad_available",
    "silero_vad_model_path",
    "verify_llm",
    "whisper_model_dir",
]
