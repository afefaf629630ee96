// The WebRTC side of a consultation, shared by the join page and the
// dashboard: one RTCPeerConnection with the perfect-negotiation pattern
// (the `polite` flag from welcome), trickle ICE, ICE restart on failure,
// and `stats` reports every second (the server checks them, with what its
// relay observed, to hold that media flowed both ways, which makes the
// consultation billable).
//
// Who offers first (docs/protocol.md): the therapist (impolite). The
// patient (polite) makes no offer of its own before it has answered the
// therapist's first offer, so a peer without rollback on the other side
// never meets a glare; later both sides may offer.
//
// Use:
//   const call = new Call({ signaling, polite, iceServers, relayOnly, stream });
//   call.setMediaState({ audio, video, screen }); // before start, and on every change
//   call.start();                       // on peer_joined
//   call.handle(msg);                   // offer/answer/candidate/...
//   call.replaceTrack(track);           // another camera, or a shared screen
//   call.addEventListener('remotestream' | 'state' | 'quality', ...)
//   call.close();                       // on peer_left / bye / leave
//
// Messages that cannot be sent while the signaling socket is down are kept
// and sent after the resume; a resume restarts ICE only when the media path
// is not connected (a server restart leaves a working call alone).
//
// Below the call, what both pages show of it: `ConnectionIndicator` (the
// connection in three words, from `connectionLevel` steadied by
// `ConnectionMeter`), `PeerMedia` (the other side's microphone, camera and
// screen in words, from `peerNotices`) and `ViewModes` (picture in picture
// and full screen of the other side). Texts come in as a `t` function, so
// this module loads without a page (the Node tests import it).

import { announce, h, replace } from './dom.js';

const STATS_INTERVAL_MS = 1000;
/** How long ICE may stay "disconnected" before we restart it. */
const DISCONNECTED_GRACE_MS = 4000;
const CANDIDATE_TYPES = new Set(['host', 'srflx', 'prflx', 'relay']);

export class Call extends EventTarget {
  constructor({ signaling, polite, iceServers, relayOnly, stream }) {
    super();
    this.signaling = signaling;
    this.polite = Boolean(polite);
    this.iceServers = iceServers || [];
    this.relayOnly = Boolean(relayOnly);
    this.stream = stream || null;
    this.pc = null;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.queue = Promise.resolve();
    this.pending = [];
    this.statsTimer = null;
    this.disconnectedTimer = null;
    this.prev = null;
    this.remoteStream = null;
    this.closed = false;
    this.iceRestarts = 0;
    this.answeredOnce = false;
    this.mediaState = null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Creates the peer connection, adds our tracks and starts negotiating. */
  start() {
    this.closePc();
    this.closed = false;
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers.map((s) => ({
        urls: s.urls,
        ...(s.username ? { username: s.username } : {}),
        ...(s.credential ? { credential: s.credential } : {}),
      })),
      iceTransportPolicy: this.relayOnly ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
    });
    this.pc = pc;
    this.remoteStream = new MediaStream();
    this.emit('remotestream', this.remoteStream);

