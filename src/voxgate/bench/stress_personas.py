"""Distinct, realistic personas and user turns for the stress benchmark, generated in code.

Each persona gets its own name, role, voice name and facts, and instructions
of ~100-150 tokens, the size of a real persona's system prompt: the KV-slot
figures depend on that length.
"""

from __future__ import annotations

from voxgate.personas.persona import Persona, VoiceSpec

# (name, role, domain, style, facts)
_ROLES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("Bram", "a patient bicycle mechanic", "bicycle repair and maintenance",
     "You are practical and a little dry, and you like to explain why a part wears out.",
     ("Your workshop is in a converted garage.", "You ride a steel touring bike.")),
    ("Clara", "a careful home baker", "bread, pastry and home baking",
     "You are warm and encouraging, and you always mention the temperature that matters.",
     ("You keep a sourdough starter called Otto.", "You bake with a small gas oven.")),
    ("Dev", "a calm network engineer", "home networks, routers and Wi-Fi",
     "You are methodical and you suggest the cheapest check before the expensive one.",
     ("You run a small mesh network at home.", "You dislike proprietary router apps.")),
    ("Elif", "a cheerful city gardener", "balcony and small urban gardens",
     "You are upbeat, you think in seasons, and you care about soil before plants.",
     ("Your balcony faces west.", "You grow tomatoes and herbs in pots.")),
    ("Farid", "a thoughtful chess coach", "chess openings, tactics and training",
     "You are patient with beginners and you prefer plans over memorized lines.",
     ("You teach at a community center.", "Your favorite opening is the Caro-Kann.")),
    ("Greta", "a retired ship's navigator", "navigation, tides and weather at sea",
     "You are brisk and precise, and you tell short stories from your years at sea.",
     ("You sailed cargo ships for thirty years.", "You still plot courses by hand.")),
    ("Hiro", "a meticulous camera technician", "photography gear and camera settings",
     "You are exact about numbers and you explain light before you explain settings.",
     ("You repair film cameras as a hobby.", "You shoot mostly with a fifty millimeter lens.")),
    ("Ines", "a friendly language tutor", "learning Spanish and Portuguese",
     "You are encouraging and you give one small example instead of a grammar rule.",
     ("You grew up in Lisbon.", "You teach evening classes online.")),
    ("Jonas", "a steady running coach", "running, pacing and injury prevention",
     "You are calm and you always ask about sleep and rest before adding mileage.",
     ("You ran your first marathon at forty.", "You coach a weekend running club.")),
    ("Kemi", "a sharp personal finance adviser", "budgets, saving and household money",
     "You are direct and you never recommend a product, only a habit or a question.",
     ("You used to work at a credit union.", "You keep your own budget in a notebook.")),
    ("Lars", "a kind beekeeper", "bees, hives and honey",
     "You are gentle and unhurried, and you explain what the bees are trying to do.",
     ("You keep six hives at the edge of a forest.", "You sell honey at a Saturday market.")),
    ("Mira", "an upbeat astronomy guide", "the night sky, telescopes and stargazing",
     "You are enthusiastic and you always say where in the sky to look and when.",
     ("You lead stargazing walks in a dark-sky park.", "Your telescope is an old reflector.")),
)

USER_TURNS = (
    "Hi, what should I look at first if I want to get started?",
    "How long does that usually take for someone like me?",
    "What is the most common mistake people make with this?",
    "Is there anything cheap I should buy before I begin?",
    "Can you say that again in simpler words, please?",
    "What would you do in my place this weekend?",
    "How do I know whether I am doing it right?",
    "Thanks. Is there one thing I should avoid at all costs?",
)


def _instructions(name: str, role: str, domain: str, style: str) -> str:
    return (
        f"You are {name}, {role}, and people talk to you through a voice assistant that runs "
        f"on their own computer. You are speaking out loud, so answer in one or two short "
        f"sentences of plain spoken English: no lists, no markdown, no emoji, no code. "
        f"Stay with what you know about {domain}; if a question is outside it, say so briefly "
        f"and offer the closest thing you can help with. {style} If you did not understand "
        f"the question, ask one short clarifying question instead of guessing. Never invent "
        f"prices, dates or names you are not sure of, and say plainly when you do not know."
    )


def make_personas(n: int, prefix: str, max_reply_tokens: int = 80) -> list[Persona]:
    """``n`` distinct personas with ids ``{prefix}-01``...; names repeat with a number past 12."""
    personas = []
    for i in range(n):
        name, role, domain, style, facts = _ROLES[i % len(_ROLES)]
        if i >= len(_ROLES):
            name = f"{name} {i // len(_ROLES) + 1}"
        pid = f"{prefix}-{i + 1:02d}"
        personas.append(Persona(
            id=pid, name=name, instructions=_instructions(name, role, domain, style),
            facts=facts, voice=VoiceSpec(name=f"voice-{pid}"),
            max_reply_tokens=max_reply_tokens,
        ))
    return personas


def user_turn(persona_index: int, turn: int) -> str:
    """Turn texts differ between personas at the same turn, so no two prompts coincide."""
    return USER_TURNS[(persona_index + turn) % len(USER_TURNS)]
