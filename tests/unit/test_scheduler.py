import threading
import time

from voxgate.scheduler import ComputeGate, Priority


def test_waiters_are_served_by_priority_not_arrival() -> None:
    gate = ComputeGate()
    order: list[str] = []
    release = threading.Event()

    def holder() -> None:
        with gate.hold(Priority.SPECULATIVE):
            release.wait()

    def worker(name: str, priority: Priority) -> None:
        with gate.hold(priority):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    while not gate.busy():
        time.sleep(0.001)
    threads = []
    for name, priority in [("spec", Priority.SPECULATIVE), ("llm", Priority.LLM_LIVE),
                           ("stt", Priority.STT_FINAL), ("tts", Priority.TTS_LIVE)]:
        t = threading.Thread(target=worker, args=(name, priority))
        t.start()
        threads.append(t)
        while len(gate._waiting) < len(threads):  # wait until it is queued
            time.sleep(0.001)
    release.set()
    for t in [first, *threads]:
        t.join()
    assert order == ["stt", "tts", "llm", "spec"]
    assert not gate.busy()


def test_a_waiter_promoted_while_waiting_goes_first() -> None:
    from voxgate.scheduler import PriorityRef

    gate = ComputeGate()
    order: list[str] = []
    release = threading.Event()
    promoted = PriorityRef(Priority.SPECULATIVE)

    def holder() -> None:
        with gate.hold(Priority.SPECULATIVE):
            release.wait()

    def worker(name: str, priority: Priority | PriorityRef) -> None:
        with gate.hold(priority):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    while not gate.busy():
        time.sleep(0.001)
    threads = [threading.Thread(target=worker, args=("tts", promoted))]
    threads[0].start()
    while len(gate._waiting) < 1:
        time.sleep(0.001)
    threads.append(threading.Thread(target=worker, args=("llm", Priority.LLM_LIVE)))
    threads[1].start()
    while len(gate._waiting) < 2:
        time.sleep(0.001)
    promoted.value = Priority.TTS_LIVE  # the turn was committed while it waited
    release.set()
    for t in [first, *threads]:
        t.join()
    assert order == ["tts", "llm"]


def test_background_work_does_not_make_the_gate_busy() -> None:
    gate = ComputeGate()
    with gate.hold(Priority.BACKGROUND):
        assert not gate.busy()  # an interim decode may still start: it goes first
    with gate.hold(Priority.SPECULATIVE):
        assert gate.busy()