    pc.addEventListener('negotiationneeded', async () => {
      // The polite side waits for the impolite side's first offer.
      if (this.polite && !this.answeredOnce) return;
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this.send({ type: 'offer', sdp: pc.localDescription.sdp });
      } catch (err) {
        console.warn('negotiation failed', err);
      } finally {
        this.makingOffer = false;
      }
    });

    pc.addEventListener('icecandidate', ({ candidate }) => {
      if (!candidate || !candidate.candidate) {
        this.send({ type: 'end_of_candidates' });
        return;
      }
      const msg = { type: 'candidate', candidate: candidate.candidate };
      if (candidate.sdpMid !== null && candidate.sdpMid !== undefined) msg.sdp_mid = candidate.sdpMid;
      if (candidate.sdpMLineIndex !== null && candidate.sdpMLineIndex !== undefined) {
        msg.sdp_m_line_index = candidate.sdpMLineIndex;
      }
      if (candidate.usernameFragment) msg.username_fragment = candidate.usernameFragment;
      this.send(msg);
    });

    pc.addEventListener('track', ({ track }) => {
      if (!this.remoteStream.getTracks().includes(track)) this.remoteStream.addTrack(track);
      this.emit('remotestream', this.remoteStream);
      track.addEventListener('unmute', () => this.emit('remotestream', this.remoteStream));
    });

    pc.addEventListener('connectionstatechange', () => this.onConnectionState());
    pc.addEventListener('iceconnectionstatechange', () => this.onConnectionState());

    // addTrack, not addTransceiver: by JSEP a track added this way is
    // matched to the peer's m-line in a glare, so the call keeps one audio
    // and one video section. The impolite side also asks to receive a
    // kind it has no track for, so the peer's media arrives regardless.
    const tracks = this.stream ? this.stream.getTracks() : [];
    for (const track of tracks) pc.addTrack(track, this.stream);
    if (!this.polite) {
      for (const kind of ['audio', 'video']) {
        if (!tracks.some((t) => t.kind === kind)) pc.addTransceiver(kind, { direction: 'recvonly' });
      }
    }

    this.statsTimer = setInterval(() => this.reportStats(), STATS_INTERVAL_MS);
    // The call has started: the peer learns our microphone and camera.
    this.sendMediaState();
  }

  /**
   * This side's microphone (`audio`), camera (`video`) and whether the
   * picture sent is a shared screen (`screen`): sent to the peer now when
   * in the call, when the call starts and after each resume.
   */
  setMediaState({ audio, video, screen = false }) {
    this.mediaState = { audio: Boolean(audio), video: Boolean(video), screen: Boolean(screen) };
    this.sendMediaState();
  }

  sendMediaState() {
    if (!this.pc || this.closed || !this.mediaState) return;
    // A snapshot, like stats: never queued; the resume sends the latest.
    this.signaling.send({ type: 'media_state', ...this.mediaState });
  }

  onConnectionState() {
    const pc = this.pc;
    if (!pc) return;
    const state = pc.connectionState;
    this.emit('state', state);
    clearTimeout(this.disconnectedTimer);
    if (state === 'failed' || pc.iceConnectionState === 'failed') {
      this.restartIce();
    } else if (state === 'disconnected') {
      this.disconnectedTimer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState === 'disconnected') this.restartIce();
      }, DISCONNECTED_GRACE_MS);
    }
  }

  /** Restarts ICE; the resulting offer goes through perfect negotiation. */
  restartIce() {
    if (!this.pc || this.closed) return;
    this.iceRestarts += 1;
    this.pc.restartIce();
  }

  /** Sends now, or after the signaling socket is back. */
  send(msg) {
    if (!this.signaling.send(msg)) this.pending.push(msg);
  }

  /**
   * After a signaling resume: send what could not be sent, then restart
   * ICE if the media path is down (a changed network path is found at
   * once); a call whose media kept flowing is left alone.
   */
  resumed() {
    const pending = this.pending;
    this.pending = [];
    for (const msg of pending) this.send(msg);
    this.sendMediaState();
    if (this.pc && !this.closed && this.pc.connectionState !== 'connected') this.restartIce();
  }

  /** Handles one call message from the peer, in order. */
  handle(msg) {
    this.queue = this.queue.then(() => this.handleNow(msg)).catch((err) => {
      console.warn('signaling message failed', msg.type, err);
    });
    return this.queue;
  }

  async handleNow(msg) {
    const pc = this.pc;
    if (!pc) return;
    switch (msg.type) {
      case 'offer':
      case 'answer': {
        const description = { type: msg.type, sdp: msg.sdp };
        const collision = msg.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
        this.ignoreOffer = !this.polite && collision;
        if (this.ignoreOffer) return;
        if (msg.type === 'answer' && pc.signalingState !== 'have-local-offer') return;
        await pc.setRemoteDescription(description);
        if (msg.type === 'offer') {
          await pc.setLocalDescription();
          this.send({ type: 'answer', sdp: pc.localDescription.sdp });
          this.answeredOnce = true;
        }
        return;
      }
      case 'candidate': {
        const init = { candidate: msg.candidate };
        if (msg.sdp_mid !== undefined && msg.sdp_mid !== null) init.sdpMid = msg.sdp_mid;
        if (msg.sdp_m_line_index !== undefined && msg.sdp_m_line_index !== null) {
          init.sdpMLineIndex = msg.sdp_m_line_index;
        }
        if (init.sdpMid === undefined && init.sdpMLineIndex === undefined) init.sdpMLineIndex = 0;
        if (msg.username_fragment) init.usernameFragment = msg.username_fragment;
        try {
          await pc.addIceCandidate(init);
        } catch (err) {
          if (!this.ignoreOffer) console.warn('candidate refused', err);
        }
        return;
      }
      case 'end_of_candidates':
        // Browsers finish gathering on their own; a late marker from an
        // older ICE generation would only raise an error.
        return;
      case 'ice_restart':
        this.restartIce();
        return;
      default:
        return;
    }
  }

  /**
   * Puts a new camera or microphone track, or a shared screen, on the call
   * without a renegotiation (the sender keeps its place); `null` with a
   * `kind` sends nothing of that kind. Only a call that sent nothing of the
   * kind before renegotiates, to start sending.
   */
  async replaceTrack(track, kind = track?.kind) {
    const pc = this.pc;
    if (!pc || !kind) return;
    const ofKind = pc.getTransceivers().filter((x) => !x.stopped && x.receiver.track?.kind === kind);
    const transceiver = ofKind.find((x) => x.sender.track) || ofKind.find((x) => x.direction !== 'inactive');
    if (transceiver) {
      await transceiver.sender.replaceTrack(track);
      if (track && transceiver.direction === 'recvonly') transceiver.direction = 'sendrecv';
    } else if (track) {
      pc.addTrack(track, this.stream || new MediaStream([track]));
    }
  }

  /** Reads the statistics, reports them to the server and to the page. */
  async reportStats() {
    const pc = this.pc;
    if (!pc) return;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    const s = summarize(report);
    const now = performance.now();
    let kbps = null;
    let lossPct = null;
    let fps = null;
    // No byte arrived since the last report while the call had media: the
    // other side's media stopped, whatever the connection state says.
    const stalled = Boolean(this.prev && this.prev.bytesReceived > 0 && s.bytesReceived <= this.prev.bytesReceived);
    if (this.prev) {
      const dt = (now - this.prev.at) / 1000;
      if (dt > 0) kbps = Math.max(0, ((s.bytesReceived - this.prev.bytesReceived) * 8) / 1000 / dt);
      if (dt > 0) fps = Math.max(0, (s.framesReceived - this.prev.framesReceived) / dt);
      const got = s.packetsReceived - this.prev.packetsReceived;
      const lost = s.packetsLost - this.prev.packetsLost;
      if (got + lost > 0) lossPct = Math.max(0, (100 * lost) / (got + lost));
    }
    this.prev = { at: now, ...s };
    const msg = {
      type: 'stats',
      connection_state: pc.connectionState,
      bytes_received: Math.round(s.bytesReceived),
      frames_received: Math.round(s.framesReceived),
      audio_packets_received: Math.round(s.audioPacketsReceived),
      bytes_sent: Math.round(s.bytesSent),
    };
    if (CANDIDATE_TYPES.has(s.candidateType)) msg.selected_candidate_type = s.candidateType;
    // Stats are a snapshot: never queued for later.
    this.signaling.send(msg);
    this.emit('quality', {
      connectionState: pc.connectionState,
      candidateType: s.candidateType,
      rttMs: s.rttMs,
      lossPct,
      kbps,
      fps,
      framesDecoded: s.framesDecoded,
      audioPacketsReceived: s.audioPacketsReceived,
      stalled,
    });
  }

  closePc() {
    clearInterval(this.statsTimer);
    clearTimeout(this.disconnectedTimer);
    this.statsTimer = null;
    this.prev = null;
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
    this.pending = [];
    this.queue = Promise.resolve();
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.answeredOnce = false;
  }

  /** Ends the call on this side. */
  close() {
    this.closed = true;
    this.closePc();
    this.emit('state', 'closed');
  }
}

