"""voxgate: a local-first, real-time voice agent runtime."""

import os

# llama.cpp and CTranslate2 run OpenMP thread pools. With the default (active)
# wait policy their idle threads spin, and on a 2-core machine shared by STT,
# LLM and TTS the spinning starves whoever has real work (decode fell from
# ~20 to <1 tok/s under load). Set before any engine library is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
