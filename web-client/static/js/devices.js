// Camera, microphone and speaker: opening them with plain-language
// problems, listing them, switching camera in a call, sharing a screen, a
// level meter, a test tone, whether the relay (TURN) can be reached from
// this network, and whether this browser can make a WebRTC connection.

/**
 * Opens camera and microphone. Returns {stream, problem, videoProblem}:
 * `problem` (no stream at all) and `videoProblem` (audio only) are codes
 * with texts in messages.js: denied, nodevice, inuse, unsupported, failed.
 */
export async function openMedia({ audioId = '', videoId = '' } = {}) {
  if (!navigator.mediaDevices?.getUserMedia) return { stream: null, problem: 'unsupported' };
  const audio = audioId ? { deviceId: { exact: audioId } } : true;
  const video = {
    ...(videoId ? { deviceId: { exact: videoId } } : {}),
    width: { ideal: 1280 },
    height: { ideal: 720 },
  };
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio, video });
    return { stream, problem: null };
  } catch (err) {
    const problem = classify(err);
    if (problem === 'denied' || problem === 'unsupported') return { stream: null, problem };
    // Maybe only the camera is missing or busy: try the microphone alone.
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio, video: false });
      return { stream, problem: null, videoProblem: problem };
    } catch (err2) {
      return { stream: null, problem: classify(err2) };
    }
  }
}

/** Opens one kind alone (device switch). Throws a problem code. */
export async function openTrack(kind, deviceId) {
  const constraints =
    kind === 'audio'
      ? { audio: deviceId ? { deviceId: { exact: deviceId } } : true }
      : { video: { ...(deviceId ? { deviceId: { exact: deviceId } } : {}), width: { ideal: 1280 }, height: { ideal: 720 } } };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    return stream.getTracks()[0];
  } catch (err) {
    throw classify(err);
  }
}

const CAMERA_SIZE = { width: { ideal: 1280 }, height: { ideal: 720 } };

/**
 * Which way a camera track faces: "user" (the screen's side),
 * "environment" (the back) or null when the browser does not say.
 */
export function facingOf(track) {
  const mode = track?.getSettings?.().facingMode;
  if (mode === 'user' || mode === 'environment') return mode;
  // Some phones name the camera instead ("camera2 0, facing back").
  const label = track?.label || '';
  if (/\b(back|rear|environment)\b/i.test(label)) return 'environment';
  if (/\b(front|user|facetime)\b/i.test(label)) return 'user';
  return null;
}

/**
 * Whether the call can switch to another camera: more than one camera is
 * listed, or (where the browser lists none) the camera can face another way.
 */
export async function canSwitchCamera(track) {
  if (!track || track.readyState !== 'live') return false;
  const cameras = (await listDevices()).videoinput;
  if (cameras.length > 1) return true;
  const modes = track.getCapabilities?.().facingMode || [];
  return cameras.length === 0 && modes.length > 0;
}

/** What to ask for, in order, to get the camera after `current`. */
async function nextCameraConstraints(current) {
  const out = [];
  const facing = facingOf(current);
  // A phone: the other side of the phone, whatever its cameras are called.
  if (facing) out.push({ ...CAMERA_SIZE, facingMode: { exact: facing === 'user' ? 'environment' : 'user' } });
  // Otherwise (or when that fails) the next camera in the list.
  const cameras = (await listDevices()).videoinput;
  const id = current?.getSettings?.().deviceId;
  const at = cameras.findIndex((d) => d.deviceId === id);
  const next = cameras[(at + 1) % Math.max(1, cameras.length)];
  if (next && next.deviceId !== id) out.push({ ...CAMERA_SIZE, deviceId: { exact: next.deviceId } });
  if (!out.length) out.push({ ...CAMERA_SIZE, facingMode: { exact: 'environment' } });
  return out;
}

/**
 * Puts the next camera in `stream` in place of its camera track (front to
 * back on a phone, else the next one listed) and stops the old track.
 * Returns the new track, which keeps the old one's on/off state. Throws a
 * problem code; the stream then still has a camera where one could be
 * opened (a phone that opens one camera at a time had to let go of it).
 */