/** The numbers we need from one getStats() report. */
export function summarize(report) {
  const out = {
    bytesReceived: 0,
    bytesSent: 0,
    framesReceived: 0,
    framesDecoded: 0,
    audioPacketsReceived: 0,
    packetsReceived: 0,
    packetsLost: 0,
    candidateType: null,
    rttMs: null,
  };
  let pairId = null;
  const pairs = [];
  report.forEach((stat) => {
    if (stat.type === 'inbound-rtp') {
      out.bytesReceived += stat.bytesReceived || 0;
      out.packetsReceived += stat.packetsReceived || 0;
      out.packetsLost += Math.max(0, stat.packetsLost || 0);
      if (stat.kind === 'video') {
        out.framesReceived += stat.framesReceived || 0;
        out.framesDecoded += stat.framesDecoded || 0;
      } else if (stat.kind === 'audio') {
        out.audioPacketsReceived += stat.packetsReceived || 0;
      }
    } else if (stat.type === 'outbound-rtp') {
      out.bytesSent += stat.bytesSent || 0;
    } else if (stat.type === 'transport' && stat.selectedCandidatePairId) {
      pairId = stat.selectedCandidatePairId;
    } else if (stat.type === 'candidate-pair') {
      pairs.push(stat);
    }
  });
  const pair =
    (pairId && report.get(pairId)) || pairs.find((p) => p.selected) || pairs.find((p) => p.nominated && p.state === 'succeeded');
  if (pair) {
    const local = report.get(pair.localCandidateId);
    if (local) out.candidateType = local.candidateType;
    if (typeof pair.currentRoundTripTime === 'number') out.rttMs = pair.currentRoundTripTime * 1000;
  }
  return out;
}

