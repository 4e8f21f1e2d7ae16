"""Command line: ``voxgate serve | converse | bench | eval | models | personas``.

Each command imports its module lazily so that ``voxgate --help`` and the
light commands start fast and do not load models.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    module_name, func_name = target.split(":")

    def run(args: argparse.Namespace) -> int:
        func: Callable[[argparse.Namespace], int] = getattr(import_module(module_name), func_name)
        return func(args)

    return run


def _counts(text: str) -> list[int]:
    """"2,4,8" -> [2, 4, 8]; parsed here so that --help stays free of heavy imports."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive counts like 2,4,8, got {text!r}")
    return counts


def _model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        choices=["smart", "fast"],
        default=None,
        help="embedded LLM: smart = Qwen2.5 1.5B (default), fast = 0.5B "
        "(default: $VOXGATE_MODEL, else smart)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 86400:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 86400, got {text!r}")
    return value


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected names like smart,fast, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxgate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the voice gateway (web client + WebSocket)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--persona", default="ada", help="default persona id")
    serve.add_argument("--personas-dir", default=None, help="extra persona TOML files")
    serve.add_argument(
        "--llm-url", default=None, help="OpenAI-compatible server instead of the embedded llama.cpp"
    )
    serve.add_argument("--llm-model", default=None, help="model name sent to --llm-url")
    serve.add_argument(
        "--llm-api-key",
        default=None,
        help="API key for --llm-url, sent as a Bearer token (default: $VOXGATE_LLM_API_KEY)",
    )
    serve.add_argument(
        "--llm-slots",
        type=_positive,
        default=None,
        help="llama.cpp's llama-server only: its --parallel slot count; each persona is "
        "pinned to a slot (id_slot, cache_prompt) so its prefix stays cached",
    )
    serve.add_argument(
        "--llm-vision",
        action="store_true",
        help="the --llm-url model sees: camera frames go to it as images, not descriptions "
        "(llama.cpp's server also says so itself in /props)",
    )
    serve.add_argument(
        "--llm-audio-in",
        action="store_true",
        help="the --llm-url model hears: each utterance goes to it as audio (input_audio), "
        "with no final transcription (llama.cpp's server also says so itself in /props)",
    )
    serve.add_argument(
        "--llm-audio-out",
        action="store_true",
        help="the --llm-url model speaks: replies are its own audio (modalities text+audio), "
        "nothing is synthesized",
    )
    serve.add_argument(
        "--llm-voice",
        default="alloy",
        help="with --llm-audio-out: the model's voice to speak in (default: alloy)",
    )
    _model_option(serve)
    serve.add_argument(
        "--token", default=None, help="session token (default: $VOXGATE_TOKEN or generated)"
    )
    serve.add_argument(
        "--no-token",
        action="store_true",
        help="accept WebSocket sessions without a token (tests, trusted loopback)",
    )
    serve.add_argument(
        "--no-token-on-network",
        action="store_true",
        help="allow --no-token with a --host other machines can reach (a trusted network)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="a web page origin allowed to open sessions, e.g. https://app.example (repeatable)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        help="a host name clients may use to reach this server besides IP addresses and "
        "localhost, e.g. voice.lan; .example.org allows its subdomains (repeatable)",
    )
    serve.add_argument(
        "--handshake-timeout",
        type=_seconds,
        default=10.0,
        help="close a WebSocket that sends no hello in this many seconds (default 10, 0: never)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=300.0,
        help="close a session that sends nothing for this many seconds (default 300, 0: never)",
    )
    serve.add_argument(
        "--metrics-token",
        default=None,
        help="a token for /metrics alone (default: $VOXGATE_METRICS_TOKEN); off loopback "
        "/metrics needs it or the session token",
    )
    serve.add_argument("--open", action="store_true", help="open the web client in a browser")
    serve.add_argument(
        "--trace", default=None, help="JSONL trace/metrics file (default runs/trace-*.jsonl)"
    )
    serve.add_argument(
        "--sequential", action="store_true", help="naive baseline: no overlap, no speculation"
    )
    serve.add_argument(
        "--trace-turn-events",
        action="store_true",
        help="also record every turn machine event in the trace (replayable in tests)",
    )
    serve.set_defaults(func=_lazy("voxgate.transport.server:cli_serve"))

    converse = sub.add_parser(
        "converse", help="stream a WAV to a server in real time, save the reply"
    )
    converse.add_argument("wav", nargs="+", help="one WAV per user turn")
    converse.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    converse.add_argument("--token", default=None)
    converse.add_argument("--persona", default=None)
    converse.add_argument("--out", default="reply.wav", help="reply audio (turn N appends -N)")
    converse.add_argument("--json", action="store_true", help="print results as JSON")
    converse.add_argument(
        "--barge-in-ms",
        type=float,
        default=None,
        help="start each next WAV this long after the reply's first audio, over the reply",
    )
    converse.add_argument(
        "--ignore-interrupted",
        action="store_true",
        help="keep collecting reply audio after `interrupted` (measures when the server stops)",
    )
    converse.set_defaults(func=_lazy("voxgate.client.converse:cli_converse"))

    bench = sub.add_parser("bench", help="benchmarks that print tables")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    latency = bench_sub.add_parser("latency", help="voice-to-voice latency per stage")
    latency.add_argument("--turns", type=int, default=20, help="turns per mode (p95 needs 20+)")
    latency.add_argument("--compare", action="store_true",
                         help="also run the sequential baseline first, in the same run")
    latency.add_argument("--ablate", action="store_true",
                         help="also run with each latency lever off, one at a time")
    latency.add_argument("--png", default=None, help="write a per-turn waterfall figure")
    latency.add_argument("--json", default=None, help="write the raw per-turn results")
    latency.add_argument("--trace", default=None, help="JSONL trace of the server side")
    latency.add_argument(
        "--speech-dir", default=None, help="folder with beckett.wav and clone-test.wav"
    )
    _model_option(latency)
    latency.add_argument(
        "--models",
        type=_names,
        default=None,
        help="compare embedded LLMs in one run, e.g. smart,fast (one server each; "
        "--compare/--ablate apply to each)",
    )
    latency.add_argument("--realtime", action="store_true",
                         help="also run the default through the OpenAI Realtime endpoint")
    latency.add_argument("--ablate-guard", action="store_true",
                         help="also run with the reply guard off")
    latency.add_argument("--tools", action="store_true",
                         help="instead: tool turns (clock, a slow lookup) beside plain ones, "
                         "speech end to holding line and to answer audio")
    latency.set_defaults(func=_lazy("voxgate.bench.latency:cli_latency"))

    endpointing = bench_sub.add_parser(
        "endpointing", help="text heuristic vs Smart Turn v3.2 on labelled pauses in speech"
    )
    endpointing.add_argument("--json", default=None, help="write the per-pause rows")
    endpointing.add_argument("--threshold", type=float, default=0.5,
                             help="Smart Turn probability above which a turn is finished")
    endpointing.add_argument("--trail-ms", type=int, default=200,
                             help="pause after each cut before deciding (default: min delay)")
    endpointing.add_argument("--no-synthetic", action="store_true",
                             help="real speech only (no Piper utterances)")
    endpointing.add_argument("--speech-dir", default=None, help="folder with the test speech")
    endpointing.set_defaults(func=_lazy("voxgate.bench.endpointing:cli_endpointing"))

    bargein = bench_sub.add_parser(
        "barge-in", help="talk over replies with a client that ignores `interrupted`"
    )
    bargein.add_argument("--turns", type=int, default=20, help="barge-ins per setting")
    bargein.add_argument(
        "--after-ms", type=float, default=600, help="talk over the reply this long after it starts"
    )
    bargein.add_argument("--trace", default=None, help="JSONL trace of the server side")
    bargein.add_argument("--speech-dir", default=None, help="folder with the test speech")
    bargein.set_defaults(func=_lazy("voxgate.bench.bargein:cli_bargein"))
    soak = bench_sub.add_parser(
        "soak", help="K concurrent sessions of real speech for T minutes: errors, p95, RSS growth"
    )
    soak.add_argument("--sessions", type=int, default=2, help="concurrent sessions (K)")
    soak.add_argument("--minutes", type=float, default=2.0, help="duration (T), at most 120")
    soak.add_argument(
        "--find-max",
        action="store_true",
        help="try K = 1, 2, ... until real time fails (p95 voice-to-voice > 3 s or a failed turn)",
    )
    soak.add_argument("--max-sessions", type=int, default=8, help="upper bound of --find-max")
    soak.add_argument("--warmup", type=float, default=30.0, help="seconds before RSS baseline")
    soak.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling period (s)")
    soak.add_argument("--json", default=None, help="write the raw results")
    soak.add_argument("--trace", default=None, help="JSONL trace of the server side")
    soak.add_argument(
        "--speech-dir", default=None, help="folder with beckett.wav and clone-test.wav"
    )
    soak.set_defaults(func=_lazy("voxgate.bench.soak:cli_soak"))
    churn = bench_sub.add_parser(
        "churn", help="many one-turn sessions one after another: RSS growth per 100 sessions"
    )
    churn.add_argument("--sessions", type=int, default=300, help="sessions in all")
    churn.add_argument("--warmup", type=int, default=20, help="sessions before the RSS baseline")
    churn.add_argument(
        "--release",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="trim the C heap after each session (the server's default)",
    )
    churn.add_argument(
        "--compare", action="store_true", help="run with and without --release, fresh processes"
    )
    _model_option(churn)
    churn.add_argument("--json", default=None, help="write the raw results")
    churn.add_argument("--trace", default=None, help="JSONL trace of the server side")
    churn.set_defaults(func=_lazy("voxgate.bench.churn:cli_churn"))
    vision = bench_sub.add_parser(
        "vision", help="camera: frame to description per part, voice-to-voice camera on/off"
    )
    vision.add_argument("--frames", type=int, default=30, help="frames to describe (p95: 20+)")
    vision.add_argument("--turns", type=int, default=20, help="turns per run (camera off, on)")
    vision.add_argument("--frames-only", action="store_true",
                        help="only the description timings (no server, no speech)")
    vision.add_argument("--trace", default=None, help="JSONL trace of the server side")
    _model_option(vision)
    vision.set_defaults(func=_lazy("voxgate.bench.vision:cli_vision"))
    routes = bench_sub.add_parser(
        "routes",
        help="routes by model capability (bridges, audio_in, audio_out) against a fake "
        "model server: STT/TTS calls per turn, voice-to-voice",
    )
    routes.add_argument("--turns", type=int, default=20, help="turns per route (p95: 20+)")
    routes.add_argument("--trace", default=None, help="JSONL trace of the server side")
    routes.set_defaults(func=_lazy("voxgate.bench.routes:cli_routes"))

    tools = bench_sub.add_parser(
        "tools", help="tool-call accuracy: the model calls its tools when it should, only then"
    )
    tools.add_argument("--model", default=None, choices=("smart", "fast"),
                       help="the embedded LLM: smart (1.5B, default) or fast (0.5B)")
    tools.add_argument("--no-intents", action="store_true",
                       help="only the model's own calls: no calls on the user's words (ablation)")
    tools.set_defaults(func=_lazy("voxgate.bench.tool_accuracy:cli_tools"))
    stress = bench_sub.add_parser("stress", help="N concurrent personas x M turns: substrate "
                                  "cost (fixtures), prefix reuse, switch TTFT, memory (real)")
    stress.add_argument("--personas", type=_counts, default=[2, 4, 8, 12],
                        help="persona counts N for the fixture phase (default 2,4,8,12)")
    stress.add_argument("--turns", type=int, default=4, help="turns M per persona (default 4)")
    stress.add_argument("--real", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the real model phase (default on)")
    stress.add_argument("--real-personas", type=_counts, default=[2, 4, 6],
                        help="persona counts for the real model phase (default 2,4,6)")
    stress.add_argument("--real-turns", type=int, default=None,
                        help="turns per persona on the real model (default: --turns)")
    stress.add_argument("--lockstep", action="store_true",
                        help="fixture sessions start together and stay in step (worst case)")
    stress.add_argument("--json", default=None, help="write the raw per-turn results")
    stress.set_defaults(func=_lazy("voxgate.bench.stress:cli_stress"))

    evaluate = sub.add_parser(
        "eval", help="conversation quality: scenarios through a real session, scored by rules"
    )
    _model_option(evaluate)
    evaluate.add_argument("--models", type=_names, default=None,
                          help="evaluate several embedded LLMs in one run, e.g. smart,fast")
    evaluate.add_argument("--persona", type=_names, default=["ada"],
                          help="persona(s) under test, e.g. ada,max (default ada)")
    evaluate.add_argument("--personas-dir", default=None, help="extra persona TOML files")
    evaluate.add_argument("--scenarios", default=None, help="folder of scenario TOML files")
    evaluate.add_argument("--only", type=_names, default=None, help="scenario ids to run")
    evaluate.add_argument("--audio", action="store_true",
                          help="speak the user's lines into a real WebSocket in real time")
    evaluate.add_argument("--ablate-guard", action="store_true",
                          help="also run each setting with the reply guard off (a baseline)")
    evaluate.add_argument("--llm-url", default=None,
                          help="evaluate an OpenAI-compatible server instead of the embedded LLM")
    evaluate.add_argument("--llm-model", default=None, help="model name sent to --llm-url")
    evaluate.add_argument("--judge-url", default=None,
                          help="also ask an OpenAI-compatible LLM whether each reply is on topic")
    evaluate.add_argument("--judge-model", default="default", help="model name for --judge-url")
    evaluate.add_argument("--min-pass", type=float, default=0.9,
                          help="least share of replies passing every rule (default 0.9)")
    evaluate.add_argument("--min-known", type=float, default=0.8,
                          help="least share of known answers right (default 0.8)")
    evaluate.add_argument("--repeat", type=int, default=1,
                          help="play every scenario this many times per run (new seeds)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="reply seed of the first play: a run is reproducible")
    evaluate.add_argument("--json", default=None, help="write every turn and its scores")
    evaluate.set_defaults(func=_lazy("voxgate.eval.cli:cli_eval"))

    models = sub.add_parser("models", help="assemble and check the default offline models")
    models.add_argument("action", choices=["assemble", "check", "path"])
    models.set_defaults(func=_lazy("voxgate.models.assets:cli_models"))

    personas = sub.add_parser("personas", help="list, show or create personas")
    personas.add_argument("action", choices=["list", "show", "new"])
    personas.add_argument("name", nargs="?")
    personas.add_argument("--dir", default=None, help="persona directory")
    personas.set_defaults(func=_lazy("voxgate.personas.cli:cli_personas"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
