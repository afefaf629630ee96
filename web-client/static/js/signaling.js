// The signaling connection (docs/protocol.md): one WebSocket to /ws, the
// hello/welcome handshake, pings, sequence numbers, and resume after a drop.
//
// Events (CustomEvent.detail):
// - `welcome`: the welcome message (also after a resume; see `resumed`);
// - `message`: every numbered server message, exactly once, in order
//   (with `media_state`, which the hello asks for in `features`);
// - `error`: an error message from the server (connection-scoped);
// - `state`: "connecting" | "open" | "reconnecting" | "closed";
// - `closed`: {code, reason, final}: the session ended for good (bye,
//   denied, replaced, refused hello), no reconnect follows.
//
// A drop that is not one of those final ones reconnects with back-off and
// sends `hello` with `resume` so the server replays what was missed.

const PROTOCOL_VERSION = 1;
/**
 * The optional server messages this client understands (hello.features):
 * `media_state`, the peer's microphone, camera and screen sharing.
 */
const FEATURES = ['media_state'];
/** Close codes after which the client must not reconnect by itself. */
const FINAL_CLOSE_CODES = new Set([1000, 1008, 4001, 4002]);
/** Codes of a hello refusal; the server closes with 1008 after them. */
const FINAL_ERROR_CODES = new Set([
  'version_mismatch',
  'hello_required',
  'unauthorized',
  'link_expired',
  'link_not_yet_open',
  'not_eligible',
  'replaced',
]);

/**
 * The address of the signaling endpoint, on this page's own server. With
 * `room` (the consultation's id) it carries `?room=`, on which a cluster's
 * load balancer sends both participants to the same node (the server itself
 * ignores it; docs/protocol.md, section 1).
 */
export function signalingUrl(room) {
  const base = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
  return room ? `${base}?room=${encodeURIComponent(room)}` : base;
}

/**
 * Whether the signaling endpoint can be reached from here (through any
 * proxy or firewall on the way): opens a WebSocket to /ws and closes it as
 * soon as it is open, before any hello, so no one is authenticated and
 * nothing is joined (docs/protocol.md, section 1). Resolves true or false.
 */
export function canReachSignaling(timeoutMs = 8000) {
  return new Promise((resolve) => {
    let ws;
    try {
      ws = new WebSocket(signalingUrl());
    } catch {
      resolve(false);
      return;
    }
    const timer = setTimeout(() => {
      ws.close();
      resolve(false);
    }, timeoutMs);
    ws.addEventListener('open', () => {
      clearTimeout(timer);
      ws.close(1000);
      resolve(true);
    });
    ws.addEventListener('close', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

export class Signaling extends EventTarget {
  /** `auth`: {link_token} or {session: {consultation}}. */
  constructor(auth, { url } = {}) {
    super();
    this.auth = auth;
    this.url = url || signalingUrl();
    this.ws = null;
    this.resumeToken = null;
    this.lastSeq = 0;
    this.limits = { ping_interval_ms: 10000 };
    this.state = 'closed';
    this.stopped = false;
    this.finalError = null;
    this.attempt = 0;
    this.pingTimer = null;
    this.retryTimer = null;
    this.onOnline = () => {
      if (this.state === 'reconnecting') this.reconnectNow();
    };
    window.addEventListener('online', this.onOnline);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  /** Opens the connection. `fresh`: forget the resume token (new device). */
  connect({ fresh = false } = {}) {
    this.stopped = false;
    this.finalError = null;
    if (fresh) {
      this.resumeToken = null;
      this.lastSeq = 0;
    }
    this.open();
  }

  open() {
    clearTimeout(this.retryTimer);
    this.setState(this.resumeToken ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      const hello = { type: 'hello', version: PROTOCOL_VERSION, auth: this.auth, features: FEATURES };
      if (this.resumeToken) hello.resume = { token: this.resumeToken, last_seq: this.lastSeq };
      ws.send(JSON.stringify(hello));
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== this.ws) return;
      this.lastRx = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.handle(msg);
    });
    ws.addEventListener('close', (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      const final = this.stopped || FINAL_CLOSE_CODES.has(ev.code) || this.finalError !== null;
      if (final) {
        this.setState('closed');
        this.emit('closed', { code: ev.code, reason: this.finalError, final: true });
        window.removeEventListener('online', this.onOnline);
      } else {
        this.scheduleReconnect();
      }
    });
  }

  handle(msg) {
    switch (msg.type) {
      case 'welcome':
        this.resumeToken = msg.resume_token;
        if (!msg.resumed) this.lastSeq = 0;
        this.limits = msg.limits || this.limits;
        this.attempt = 0;
        this.setState('open');
        this.startPing();
        this.emit('welcome', msg);
        return;
      case 'pong':
        return;
      case 'error':
        if (FINAL_ERROR_CODES.has(msg.code)) this.finalError = msg.code;
        if (msg.code === 'replaced') this.finalError = 'replaced';
        this.emit('error', msg);
        return;
      case 'replaced':
        this.finalError = 'replaced';
        this.emit('message', msg);
        return;
      default:
        break;
    }
    const seq = Number(msg.seq) || 0;
    if (seq > 0) {
      if (seq <= this.lastSeq) return; // already processed (replay overlap)
      this.lastSeq = seq;
    }
    if (msg.type === 'bye' || msg.type === 'denied') this.finalError = msg.type;
    this.emit('message', msg);
  }

  startPing() {
    clearInterval(this.pingTimer);
    const every = Math.max(1000, Number(this.limits.ping_interval_ms) || 10000);
    this.lastRx = Date.now();
    this.pingTimer = setInterval(() => {
      // Every ping is answered; silence for two rounds means a half-open
      // socket (a network switch): drop it and resume on a new one.
      if (Date.now() - this.lastRx > 2 * every + 2000) {
        this.abandonSocket();
        return;
      }
      this.send({ type: 'ping' });
    }, every);
  }

  /** Gives up on the current socket without waiting for its close. */
  abandonSocket() {
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.pingTimer);
    if (ws) {
      try {
        ws.close();
      } catch {
        // Already closing.
      }
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped) return;
    this.setState('reconnecting');
    clearTimeout(this.retryTimer);
    // 0.25 s, 0.5 s, 1 s, then every 1.5 s, with a little jitter: a
    // restarted server has its patients back within two seconds.
    const base = Math.min(1500, 250 * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base * (0.8 + Math.random() * 0.4);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.ws) return;
    this.attempt = 0;
    this.open();
  }

  /** Sends one message; returns false when the socket is not open. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== 'open') return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Leaves for good: sends `leave` and stops reconnecting. */
  leave() {
    this.send({ type: 'leave' });
    this.stop();
  }

  /** Stops without a leave (the page goes away or the session ended). */
  stop() {
    this.stopped = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.retryTimer);
    window.removeEventListener('online', this.onOnline);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      // Give a just-sent leave a moment to go out before closing.
      const ws = this.ws;
      setTimeout(() => ws.close(1000), 200);
    }
    this.setState('closed');
  }
}