// ---------- What the pages show of the call ----------

/** Round-trip time above which the connection is called weak. */
const WEAK_RTT_MS = 400;
/** Share of packets lost (per reading) above which it is called weak. */
const WEAK_LOSS_PCT = 5;
/** Frames per second below which a moving picture counts as frozen. */
const WEAK_FPS = 1;

/**
 * The connection in three words a patient understands, from one `quality`
 * reading: "lost" (no media path, or nothing arrives), "weak" (slow,
 * lossy, or a picture that should move but stands still), "good"; null
 * while still connecting. `expectVideo`: the peer sends a moving picture
 * (camera on, no shared screen, which may rightly stand still).
 */
export function connectionLevel(q, { expectVideo = true } = {}) {
  if (!q) return null;
  if (q.stalled || ['disconnected', 'failed', 'closed'].includes(q.connectionState)) return 'lost';
  if (q.connectionState !== 'connected') return null;
  const slow = typeof q.rttMs === 'number' && q.rttMs > WEAK_RTT_MS;
  const lossy = typeof q.lossPct === 'number' && q.lossPct > WEAK_LOSS_PCT;
  const frozen = expectVideo && typeof q.fps === 'number' && q.fps < WEAK_FPS;
  return slow || lossy || frozen ? 'weak' : 'good';
}

/**
 * Steadies the connection level for the screen: a new level is shown once
 * it was read twice in a row, and at most once every `minIntervalMs` (the
 * first level at once), so the indicator neither flickers nor chatters in
 * a screen reader.
 *
 *   const meter = new ConnectionMeter();
 *   const { level, changed } = meter.update(connectionLevel(q), now);
 *   meter.reset();                      // the call ended
 */