export async function switchCamera(stream) {
  const old = stream?.getVideoTracks()[0];
  if (!old) throw 'nodevice';
  const oldId = old.getSettings().deviceId;
  let problem = 'nodevice';
  let track = null;
  for (const video of await nextCameraConstraints(old)) {
    try {
      track = await openVideo(video);
    } catch (err) {
      problem = classify(err);
      if (problem === 'inuse' && old.readyState === 'live') {
        // Some phones open one camera at a time: let go of this one first.
        old.stop();
        track = await openVideo(video).catch((err2) => {
          problem = classify(err2);
          return null;
        });
      }
    }
    if (track) break;
  }
  if (!track && old.readyState === 'ended') {
    // The old camera was let go of and no other one opened: take it back.
    track = await openVideo({ ...CAMERA_SIZE, ...(oldId ? { deviceId: { exact: oldId } } : {}) }).catch(() => null);
    if (track) swapTrack(stream, old, track);
    throw problem;
  }
  if (!track) throw problem;
  swapTrack(stream, old, track);
  return track;
}

async function openVideo(video) {
  const stream = await navigator.mediaDevices.getUserMedia({ video });
  return stream.getVideoTracks()[0];
}

function swapTrack(stream, old, track) {
  track.enabled = old.enabled;
  stream.removeTrack(old);
  stream.addTrack(track);
  old.stop();
}

/** Whether this browser can share a screen (not on phones). */
export function canShareScreen() {
  return typeof navigator !== 'undefined' && typeof navigator.mediaDevices?.getDisplayMedia === 'function';
}

/**
 * Asks which screen, window or tab to share; resolves its video track.
 * Throws a problem code ("denied" also when the user cancels the choice).
 */
export async function openScreen() {
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    return stream.getVideoTracks()[0];
  } catch (err) {
    throw classify(err);
  }
}

function classify(err) {
  switch (err?.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return 'denied';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'nodevice';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'inuse';
    case 'TypeError':
      return 'unsupported';
    default:
      return 'failed';
  }
}

/** The devices by kind: {audioinput, videoinput, audiooutput}. */
export async function listDevices() {
  const out = { audioinput: [], videoinput: [], audiooutput: [] };
  if (!navigator.mediaDevices?.enumerateDevices) return out;
  try {
    for (const d of await navigator.mediaDevices.enumerateDevices()) {
      if (out[d.kind] && d.deviceId) out[d.kind].push(d);
    }
  } catch {
    // No list: the selects offer the default device only.
  }
  return out;
}

/** Whether this browser can choose the speaker of a media element. */
export function canChooseSpeaker() {
  return typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
}

/** Sends the output of `el` to speaker `sinkId` where supported. */
export async function setSpeaker(el, sinkId) {
  if (!canChooseSpeaker() || !el) return;
  try {
    await el.setSinkId(sinkId || '');
  } catch {
    // The default speaker stays.
  }
}

/**
 * Measures the loudness of the stream's audio. Calls `onLevel(0..1)` about
 * ten times a second; returns a function that stops it.
 */
export function levelMeter(stream, onLevel) {
  const track = stream?.getAudioTracks()[0];
  if (!track || typeof AudioContext === 'undefined') return () => {};
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  let shown = 0;
  const timer = setInterval(() => {
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    const rms = Math.sqrt(sum / data.length);
    // Speech RMS is roughly 0.01–0.3; a square root spreads it over the
    // bar. The bar falls slowly, so short sounds stay visible.
    shown = Math.max(Math.min(1, Math.sqrt(rms * 3)), shown * 0.85);
    onLevel(shown);
  }, 100);
  return () => {
    clearInterval(timer);
    source.disconnect();
    ctx.close().catch(() => {});
  };
}

/**
 * Plays a short, gentle two-note tone on speaker `sinkId` (through an
 * audio element, so the chosen speaker is used). Resolves when it ends.
 */
export async function playTestTone(sinkId, audioEl) {
  if (typeof AudioContext === 'undefined') return;
  const ctx = new AudioContext();
  const dest = ctx.createMediaStreamDestination();
  const gain = ctx.createGain();
  gain.connect(dest);
  const t0 = ctx.currentTime + 0.05;
  for (const [i, freq] of [523.25, 659.25].entries()) {
    const osc = ctx.createOscillator();
    osc.frequency.value = freq;
    osc.connect(gain);
    osc.start(t0 + i * 0.5);
    osc.stop(t0 + i * 0.5 + 0.45);
  }
  gain.gain.setValueAtTime(0, t0);
  gain.gain.linearRampToValueAtTime(0.3, t0 + 0.05);
  gain.gain.setValueAtTime(0.3, t0 + 0.9);
  gain.gain.linearRampToValueAtTime(0, t0 + 0.95);
  const el = audioEl || new Audio();
  el.srcObject = dest.stream;
  await setSpeaker(el, sinkId);
  try {
    await el.play();
  } catch {
    // Autoplay refused: the click should have allowed it; nothing to add.
  }
  await new Promise((resolve) => setTimeout(resolve, 1100));
  el.pause();
  el.srcObject = null;
  await ctx.close().catch(() => {});
}

