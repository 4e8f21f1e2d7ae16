// voxgate browser client: microphone -> binary WebSocket frames -> speaker.
// The wire protocol is docs/protocol.md; this file is its browser side.

const FrameType = Object.freeze({
  AUDIO_START: 0x01,
  AUDIO_CHUNK: 0x02,
  AUDIO_END: 0x03,
  TRANSCRIPT: 0x04,
  LLM_CHUNK: 0x05,
  TTS_AUDIO: 0x06,
  ERROR: 0x07,
  READY: 0x08,
  DONE: 0x09,
  EVENT: 0x0a,
  IMAGE: 0x0b,
});
const FLAG_FINAL = 0x01;
const FLAG_FILLER = 0x02;
const PROTOCOL_VERSION = 2;
// Camera: at most one frame a second, its long side shrunk to this, as JPEG.
const CAMERA_INTERVAL_MS = 1000;
const CAMERA_SIDE = 384;
const CAMERA_QUALITY = 0.7;
// A socket with this much unsent data is behind: the camera skips, the voice goes first.
const CAMERA_MAX_BUFFERED = 64 * 1024;
const INPUT_RATE = 16000;
// Mic frames captured before READY are kept (up to 2 s) rather than dropped,
// so the first words spoken right after pressing Start reach the server.
const PREROLL_FRAMES = 100;

// Per-turn latency stages from the `metrics` event. `at` names the timestamp
// where the stage ends (so overlapping stages are drawn overlapping, and
// speculative work may start before the speech ended); `fromZero` stages
// start when the user stopped speaking.
const STAGES = [
  { key: 'endpointing', label: 'Endpointing', fromZero: true, at: 'committed' },
  { key: 'stt', label: 'STT final', at: 'final_transcript' },
  { key: 'llm_ttft', label: 'LLM first token', at: 'llm_first_token' },
  { key: 'tts_first_byte', label: 'TTS first audio', at: 'first_tts_audio' },
  // Only on a turn whose tool ran long enough for the persona to say it is on it.
  { key: 'holding_line', label: 'Holding line', fromZero: true, optional: true,
    at: 'holding_line_sent' },
  { key: 'voice_to_voice', label: 'Voice to voice', fromZero: true, total: true,
    at: 'first_answer_audio_sent' },
];

const STATE_LABELS = {
  idle: 'Idle',
  connecting: 'Connecting…',
  live: 'Listening',
  closed: 'Disconnected',
  error: 'Error',
};

const $ = (id) => document.getElementById(id);
const utf8Decoder = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

// Test hooks (tests/e2e/test_browser.py reads these); also handy in DevTools.
const hooks = {
  state: 'idle',
  transcripts: [], // final transcripts
  replies: [], // answer text per turn (deltas appended)
  fillers: [], // acknowledgment text per turn
  framesReceived: 0, // TTS_AUDIO frames
  samplesPlayed: 0, // context-rate samples the player worklet has output
  contextRate: null, // AudioContext sample rate, once started
  metrics: [], // `metrics` events
  tools: [], // `tool` events, in order
  framesSent: 0, // IMAGE frames sent
  framesSkipped: 0, // camera ticks skipped: the worker or the socket was busy
  camera: [], // `camera` events: what the server saw
  interruptions: [], // `interrupted` events
  protocol: null, // the version the server agreed in `welcome`
  playedMs: {}, // turn -> last `playback` position sent (ms of that turn's audio played)
  playbackSent: 0, // `playback` events sent
  errors: [], // "code: message" strings, server's and our own
  start: () => start(),
  stop: () => stop(),
};
window.voxgate = hooks;

// ---------------------------------------------------------------- frames

function encodeFrame(type, payload = null, flags = 0) {
  const body = payload ? new Uint8Array(payload) : new Uint8Array(0);
  const frame = new Uint8Array(2 + body.length);
  frame[0] = type;
  frame[1] = flags;
  frame.set(body, 2);
  return frame.buffer;
}

function encodeEvent(event) {
  return encodeFrame(FrameType.EVENT, utf8Encoder.encode(JSON.stringify(event)));
}