export class ConnectionMeter {
  constructor({ minIntervalMs = 3000 } = {}) {
    this.minIntervalMs = minIntervalMs;
    this.reset();
  }

  reset() {
    this.level = null;
    this.changedAt = -Infinity;
    this.candidate = null;
    this.seen = 0;
  }

  /** Feeds one reading (null: not known yet); returns {level, changed}. */
  update(reading, now) {
    if (reading === null) {
      this.candidate = null;
      this.seen = 0;
      return { level: this.level, changed: false };
    }
    this.seen = reading === this.candidate ? this.seen + 1 : 1;
    this.candidate = reading;
    const due = this.level === null || now - this.changedAt >= this.minIntervalMs;
    if (reading !== this.level && this.seen >= 2 && due) {
      this.level = reading;
      this.changedAt = now;
      return { level: reading, changed: true };
    }
    return { level: this.level, changed: false };
  }
}

/**
 * What the other side chose, to show in this order: a shared screen, then
 * a microphone and a camera turned off; each a message key and an icon.
 * `from`: "patient" or "therapist"; `ms`: their latest media_state, or null.
 */
export function peerNotices(from, ms) {
  if (!ms || (from !== 'patient' && from !== 'therapist')) return [];
  const out = [];
  if (ms.screen) out.push({ key: `peer.${from}.screen`, icon: 'share' });
  if (ms.audio === false) out.push({ key: `peer.${from}.micOff`, icon: 'mic-off' });
  // The camera may be off while a screen is shown: the screen is what counts.
  if (ms.video === false && !ms.screen) out.push({ key: `peer.${from}.camOff`, icon: 'cam-off' });
  return out;
}

/**
 * What turned back on between two media states of the peer, as message
 * keys to read out ("… har tændt mikrofonen igen").
 */
export function peerTurnedOn(from, before, now) {
  if (!before || !now || (from !== 'patient' && from !== 'therapist')) return [];
  const keys = [];
  if (before.audio === false && now.audio) keys.push(`peer.${from}.micOn`);
  if (before.video === false && now.video && !now.screen) keys.push(`peer.${from}.camOn`);
  return keys;
}

/**
 * Picture in picture of the other side's `video`, and full screen of its
 * `container` (so the controls inside stay over the picture; Esc or the
 * back gesture leaves it). Emits `change` when either starts or ends,
 * whoever started or ended it, and when the picture comes or goes.
 */
export class ViewModes extends EventTarget {
  constructor(video, container) {
    super();
    this.video = video;
    this.container = container;
    this.stopListening = new AbortController();
    const changed = () => this.dispatchEvent(new Event('change'));
    const opts = { signal: this.stopListening.signal };
    // A picture (its size known) makes picture in picture possible.
    for (const type of ['enterpictureinpicture', 'leavepictureinpicture', 'loadedmetadata', 'resize', 'emptied']) {
      video.addEventListener(type, changed, opts);
    }
    document.addEventListener('fullscreenchange', changed, opts);
    document.addEventListener('webkitfullscreenchange', changed, opts);
  }

  /** Whether this browser offers picture in picture (not every phone does). */
  get canPip() {
    return Boolean(document.pictureInPictureEnabled) && !this.video.disablePictureInPicture;
  }

  /** Whether the picture is there to be shown in picture in picture. */
  get pipReady() {
    return this.video.readyState >= 1 && this.video.videoWidth > 0;
  }

  get inPip() {
    return document.pictureInPictureElement === this.video;
  }

  /** Whether this browser can show an element in full screen (an iPhone cannot). */
  get canFullscreen() {
    return Boolean(document.fullscreenEnabled || document.webkitFullscreenEnabled);
  }

  get inFullscreen() {
    const el = document.fullscreenElement || document.webkitFullscreenElement;
    return Boolean(el) && el === this.container;
  }

  async togglePip() {
    if (this.inPip) await document.exitPictureInPicture();
    else if (this.canPip && this.pipReady) await this.video.requestPictureInPicture();
  }

