// The WebRTC side of a consultation, shared by the join page and the
// dashboard: one RTCPeerConnection with the perfect-negotiation pattern
// (the `polite` flag from welcome), trickle ICE, ICE restart on failure,
// and `stats` reports every two seconds (the server needs them to see that
// media flowed both ways, which makes the consultation billable).
//
// Use:
//   const call = new Call({ signaling, polite, iceServers, relayOnly, stream });
//   call.start();                       // on peer_joined
//   call.handle(msg);                   // offer/answer/candidate/...
//   call.addEventListener('remotestream' | 'state' | 'quality', ...)
//   call.close();                       // on peer_left / bye / leave
//
// Messages that cannot be sent while the signaling socket is down are kept
// and sent after the resume; a resume in the call also restarts ICE, since
// a network drop often means a new network path.

const STATS_INTERVAL_MS = 2000;
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
   * ICE so a changed network path is found at once.
   */
  resumed() {
    const pending = this.pending;
    this.pending = [];
    for (const msg of pending) this.send(msg);
    if (this.pc && !this.closed) this.restartIce();
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

  /** Puts a new camera or microphone track on the call (device switch). */
  async replaceTrack(track) {
    if (!this.pc) return;
    const sender = this.pc.getSenders().find((x) => x.track && x.track.kind === track.kind);
    if (sender) await sender.replaceTrack(track);
    else if (this.stream) this.pc.addTrack(track, this.stream);
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
    if (this.prev) {
      const dt = (now - this.prev.at) / 1000;
      if (dt > 0) kbps = Math.max(0, ((s.bytesReceived - this.prev.bytesReceived) * 8) / 1000 / dt);
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
      framesDecoded: s.framesDecoded,
      audioPacketsReceived: s.audioPacketsReceived,
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
