"""One committed turn's speech: plays a reply run out through the output port, paced.

Audio leaves at most ``lead_ms`` ahead of real-time playback (the first chunk
goes at once), so an interruption stops the audio at the source even for a
client that ignores ``interrupted``. The handle also knows what the user has
heard: from the client's ``playback`` reports when it sends them (protocol
2), else from its own model of a player that starts on the first frame.

A filler (a short acknowledgment) is decided here, in the one task that also
sends the answer, at the moment it would be sent: never when answer audio is
ready or being synthesized.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from voxgate.audio.pcm import Int16Array
from voxgate.metrics.turn import SessionClock, TurnMetrics
from voxgate.ports import AudioOut, OutputPort, ReplyText
from voxgate.reply import Piece, ReplyEnd, ReplyRun

# Audio goes out in frames of this length: short enough that pacing is smooth
# and little is in flight when a barge-in stops it.
FRAME_MS = 100
# Audio frames that may wait in the outbox: beyond this the socket is slower than
# real time, and pacing waits for it rather than piling up audio it cannot stop.
MAX_BACKLOG = 2
# A client report older than this is not trusted any more (the client stopped
# reporting): the server's own model takes over, so a reply never stalls.
REPORT_STALE_S = 0.5


@dataclass(frozen=True, slots=True)
class Filler:
    text: str
    audio: Int16Array
    at_wall: float  # monotonic time at which it may be sent


@dataclass(slots=True)
class _Sent:
    text: str
    samples: int


class SpeechHandle:
    def __init__(
        self,
        *,
        turn: int,
        run: ReplyRun,
        metrics: TurnMetrics,
        port: OutputPort,
        clock: SessionClock,
        rate: int,
        lead_ms: float,
        filler: Filler | None,
    ) -> None:
        self.turn, self.run, self.metrics, self.port = turn, run, metrics, port
        self.clock, self.rate, self.lead_ms = clock, rate, lead_ms
        self._filler = filler
        self._sent: list[_Sent] = []
        self.sent_samples = 0
        self.answer_started = False
        self.error: str | None = None
        self.interrupted = False
        self.heard: str | None = None  # set when cut off: the words that were played
        self.finished = False  # every piece has been sent (or the play stopped)
        # The server's playback model: a cursor that advances in real time from the
        # first frame and stalls when the client has nothing left to play.
        self._cursor_ms = 0.0
        self._cursor_wall: float | None = None
        self._report: tuple[float, float] | None = None  # (played ms, monotonic time)
        self.task: asyncio.Task[None] | None = None
        self._released = asyncio.Event()  # cleared while the user speaks over the reply
        self._released.set()

    # -- what the user heard -------------------------------------------------------

    @property
    def sent_ms(self) -> float:
        return self.sent_samples * 1000.0 / self.rate

    def client_played(self, played_ms: float) -> None:
        """A ``playback`` report from the client (protocol 2)."""
        self._report = (min(max(played_ms, 0.0), self.sent_ms), time.monotonic())

    def played_ms(self, now: float | None = None) -> tuple[float, str]:
        """Reply audio played so far, and where that figure comes from."""
        now = time.monotonic() if now is None else now
        if self._report is not None and now - self._report[1] <= REPORT_STALE_S:
            played, at = self._report
            return min(played + (now - at) * 1000.0, self.sent_ms), "client"
        return self._estimate(now), "estimate"

    def _estimate(self, now: float) -> float:
        if self._cursor_wall is None:
            return 0.0
        return min(self._cursor_ms + (now - self._cursor_wall) * 1000.0, self.sent_ms)

    def remaining_ms(self) -> float:
        return max(self.sent_ms - self.played_ms()[0], 0.0)

    def heard_text(self, played_ms: float) -> str:
        """The words of the reply within the first ``played_ms`` of its audio."""
        played = played_ms * self.rate / 1000.0
        words: list[str] = []
        for sent in self._sent:
            chunk_words = sent.text.split()
            if played >= sent.samples:
                words += chunk_words
                played -= sent.samples
                continue
            words += chunk_words[: int(len(chunk_words) * max(played, 0) / max(sent.samples, 1))]
            break
        return " ".join(words)

    def interrupt(self) -> tuple[float, str, str]:
        """Stop now: (ms played, source, words heard). The play task is cancelled."""
        played, source = self.played_ms()
        self.interrupted = True
        if self.task is not None:
            self.task.cancel()
        self.port.drop_audio(self.turn)
        return played, source, self.heard_text(played)

    def hold(self, held: bool) -> None:
        """Hold (True) or release (False) the audio: nothing is sent while held."""
        if held:
            self._released.clear()
        else:
            self._released.set()

    # -- playing -----------------------------------------------------------------

    async def play(self) -> None:
        """Send the run's pieces as they come: text, then its audio, paced."""
        get: asyncio.Task[Piece | ReplyEnd] | None = None
        try:
            while True:
                if get is None:
                    get = asyncio.create_task(self.run.next_item())
                timeout = None
                if self._filler is not None:
                    timeout = max(self._filler.at_wall - time.monotonic(), 0.0)
                done, _ = await asyncio.wait({get}, timeout=timeout)
                if not done:
                    await self._maybe_filler()
                    continue
                item, get = get.result(), None
                if isinstance(item, ReplyEnd):
                    self.error = item.error
                    return
                self._filler = None  # the answer is here: no acknowledgment any more
                # The holding line goes out flagged like a filler: it is not the answer.
                if item.delta:
                    self.port.emit(ReplyText(item.delta, self.turn, filler=item.holding))
                if item.audio is not None:
                    await self._send_audio(
                        item.text, item.audio, filler=item.holding, holding=item.holding
                    )
        finally:
            if get is not None:
                get.cancel()
            self.finished = True

    async def _maybe_filler(self) -> None:
        filler, self._filler = self._filler, None
        if filler is None or self.answer_started or self.run.answer_due():
            return
        self.metrics.filler = filler.text
        self.port.emit(ReplyText(filler.text, self.turn, filler=True))
        await self._send_audio(filler.text, filler.audio, filler=True)

    async def _send_audio(
        self, text: str, audio: Int16Array, *, filler: bool, holding: bool = False
    ) -> None:
        step = self.rate * FRAME_MS // 1000
        # Counted whole from the start: heard_text pro-rates the words of a clause by
        # how much of it was played, and played never exceeds what was sent.
        self._sent.append(_Sent(text, len(audio)))
        for start in range(0, len(audio), step):
            piece = audio[start : start + step]
            await self._pace(len(piece))
            self.port.emit(AudioOut(piece, self.turn, filler))
            now_wall = time.monotonic()
            if self._cursor_wall is None:
                self._cursor_wall = now_wall
            else:  # bring the model's cursor up to now before the new audio counts
                self._cursor_ms = self._estimate(now_wall)
                self._cursor_wall = now_wall
            self.sent_samples += len(piece)
            now = self.clock.now_ms()
            self.metrics.stamp("first_audio_sent", now)
            if holding:  # a tool runs: the answer is still to come
                self.answer_started = True
                self.metrics.stamp("holding_line_sent", now)
            elif not filler:
                self.answer_started = True
                self.metrics.stamp("first_answer_audio_sent", now)

    async def _pace(self, samples: int) -> None:
        """Wait until sending ``samples`` more keeps the client's buffer within the lead."""
        await self._released.wait()
        while self.port.backlog() > MAX_BACKLOG:
            await asyncio.sleep(FRAME_MS / 4000.0)
        if self.sent_samples == 0:
            return  # the first chunk goes at once
        frame_ms = samples * 1000.0 / self.rate
        while True:
            ahead = self.sent_ms - self.played_ms()[0]
            if ahead <= 0:
                return
            wait_ms = ahead + frame_ms - self.lead_ms
            if wait_ms <= 0:
                return
            await asyncio.sleep(wait_ms / 1000.0)
            await self._released.wait()