  async toggleFullscreen() {
    if (this.inFullscreen) {
      await (document.exitFullscreen ? document.exitFullscreen() : document.webkitExitFullscreen());
    } else if (this.container.requestFullscreen) {
      await this.container.requestFullscreen({ navigationUI: 'hide' });
    } else if (this.container.webkitRequestFullscreen) {
      this.container.webkitRequestFullscreen();
    }
  }

  /** Leaves both (the call ended). */
  leave() {
    if (this.inPip) document.exitPictureInPicture().catch(() => {});
    if (this.inFullscreen) {
      if (document.exitFullscreen) document.exitFullscreen().catch(() => {});
      else document.webkitExitFullscreen();
    }
  }

  /** Leaves both and stops listening (the page goes away). */
  dispose() {
    this.leave();
    this.stopListening.abort();
  }
}

/**
 * The connection in a word over the picture, in `el` (an icon and a
 * label): hidden until the first level is known, read out (politely) only
 * when the level changes after that.
 *
 *   const net = new ConnectionIndicator(el, t);
 *   net.update(quality, { expectVideo });   // each `quality` event
 *   net.reset();                            // the call ended
 *   net.render();                           // after a language switch
 */
export class ConnectionIndicator {
  constructor(el, t) {
    this.el = el;
    this.t = t;
    this.meter = new ConnectionMeter();
  }

  get level() {
    return this.meter.level;
  }

  update(q, { expectVideo = true } = {}) {
    const before = this.meter.level;
    const { changed } = this.meter.update(connectionLevel(q, { expectVideo }), performance.now());
    if (!changed) return;
    this.render();
    if (before) announce(this.label());
  }

  reset() {
    this.meter.reset();
    this.render();
  }

  label() {
    return this.t('net.label', { level: this.t(`net.${this.meter.level}`) });
  }

  render() {
    const level = this.meter.level;
    this.el.hidden = !level;
    if (!level) return;
    this.el.dataset.level = level;
    this.el.querySelector('.icon').className = `icon net-${level}`;
    this.el.querySelector('.label').textContent = this.label();
  }
}

/**
 * What the other side (`from`: "patient" or "therapist") has turned off or
 * shows, as lines in `box`, a polite live region (a new line is read out);
 * turning something on again is read out too.
 *
 *   const peer = new PeerMedia(box, 'therapist', t);
 *   peer.receive(msg);     // a media_state
 *   peer.clear();          // the peer left, the call ended
 *   peer.render();         // after a language switch
 */
export class PeerMedia {
  constructor(box, from, t) {
    this.box = box;
    this.from = from;
    this.t = t;
    /** The latest {audio, video, screen}, or null (nothing heard yet). */
    this.state = null;
  }

  /** Whether a shared screen is shown. */
  get screen() {
    return Boolean(this.state?.screen);
  }

  /** Whether the picture should move (camera on, no shared screen). */
  get moving() {
    return !this.state || (this.state.video && !this.state.screen);
  }

  receive(msg) {
    if (msg.from !== this.from) return;
    const before = this.state;
    this.state = { audio: msg.audio !== false, video: msg.video !== false, screen: msg.screen === true };
    this.render();
    for (const key of peerTurnedOn(this.from, before, this.state)) announce(this.t(key));
  }

  clear() {
    this.state = null;
    this.render();
  }

  render() {
    const notices = peerNotices(this.from, this.state);
    const lines = [...this.box.children];
    // Lines already shown stay (a live region reads only what is new).
    if (lines.map((el) => el.dataset.key).join() === notices.map((n) => n.key).join()) {
      for (const el of lines) el.lastChild.textContent = this.t(el.dataset.key);
      return;
    }
    replace(
      this.box,
      ...notices.map(({ key, icon }) =>
        h('p', { class: 'peer-notice', dataset: { key } }, h('span', { class: `icon ${icon}`, 'aria-hidden': 'true' }), ' ', h('span', { text: this.t(key) })),
      ),
    );
  }
}
