"""Tiered prompt assembly: stable text first, so each turn prefills only its new suffix."""

from voxgate.prompt.assembler import AssembledPrompt, PromptAssembler
from voxgate.prompt.cache import CompositionCache
from voxgate.prompt.tiers import PromptSource, Tier

__all__ = ["AssembledPrompt", "CompositionCache", "PromptAssembler", "PromptSource", "Tier"]