/**
 * Whether the relay can be reached, and which ways: gathers candidates with
 * the relay only (one allocation per TURN URL: UDP, TCP, TLS) and collects
 * the transport of each relay candidate. After the first one it waits
 * `graceMs` more for the others (a blocked way can take many seconds to
 * give up). Resolves {result, transports}: result "ok", "unreachable" or
 * "unsupported"; transports the ways that worked, fastest first, of
 * "udp", "tcp", "tls". Never sends anything to a peer.
 */
export async function checkRelay(iceServers, timeoutMs = 10000, graceMs = 3000) {
  if (typeof RTCPeerConnection === 'undefined') return { result: 'unsupported', transports: [] };
  const turn = (iceServers || []).filter((s) =>
    [].concat(s.urls).some((u) => /^turns?:/.test(u)),
  );
  if (!turn.length) return { result: 'unreachable', transports: [] };
  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers: turn, iceTransportPolicy: 'relay' });
  } catch {
    return { result: 'unreachable', transports: [] };
  }
  const found = new Set();
  const done = () => {
    const transports = RELAY_TRANSPORTS.filter((x) => found.has(x));
    return { result: found.size ? 'ok' : 'unreachable', transports };
  };
  let timer;
  let grace;
  try {
    return await new Promise((resolve) => {
      timer = setTimeout(() => resolve(done()), timeoutMs);
      pc.addEventListener('icecandidate', ({ candidate }) => {
        if (!candidate) {
          resolve(done());
          return;
        }
        if (!/ typ relay /.test(candidate.candidate)) return;
        found.add(relayTransport(candidate));
        if (found.size === 1) grace = setTimeout(() => resolve(done()), graceMs);
      });
      pc.createDataChannel('check');
      pc.createOffer()
        .then((offer) => pc.setLocalDescription(offer))
        .catch(() => resolve(done()));
    });
  } finally {
    clearTimeout(timer);
    clearTimeout(grace);
    pc.close();
  }
}

/** The ways to the relay, fastest first. */
const RELAY_TRANSPORTS = ['udp', 'tcp', 'tls'];

/**
 * How a relay candidate reaches the relay: `relayProtocol` where the
 * browser tells it, else from its priority's type preference (libwebrtc
 * gives relay candidates 2 over UDP, 1 over TCP, 0 over TLS).
 */
function relayTransport(candidate) {
  if (RELAY_TRANSPORTS.includes(candidate.relayProtocol)) return candidate.relayProtocol;
  const priority = Number(candidate.priority ?? candidate.candidate.split(' ')[3]);
  return RELAY_TRANSPORTS[2 - Math.min(2, priority >>> 24)] || 'udp';
}

/**
 * Whether this browser can make a WebRTC connection at all: two peer
 * connections in this page, without ICE servers, connect to each other and
 * carry one message over a data channel. Resolves "ok", "failed" or
 * "unsupported". Nothing leaves the device and no server is asked (not
 * even STUN); whether the relay can be reached is `checkRelay`'s question.
 */
export async function checkLoopback(timeoutMs = 10000) {
  if (typeof RTCPeerConnection === 'undefined') return 'unsupported';
  const pcs = [];
  try {
    pcs.push(new RTCPeerConnection({ iceServers: [] }), new RTCPeerConnection({ iceServers: [] }));
  } catch {
    for (const pc of pcs) pc.close();
    return 'unsupported';
  }
  const [a, b] = pcs;
  let timer;
  try {
    return await new Promise((resolve) => {
      timer = setTimeout(() => resolve('failed'), timeoutMs);
      b.addEventListener('datachannel', ({ channel }) => {
        channel.addEventListener('message', ({ data }) => {
          if (data === 'check') resolve('ok');
        });
      });
      const channel = a.createDataChannel('check');
      channel.addEventListener('open', () => channel.send('check'));
      // Each description is passed on with all its candidates (no trickle):
      // host candidates only, so gathering ends at once.
      (async () => {
        await a.setLocalDescription(await a.createOffer());
        await gathered(a);
        await b.setRemoteDescription(a.localDescription);
        await b.setLocalDescription(await b.createAnswer());
        await gathered(b);
        await a.setRemoteDescription(b.localDescription);
      })().catch(() => resolve('failed'));
    });
  } finally {
    clearTimeout(timer);
    a.close();
    b.close();
  }
}

/** Resolves when `pc` has gathered its ICE candidates. */
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** Stops every track of a stream. */
export function stopStream(stream) {
  for (const track of stream?.getTracks() || []) track.stop();
}