// ---------------------------------------------------------------- UI

const ui = {
  utterance: null, // the turn card whose transcript is still interim
  replyCard: null, // the turn card the reply text streams into
  agentName: 'Agent', // the persona's name once `welcome` says it

  setState(state, detail = '') {
    hooks.state = state;
    const status = $('status');
    status.dataset.state = state;
    status.textContent = detail ? `${STATE_LABELS[state]} — ${detail}` : STATE_LABELS[state];
    const active = state === 'connecting' || state === 'live';
    const button = $('toggle');
    button.textContent = active ? 'Stop' : 'Start';
    button.setAttribute('aria-pressed', String(active));
    button.disabled = false;
  },

  setSpeaking(speaking) {
    $('status').dataset.speaking = String(speaking);
  },

  newCard() {
    const card = $('turn-template').content.firstElementChild.cloneNode(true);
    $('turns').append(card);
    $('hint').hidden = true;
    return card;
  },

  transcript(text, final) {
    if (!this.utterance) this.utterance = this.newCard();
    const span = this.utterance.querySelector('.transcript');
    span.textContent = text;
    span.classList.toggle('interim', !final);
    span.classList.toggle('final', final);
    if (final) {
      this.setSpeaking(false); // the utterance is over, whatever `vad` said last
      this.replyCard = this.utterance;
      this.utterance = null;
    }
    span.scrollIntoView({ block: 'nearest' });
  },

  turnStart(turn, text) {
    const card = this.replyCard || this.utterance || this.newCard();
    card.dataset.turn = String(turn);
    const span = card.querySelector('.transcript');
    if (text && !span.textContent) {
      span.textContent = text;
      span.classList.add('final');
    }
    this.replyCard = card;
  },

  reply(delta, filler) {
    const card = this.replyCard || this.newCard();
    this.replyCard = card;
    const agent = card.querySelector('.agent');
    if (agent.hidden) agent.querySelector('.who').textContent = this.agentName;
    agent.hidden = false;
    const reply = agent.querySelector('.reply');
    // Consecutive deltas of the same kind share one span.
    let last = reply.lastElementChild;
    if (!last || last.classList.contains('filler') !== filler) {
      // The filler and the answer are separate texts: keep a space between them.
      if (last && !/\s$/.test(last.textContent) && !/^\s/.test(delta)) reply.append(' ');
      last = document.createElement('span');
      if (filler) last.classList.add('filler');
      reply.append(last);
    }
    last.append(delta);
    agent.scrollIntoView({ block: 'nearest' });
  },

  // One line per tool call in the turn's card: started, then what came of it.
  tool(event) {
    const card = $('turns').querySelector(`.turn[data-turn="${event.turn}"]`) || this.replyCard;
    if (!card) return;
    const list = card.querySelector('.tools');
    list.hidden = false;
    let item = [...list.children].find(
      (li) => li.dataset.name === String(event.name) && li.dataset.outcome === 'started');
    if (!item || event.outcome === 'started') {
      item = document.createElement('li');
      item.dataset.name = String(event.name);
      const name = document.createElement('code');
      const args = event.arguments ? JSON.stringify(event.arguments) : '';
      name.textContent = `${event.name ?? 'unreadable call'}(${args.slice(1, -1)})`;
      const outcome = document.createElement('span');
      outcome.className = 'outcome';
      item.append(name, ' ', outcome);
      list.append(item);
    }
    item.dataset.outcome = event.outcome;
    const ms = num(event.duration_ms);
    let text = event.outcome === 'started' ? 'running…' : event.outcome;
    if (ms !== null) text += `, ${ms} ms`;
    if (event.result) text += ` → ${event.result}`;
    if (event.error) text += `: ${event.error}`;
    item.querySelector('.outcome').textContent = text;
  },

  interrupted(event) {
    if (!this.replyCard) return;
    const agent = this.replyCard.querySelector('.agent');
    agent.classList.add('interrupted');
    if (num(event.played_ms) !== null) {
      const source = event.playback ? ` (${event.playback})` : '';
      agent.title = `interrupted after ${Math.round(event.played_ms)} ms of audio${source}`;
    }
  },

  metrics(m) {
    const card = $('turns').querySelector(`.turn[data-turn="${m.turn}"]`) || this.replyCard;
    if (!card) return;
    renderWaterfall(card.querySelector('.waterfall'), m);
  },

  error(text) {
    hooks.errors.push(text);
    const item = document.createElement('li');
    const sep = text.indexOf(': ');
    if (sep > 0) {
      const code = document.createElement('code');
      code.textContent = text.slice(0, sep);
      item.append(code, ` ${text.slice(sep + 2)}`);
    } else {
      item.textContent = text;
    }
    $('errors').append(item);
    $('errors-panel').hidden = false;
  },
};

