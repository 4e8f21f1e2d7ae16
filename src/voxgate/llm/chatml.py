"""ChatML rendering (Qwen2.5's chat template), done here so the prompt is byte-stable.

Each message is tokenized on its own, so the tokens of turn N are an exact
prefix of the tokens of turn N+1 and the KV cache can be reused up to the
new suffix. The role header and the content are tokenized separately for the
same reason: the generation prompt ends with ``<|im_start|>assistant\\n`` and
the next turn's history must reproduce exactly those tokens before the reply.
Content is tokenized with ``special=False``, so text that spells a control
token (``<|im_end|>``) stays text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from voxgate.llm.base import ChatMessage

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# text, parse_special -> token ids
Tokenize = Callable[[str, bool], list[int]]


def render_chatml(messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
    parts = [f"{IM_START}{m.role}\n{m.content}{IM_END}\n" for m in messages]
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


def tokenize_chatml(
    messages: Sequence[ChatMessage], tokenize: Tokenize, add_generation_prompt: bool = True
) -> list[int]:
    im_start = _single(tokenize(IM_START, True), IM_START)
    im_end = _single(tokenize(IM_END, True), IM_END)
    newline = tokenize("\n", False)
    ids: list[int] = []
    for m in messages:
        ids.append(im_start)
        ids += tokenize(f"{m.role}\n", False)
        ids += tokenize(m.content, False)
        ids.append(im_end)
        ids += newline
    if add_generation_prompt:
        ids.append(im_start)
        ids += tokenize("assistant\n", False)
    return ids


def _single(ids: list[int], text: str) -> int:
    if len(ids) != 1:
        raise ValueError(f"the model's vocabulary has no single token for {text!r}: not ChatML")
    return ids[0]
