// Microphone capture: resample the context rate to 16 kHz and post 20 ms
// frames of PCM16LE (ArrayBuffers of 640 bytes) to the main thread.
//
// `sampleRate` is the AudioWorkletGlobalScope's context rate (44.1 or
// 48 kHz on most machines).

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz, the protocol's chunk size
const FIR_TAPS = 31;

// Windowed-sinc low-pass, so that downsampling does not fold everything
// above 8 kHz back into the speech band.
function lowPass(cutoff, taps) {
  const h = new Float32Array(taps);
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const blackman = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1))
      + 0.08 * Math.cos((4 * Math.PI * i) / (taps - 1));
    h[i] = sinc * blackman;
    sum += h[i];
  }
  for (let i = 0; i < taps; i++) h[i] /= sum; // unity gain at DC
  return h;
}

class MicProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    // Only filter when downsampling; cut a little below the new Nyquist.
    this.fir = this.step > 1 ? lowPass((0.45 * TARGET_RATE) / sampleRate, FIR_TAPS) : null;
    this.history = new Float32Array(FIR_TAPS); // circular buffer of recent inputs
    this.head = 0;
    this.prev = 0; // last filtered sample, the left end of the interpolation
    this.t = 0; // position of the next output sample after `prev`, in input samples
    this.newFrame();
  }

  newFrame() {
    this.frame = new ArrayBuffer(FRAME_SAMPLES * 2);
    this.view = new DataView(this.frame);
    this.filled = 0;
  }

  filter(x) {
    if (!this.fir) return x;
    this.history[this.head] = x;
    this.head = (this.head + 1) % FIR_TAPS;
    let y = 0;
    let j = this.head;
    for (let i = 0; i < FIR_TAPS; i++) {
      y += this.fir[i] * this.history[j];
      j = j + 1 === FIR_TAPS ? 0 : j + 1;
    }
    return y;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.view.setInt16(this.filled * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    this.filled += 1;
    if (this.filled === FRAME_SAMPLES) {
      // Transfer, not copy: the worklet never touches this buffer again.
      this.port.postMessage(this.frame, [this.frame]);
      this.newFrame();
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no input connected yet (or it ended): keep the node alive
    for (let i = 0; i < channel.length; i++) {
      const y = this.filter(channel[i]);
      // Linear interpolation between `prev` (at 0) and `y` (at 1).
      while (this.t < 1) {
        this.emit(this.prev + (y - this.prev) * this.t);
        this.t += this.step;
      }
      this.t -= 1;
      this.prev = y;
    }
    return true;
  }
}

registerProcessor('voxgate-mic', MicProcessor);