function num(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

// Lay the stages out on one time axis starting at the end of speech.
function layoutStages(m) {
  const durations = m.durations || {};
  const stamps = m.timestamps || {};
  const origin = num(stamps.speech_end);
  let cursor = 0; // fallback: without timestamps, stages follow each other
  return STAGES.map((stage) => {
    const ms = num(durations[stage.key]);
    if (ms === null) return { ...stage, ms: null };
    let start;
    const end = stage.at && origin !== null ? num(stamps[stage.at]) : null;
    if (stage.fromZero) start = 0;
    else if (end !== null) start = end - origin - ms;
    else start = cursor;
    if (!stage.total) cursor = Math.max(cursor, start + ms);
    return { ...stage, ms, start };
  });
}

function renderWaterfall(figure, m) {
  const rows = layoutStages(m).filter((r) => !(r.optional && r.ms === null));
  const shown = rows.filter((r) => r.ms !== null);
  const lo = Math.min(0, ...shown.map((r) => r.start));
  const hi = Math.max(1, ...shown.map((r) => r.start + r.ms));
  const span = hi - lo;
  const body = figure.querySelector('tbody');
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement('tr');
    if (row.total) tr.classList.add('total');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = row.label;
    const track = document.createElement('td');
    track.className = 'track';
    track.setAttribute('aria-hidden', 'true'); // the number cell carries the information
    if (lo < 0) {
      // Work that began before the end of speech: mark where speech ended.
      const zero = document.createElement('div');
      zero.className = 'zero';
      zero.style.left = `${(-lo / span) * 100}%`;
      track.append(zero);
    }
    if (row.ms !== null) {
      const bar = document.createElement('div');
      bar.className = `bar stage-${row.key}`;
      bar.style.left = `${((row.start - lo) / span) * 100}%`;
      bar.style.width = `${Math.max(0.5, (row.ms / span) * 100)}%`;
      track.append(bar);
    }
    const value = document.createElement('td');
    value.className = 'ms';
    value.textContent = row.ms === null ? '—' : `${Math.round(row.ms)} ms`;
    tr.append(th, track, value);
    body.append(tr);
  }
  const llm = m.llm || {};
  const notes = [];
  if (num(llm.prompt_tokens) !== null) {
    notes.push(`prompt ${llm.prompt_tokens} tokens, ${llm.reused_tokens ?? 0} reused, `
      + `${llm.generated_tokens ?? 0} generated`);
  }
  if (m.speculative && m.speculative !== 'none') notes.push(`speculation: ${m.speculative}`);
  if (m.playback) notes.push(`playback: ${m.playback}`);
  figure.querySelector('.counters').textContent = notes.join(' · ');
  figure.hidden = false;
}

// ---------------------------------------------------------------- session

function wsUrl() {
  const params = new URLSearchParams(location.search);
  const meta = document.querySelector('meta[name="voxgate-token"]')?.content ?? '';
  // An unreplaced placeholder means the page was not served by voxgate: no token.
  const token = params.get('token') || (meta.startsWith('{{') ? '' : meta);
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  return `${scheme}://${location.host}/ws${query}`;
}

