from voxgate.metrics.prometheus import Registry
from voxgate.metrics.turn import TurnMetrics
from voxgate.metrics.wer import wer


def test_durations_derive_from_stamps_and_spans() -> None:
    m = TurnMetrics(1, "ada", "voxgate")
    for name, at in [("speech_end", 1000), ("committed", 1250), ("llm_start", 1100),
                     ("llm_first_token", 1300), ("first_answer_audio_sent", 1500)]:
        m.stamp(name, at)
    m.stamp("speech_end", 5000)  # first stamp wins unless overwrite
    span = m.span("stt_final", 1010)
    span.end_ms = 1090
    tts = m.span("tts", 1310)
    tts.end_ms = 1480
    d = m.durations()
    assert d["endpointing"] == 250
    assert d["stt"] == 80
    assert d["llm_ttft"] == 200
    assert d["llm_after_commit"] == 50
    assert d["tts_first_byte"] == 170
    assert d["voice_to_voice"] == 500
    assert m.event()["type"] == "metrics"
    assert m.record("s1")["spans"][0]["stage"] == "stt_final"


def test_prometheus_text_format() -> None:
    r = Registry()
    r.inc("voxgate_turns_total", help_text="Turns", mode="voxgate")
    r.inc("voxgate_turns_total", mode="voxgate")
    r.observe("voxgate_v2v_ms", 120.0)
    r.observe("voxgate_v2v_ms", 20000.0)
    text = r.render()
    assert 'voxgate_turns_total{mode="voxgate"} 2' in text
    assert 'voxgate_v2v_ms_bucket{le="200"} 1' in text
    assert 'voxgate_v2v_ms_bucket{le="+Inf"} 2' in text
    assert "voxgate_v2v_ms_count 2" in text
    assert "voxgate_v2v_ms_sum 20120" in text


def test_wer() -> None:
    assert wer("Ever tried. Ever failed.", "ever tried ever failed") == 0.0
    assert wer("a b c d", "a x c") == 0.5
