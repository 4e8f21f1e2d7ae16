// Reply playback: PCM16LE chunks at the server's output rate come in over
// the port, are resampled to the context rate and played from a small
// jitter buffer.
//
// Messages in:  {type: 'rate', rate}         output_sample_rate from `welcome`
//               {type: 'pcm', buffer, turn}  one TTS_AUDIO payload (ArrayBuffer) and its turn
//               {type: 'flush'}              barge-in: drop everything queued now
// Messages out: {type: 'played', samples, turn}  context-rate samples of `turn` played
//                                                since the last report
//               {type: 'playing', playing}       playback started / ran dry
//               {type: 'flushed'}                the flush is done; every played
//                                                sample before it has been reported

// Start once this much is queued, so that network and synthesis jitter do
// not turn into clicks at the start of a reply.
const START_MS = 60;
// ...or once nothing new arrived for this long: the tail of a reply that is
// shorter than START_MS still gets played.
const IDLE_START_MS = 60;
// Report progress about every 50 ms rather than every render quantum.
const REPORT_MS = 50;

class PlayerProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = []; // {data: Float32Array at the context rate, turn}
    this.offset = 0; // read position inside chunks[0]
    this.queued = 0; // samples queued in total
    this.playing = false;
    this.sinceLastPush = 0; // samples rendered since the last 'pcm' message
    this.unreported = 0;
    this.unreportedTurn = null; // a report never mixes two turns' samples
    this.startSamples = Math.round((START_MS / 1000) * sampleRate);
    this.idleSamples = Math.round((IDLE_START_MS / 1000) * sampleRate);
    this.reportSamples = Math.round((REPORT_MS / 1000) * sampleRate);
    this.setRate(sampleRate);
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  setRate(rate) {
    this.step = rate / sampleRate; // input samples per output sample
    this.prev = 0;
    this.t = 0;
  }

  onMessage(msg) {
    if (msg.type === 'rate') {
      this.setRate(msg.rate);
    } else if (msg.type === 'pcm') {
      this.push(msg.buffer, msg.turn ?? null);
    } else if (msg.type === 'flush') {
      // Samples already rendered were played: report them before dropping the rest,
      // so the client's final position for the turn is exact.
      this.report(true);
      this.chunks = [];
      this.offset = 0;
      this.queued = 0;
      this.prev = 0;
      this.t = 0;
      this.setPlaying(false);
      this.port.postMessage({ type: 'flushed' });
    }
  }

  // Int16 -> Float32 and linear resampling in one pass; the interpolation
  // state carries over between chunks so chunk edges do not click.
  push(buffer, turn) {
    const view = new DataView(buffer);
    const n = buffer.byteLength >> 1;
    const out = new Float32Array(Math.ceil((n + 1) / this.step) + 1);
    let k = 0;
    for (let i = 0; i < n; i++) {
      const x = view.getInt16(i * 2, true) / 32768;
      while (this.t < 1) {
        out[k++] = this.prev + (x - this.prev) * this.t;
        this.t += this.step;
      }
      this.t -= 1;
      this.prev = x;
    }
    if (k > 0) {
      this.chunks.push({ data: out.subarray(0, k), turn });
      this.queued += k;
    }
    this.sinceLastPush = 0;
  }

  setPlaying(playing) {
    if (this.playing !== playing) {
      this.playing = playing;
      this.port.postMessage({ type: 'playing', playing });
    }
  }

  report(force) {
    if (this.unreported > 0 && (force || this.unreported >= this.reportSamples)) {
      this.port.postMessage({ type: 'played', samples: this.unreported, turn: this.unreportedTurn });
      this.unreported = 0;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    this.sinceLastPush += out.length;
    if (!this.playing && this.queued > 0
        && (this.queued >= this.startSamples || this.sinceLastPush >= this.idleSamples)) {
      this.setPlaying(true);
    }
    let written = 0;
    if (this.playing) {
      while (written < out.length && this.chunks.length > 0) {
        const { data, turn } = this.chunks[0];
        if (turn !== this.unreportedTurn) {
          this.report(true);
          this.unreportedTurn = turn;
        }
        const n = Math.min(out.length - written, data.length - this.offset);
        out.set(data.subarray(this.offset, this.offset + n), written);
        written += n;
        this.unreported += n;
        this.offset += n;
        if (this.offset === data.length) {
          this.chunks.shift();
          this.offset = 0;
        }
      }
      this.queued -= written;
      if (this.queued === 0) {
        // Ran dry: rebuild the cushion before resuming (a new reply or a late chunk).
        this.setPlaying(false);
        this.report(true);
      } else {
        this.report(false);
      }
    }
    out.fill(0, written); // explicit silence after the queued audio (underrun or idle)
    // Same signal on every output channel (mono source, maybe stereo output).
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor('voxgate-player', PlayerProcessor);