class Session {
  constructor() {
    this.closed = false;
    this.ready = false;
    this.preroll = [];
    this.ctx = null;
    this.ws = null;
    this.protocol = 1; // until `welcome` says otherwise: no `playback` reports
    this.turn = null; // the turn whose reply audio is arriving (from `turn_start`)
    this.droppedTurn = null; // an interrupted turn: its late audio is not played
    this.flushedTurn = null; // the turn whose final report waits for the worklet's flush
    this.played = new Map(); // turn -> context-rate samples of its audio played
  }

  async open() {
    // One context for capture and playback, at the device's own rate;
    // both worklets resample to and from it.
    this.ctx = new AudioContext({ latencyHint: 'interactive' });
    hooks.contextRate = this.ctx.sampleRate;
    await Promise.all([
      this.ctx.audioWorklet.addModule('mic-worklet.js'),
      this.ctx.audioWorklet.addModule('player-worklet.js'),
    ]);
    if (this.closed) return;

    this.player = new AudioWorkletNode(this.ctx, 'voxgate-player', {
      numberOfInputs: 0,
      outputChannelCount: [1],
    });
    this.player.port.onmessage = (event) => this.onPlayer(event.data);
    this.player.connect(this.ctx.destination);

    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    if (this.closed) {
      this.stopTracks();
      return;
    }
    this.source = this.ctx.createMediaStreamSource(this.stream);
    // No outputs: the node is a sink, pulled because its input is live.
    this.mic = new AudioWorkletNode(this.ctx, 'voxgate-mic', { numberOfOutputs: 0 });
    this.mic.port.onmessage = (event) => this.onMicFrame(event.data);
    this.source.connect(this.mic);
    await this.ctx.resume();

    this.ws = new WebSocket(wsUrl());
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => this.onOpen();
    this.ws.onmessage = (event) => this.onMessage(event.data);
    this.ws.onclose = (event) => this.onClose(event);
  }

  onPlayer(msg) {
    if (msg.type === 'played') {
      hooks.samplesPlayed += msg.samples;
      if (msg.turn === null) return; // audio before any turn_start: no turn to report
      this.played.set(msg.turn, (this.played.get(msg.turn) ?? 0) + msg.samples);
      // The worklet reports about every 50 ms while playing and once when it runs
      // dry, which covers the protocol's "at least every 100 ms" and the final report.
      this.sendPlayback(msg.turn);
    } else if (msg.type === 'flushed' && this.flushedTurn !== null) {
      this.sendPlayback(this.flushedTurn); // final position, even if nothing played
      this.flushedTurn = null;
    }
  }

  // Protocol 2: tell the server how much of the turn's reply audio was played
  // (not received), so that it truncates an interrupted reply where the user stopped hearing it.
  sendPlayback(turn) {
    if (this.protocol < 2 || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    const playedMs = Math.round(((this.played.get(turn) ?? 0) / this.ctx.sampleRate) * 1000);
    this.ws.send(encodeEvent({ type: 'playback', turn, played_ms: playedMs }));
    hooks.playedMs[turn] = playedMs;
    hooks.playbackSent += 1;
  }

  onOpen() {
    const hello = { type: 'hello', protocol: PROTOCOL_VERSION, sample_rate: INPUT_RATE };
    const persona = new URLSearchParams(location.search).get('persona');
    if (persona) hello.persona = persona;
    this.ws.send(encodeEvent(hello));
  }

  onMicFrame(pcm) {
    if (this.closed) return;
    if (!this.ready) {
      this.preroll.push(pcm);
      if (this.preroll.length > PREROLL_FRAMES) this.preroll.shift();
      return;
    }
    this.ws.send(encodeFrame(FrameType.AUDIO_CHUNK, pcm));
  }

  onMessage(data) {
    if (!(data instanceof ArrayBuffer) || data.byteLength < 2) {
      ui.error('client: unexpected non-frame message from the server');
      return;
    }
    const bytes = new Uint8Array(data);
    const type = bytes[0];
    const flags = bytes[1];
    const payload = bytes.subarray(2);
    switch (type) {
      case FrameType.TRANSCRIPT: {
        const text = utf8Decoder.decode(payload);
        const final = (flags & FLAG_FINAL) !== 0;
        if (final) hooks.transcripts.push(text);
        ui.transcript(text, final);
        break;
      }
      case FrameType.LLM_CHUNK: {
        const filler = (flags & FLAG_FILLER) !== 0;
        const list = filler ? hooks.fillers : hooks.replies;
        if (list.length === 0) list.push('');
        const delta = utf8Decoder.decode(payload);
        list[list.length - 1] += delta;
        ui.reply(delta, filler);
        break;
      }
      case FrameType.TTS_AUDIO: {
        hooks.framesReceived += 1;
        if (this.turn !== null && this.turn === this.droppedTurn) break;
        const buffer = data.slice(2); // own copy, transferred to the worklet
        this.player.port.postMessage({ type: 'pcm', buffer, turn: this.turn }, [buffer]);
        break;
      }
      case FrameType.ERROR:
        ui.error(utf8Decoder.decode(payload));
        break;
      case FrameType.READY:
        this.onReady();
        break;
      case FrameType.DONE:
        break; // nothing to do: the reply text and audio are already in place
      case FrameType.EVENT:
        this.onEvent(payload);
        break;
      default:
        ui.error(`client: unknown frame type 0x${type.toString(16).padStart(2, '0')}`);
    }
  }

  onEvent(payload) {
    let event;
    try {
      event = JSON.parse(utf8Decoder.decode(payload));
    } catch {
      ui.error('client: EVENT payload is not JSON');
      return;
    }
    switch (event.type) {
      case 'welcome':
        // 22050 Hz is Piper's rate, the documented default.
        this.player.port.postMessage({ type: 'rate', rate: num(event.output_sample_rate) ?? 22050 });
        // A server without `protocol` in `welcome` speaks version 1.
        this.protocol = num(event.protocol) ?? 1;
        hooks.protocol = this.protocol;
        ui.agentName = event.persona_name || event.persona || 'Agent';
        break;
      case 'vad':
        ui.setSpeaking(Boolean(event.speaking));
        break;
      case 'turn_start':
        // The server serializes turns: all audio until the next turn_start is this turn's.
        this.turn = num(event.turn);
        hooks.replies.push('');
        hooks.fillers.push('');
        ui.turnStart(event.turn, event.text);
        break;
      case 'interrupted': {
        // Barge-in: the user is talking, silence the agent now. Audio of this turn still
        // in flight is dropped too, so the final report sent after the flush stays final.
        const turn = num(event.turn) ?? this.turn;
        this.droppedTurn = turn;
        this.flushedTurn = turn;
        this.player.port.postMessage({ type: 'flush' });
        hooks.interruptions.push(event);
        ui.interrupted(event);
        break;
      }
      case 'metrics':
        hooks.metrics.push(event);
        ui.metrics(event);
        break;
      case 'tool':
        hooks.tools.push(event);
        ui.tool(event);
        break;
      case 'camera':
        hooks.camera.push(event);
        $('camera-seen').textContent = event.description;
        break;
      default:
        break; // `config` answers and future events need nothing here
    }
  }

  onReady() {
    if (this.ready) return;
    this.ready = true;
    this.ws.send(encodeFrame(FrameType.AUDIO_START));
    for (const pcm of this.preroll) this.ws.send(encodeFrame(FrameType.AUDIO_CHUNK, pcm));
    this.preroll = [];
    ui.setState('live');
    $('camera').disabled = false;
  }

  // ------------------------------------------------------------ camera

  async startCamera() {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640 } });
    this.video = stream;
    if (this.closed) {
      this.stopCamera();
      return;
    }
    const preview = $('camera-preview');
    preview.srcObject = stream;
    preview.hidden = false;
    try {
      await preview.play();
    } catch (err) {
      this.stopCamera(); // no half-started camera with its light on
      throw err;
    }
    this.cameraWorker = new Worker('camera-worker.js');
    this.cameraBusy = false;
    this.cameraWorker.onmessage = (event) => this.onCameraFrame(event.data);
    this.cameraWorker.onerror = (event) => {
      ui.error(`camera: the frame worker failed (${event.message || 'no detail'})`);
      this.stopCamera();
      setCameraButton(false);
    };
    this.cameraTimer = setInterval(() => this.grabFrame(preview), CAMERA_INTERVAL_MS);
  }

  // Newest wins: a tick while the last frame is still being encoded, or while the
  // socket is behind, is skipped rather than queued.
  async grabFrame(preview) {
    if (!this.ready || this.closed || !preview.videoWidth) return;
    if (this.cameraBusy || this.ws.bufferedAmount > CAMERA_MAX_BUFFERED) {
      hooks.framesSkipped += 1;
      return;
    }
    this.cameraBusy = true;
    const scale = Math.min(1, CAMERA_SIDE / Math.max(preview.videoWidth, preview.videoHeight));
    try {
      const bitmap = await createImageBitmap(preview, {
        resizeWidth: Math.round(preview.videoWidth * scale),
        resizeHeight: Math.round(preview.videoHeight * scale),
        resizeQuality: 'medium',
      });
      this.cameraWorker.postMessage({ bitmap, quality: CAMERA_QUALITY }, [bitmap]);
    } catch (err) {
      this.cameraBusy = false;
      ui.error(`camera: ${err && err.message ? err.message : err}`);
    }
  }

  onCameraFrame(data) {
    this.cameraBusy = false;
    if (data.error) {
      ui.error(`camera: ${data.error}`);
      return;
    }
    if (!this.ready || this.closed) return;
    this.ws.send(encodeFrame(FrameType.IMAGE, new Uint8Array(data.jpeg)));
    hooks.framesSent += 1;
  }

  stopCamera() {
    clearInterval(this.cameraTimer);
    this.cameraTimer = null;
    this.cameraWorker?.terminate();
    this.cameraWorker = null;
    for (const track of this.video?.getTracks() ?? []) track.stop();
    this.video = null;
    const preview = $('camera-preview');
    preview.srcObject = null;
    preview.hidden = true;
  }

  onClose(event) {
    if (this.closed) return;
    setCameraButton(false);
    $('camera').disabled = true;
    const reason = event.reason || `code ${event.code}`;
    this.close();
    if (!this.ready) {
      ui.error(`client: could not open a session (${reason})`);
      ui.setState('error', 'no session');
    } else {
      ui.setState('closed', reason);
    }
    if (session === this) session = null;
  }

  stopTracks() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      if (this.ready) this.ws.send(encodeFrame(FrameType.AUDIO_END));
      this.ws.close(1000, 'client stopped');
    } else if (this.ws) {
      this.ws.close();
    }
    this.source?.disconnect();
    this.stopCamera();
    this.stopTracks();
    this.player?.port.postMessage({ type: 'flush' });
    this.ctx?.close();
  }
}

let session = null;

async function start() {
  if (session) return;
  ui.setState('connecting');
  session = new Session();
  const current = session;
  try {
    await current.open();
  } catch (err) {
    current.close();
    if (session === current) session = null;
    const name = err && err.name === 'NotAllowedError' ? 'microphone' : 'client';
    ui.error(`${name}: ${err && err.message ? err.message : err}`);
    ui.setState('error', 'could not start');
  }
}

function stop() {
  if (!session) return;
  session.close();
  session = null;
  ui.setState('idle');
  setCameraButton(false);
  $('camera').disabled = true;
}

function setCameraButton(on) {
  $('camera').textContent = on ? 'Camera off' : 'Camera';
  $('camera').setAttribute('aria-pressed', String(on));
}

async function toggleCamera() {
  if (!session) return;
  if (session.video) {
    session.stopCamera();
    setCameraButton(false);
    return;
  }
  const button = $('camera');
  button.disabled = true; // one start at a time: a second click would open a second stream
  try {
    await session.startCamera();
  } catch (err) {
    ui.error(`camera: ${err && err.message ? err.message : err}`);
  } finally {
    setCameraButton(Boolean(session?.video));
    button.disabled = !session;
  }
}

$('toggle').addEventListener('click', () => (session ? stop() : start()));
$('camera').addEventListener('click', () => toggleCamera());
ui.setState('idle');
