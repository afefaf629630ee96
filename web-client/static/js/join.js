// The patient's join page, /join/<token>: link status, first screen,
// device and connection check, waiting room, call, and the pages after.
// The token is read from the address, never templated by the server.

import { api, ApiError } from './api.js';
import { Call, ConnectionIndicator, PeerMedia, ViewModes } from './call.js';
import {
  canChooseSpeaker,
  canSwitchCamera,
  checkRelay,
  facingOf,
  listDevices,
  openMedia,
  playTestTone,
  setSpeaker,
  stopStream,
  switchCamera,
} from './devices.js';
import { openForCheck, renderCamera, renderMicrophone, setStatus, watchMicrophone } from './device-check.js';
import { $, announce, focusOn, h, replace, showOnly } from './dom.js';
import { applyI18n, fmtLongDate, fmtTime, lang, onLangChange, t, wireLangButton } from './i18n.js';
import { Signaling, signalingUrl } from './signaling.js';

const token = decodeURIComponent(location.pathname.replace(/^\/join\//, '').split('/')[0] || '');

const screens = {
  loading: $('#s-loading'),
  message: $('#s-message'),
  welcome: $('#s-welcome'),
  check: $('#s-check'),
  waiting: $('#s-waiting'),
  call: $('#s-call'),
};

const state = {
  info: null,
  stream: null,
  videoProblem: null,
  problem: null,
  stopMeter: () => {},
  micHeard: false,
  speaker: null, // null: not tested, true: heard, false: not heard
  relay: 'wait', // wait | ok | bad | later
  relayTransports: [], // the ways to the relay that worked: udp, tcp, tls
  sel: { camera: '', mic: '', speaker: '' },
  signaling: null,
  call: null,
  welcome: null,
  inCall: false,
  rerender: () => {},
  pcState: 'new',
  bannerShown: false,
  bannerTimer: null,
  earlyTimer: null,
  // The physiotherapist's microphone, camera and screen; the connection.
  peer: new PeerMedia($('#peer-state'), 'therapist', t),
  net: new ConnectionIndicator($('#net-level'), t),
  canSwitchCamera: false,
  views: null,
};

function show(name, { focus = true } = {}) {
  showOnly(Object.values(screens), screens[name]);
  // The stylesheet lays the call out to fill the screen (body[data-screen="call"]).
  document.body.dataset.screen = name;
  if (focus) focusOn(screens[name].querySelector('h1'));
}

/** Shows a message page (unknown, expired, revoked, early, errors). */
function showMessage(titleKey, textKey, helpKey, { vars = {}, actions = [] } = {}) {
  state.rerender = () => {
    $('#message-title').textContent = t(titleKey, vars);
    $('#message-text').textContent = t(textKey, vars);
    $('#message-help').textContent = helpKey ? t(helpKey, vars) : '';
    $('#message-help').hidden = !helpKey;
    const call = clinicCall();
    replace($('#message-actions'), ...actions.map((a) => a()), ...(call ? [call] : []));
  };
  state.rerender();
  show('message');
}

/**
 * Whom to call, on every message page: the clinic's phone number as a
 * link that dials it, or the clinic's name when it has set no number (a
 * link that never existed names no clinic).
 */
function clinicCall() {
  const info = state.info;
  if (!info || (!info.clinic_phone && !info.clinic_name)) return null;
  if (!info.clinic_phone) {
    return h('p', { id: 'ask-clinic', text: t('join.askClinic', { clinic: info.clinic_name }) });
  }
  const clinic = info.clinic_name || t('join.theClinic');
  return h('a', {
    class: 'button big',
    id: 'call-clinic',
    href: `tel:${info.clinic_phone.replace(/\s+/g, '')}`,
    text: t('join.callClinic', { clinic, phone: info.clinic_phone }),
  });
}

// ---------- Link status ----------

async function loadLink() {
  clearTimeout(state.earlyTimer);
  let info;
  try {
    info = await api.get(`/api/join/${encodeURIComponent(token)}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 400)) info = { status: 'unknown' };
    else if (err instanceof ApiError && err.status === 410) info = { status: err.problem.status_text || 'expired' };
    else {
      showMessage('join.error.title', 'common.network', null, {
        actions: [() => h('button', { type: 'button', class: 'primary big', text: t('common.retry'), on: { click: loadLink } })],
      });
      return;
    }
  }
  state.info = info;
  document.body.dataset.linkStatus = info.status;
  switch (info.status) {
    case 'valid':
      showWelcome();
      return;
    case 'not_yet_open':
      showEarly(info);
      return;
    // A dead link names its clinic: whom to call.
    case 'expired': {
      const vars = { clinic: info.clinic_name || '' };
      const withClinic = info.clinic_name ? 'Clinic' : '';
      if (info.closed_as === 'cancelled') {
        showMessage('join.cancelled.title', 'join.cancelled.text', `join.cancelled.help${withClinic}`, { vars });
      } else {
        showMessage('join.expired.title', 'join.expired.text', `join.expired.help${withClinic}`, { vars });
      }
      return;
    }
    case 'ended':
      showMessage('end.title', 'end.text', info.clinic_name ? 'end.helpClinic' : null, { vars: { clinic: info.clinic_name || '' } });
      return;
    case 'revoked':
      showMessage('join.revoked.title', 'join.revoked.text', info.clinic_name ? 'join.revoked.helpClinic' : 'join.revoked.help', {
        vars: { clinic: info.clinic_name || '' },
      });
      return;
    default:
      showMessage('join.unknown.title', 'join.unknown.text', 'join.unknown.help');
  }
}

/** Before the day: camera and microphone can be tried on the rehearsal page. */
const rehearse = () => h('a', { class: 'button primary big', id: 'rehearse', href: '/proeve', text: t('join.early.rehearse') });

function showEarly(info) {
  const opens = info.opens_at ? new Date(info.opens_at) : null;
  if (opens && !Number.isNaN(opens.getTime())) {
    showMessage('join.early.title', 'join.early.text', 'join.early.help', {
      vars: { date: fmtLongDate(opens), time: fmtTime(opens) },
      actions: [rehearse],
    });
    // Look again when the link opens (and every minute, in case the clock
    // of this device is off).
    const wait = Math.min(Math.max(opens.getTime() - Date.now() + 1000, 5000), 60000);
    state.earlyTimer = setTimeout(loadLink, wait);
  } else {
    showMessage('join.early.title', 'join.early.nodate', null, { actions: [rehearse] });
  }
}

// ---------- First screen ----------

function showWelcome() {
  const info = state.info;
  state.rerender = () => {
    const withText = info.therapist_name
      ? t('join.welcome.with', { therapist: info.therapist_name, clinic: info.clinic_name || '' })
      : t('join.welcome.withClinic', { clinic: info.clinic_name || '' });
    $('#welcome-with').textContent = withText;
    if (info.start) {
      const d = new Date(info.start);
      $('#welcome-when').textContent = t('join.welcome.when', { date: fmtLongDate(d), time: fmtTime(d) });
    }
    $('#welcome-length').textContent = info.length_minutes ? t('join.welcome.length', { n: info.length_minutes }) : '';
    // What the patient pays, as the server words it from the clinic's fee
    // for the day (own payment for speciale 51, free for speciale 62).
    const payment = $('#welcome-payment');
    const sentence = info.payment ? (lang() === 'en' ? info.payment.en : info.payment.da) : '';
    payment.textContent = sentence;
    payment.hidden = !sentence;
  };
  state.rerender();
  show('welcome');
}

// ---------- Device and connection check ----------

async function startCheck() {
  show('check');
  state.rerender = renderCheck;
  await openDevices();
  await fillDeviceLists();
  runRelayCheck();
}

async function openDevices() {
  state.stopMeter();
  stopStream(state.stream);
  state.stream = null;
  state.micHeard = false;
  renderCheck();
  const res = await openForCheck({ audioId: state.sel.mic, videoId: state.sel.camera });
  state.stream = res.stream;
  state.problem = res.problem;
  state.videoProblem = res.videoProblem;
  $('#preview').srcObject = state.stream && state.stream.getVideoTracks().length ? state.stream : null;
  if (state.stream) {
    state.stopMeter = watchMicrophone(state.stream, $('#mic-level'), () => {
      state.micHeard = true;
      renderCheck();
      announce(t('check.mic.ok'));
    });
  }
  renderCheck();
}

async function fillDeviceLists() {
  const devices = await listDevices();
  const fill = (select, list, selected) => {
    const options = list.map((d, i) =>
      h('option', { value: d.deviceId, selected: d.deviceId === selected, text: d.label || `${select.dataset.kind} ${i + 1}` }),
    );
    if (!options.length) options.push(h('option', { value: '', text: t('check.devices.none') }));
    replace(select, ...options);
  };
  const current = (kind) => state.stream?.getTracks().find((x) => x.kind === kind)?.getSettings().deviceId || '';
  $('#sel-camera').dataset.kind = t('check.devices.camera');
  $('#sel-mic').dataset.kind = t('check.devices.mic');
  $('#sel-speaker').dataset.kind = t('check.devices.speaker');
  fill($('#sel-camera'), devices.videoinput, state.sel.camera || current('video'));
  fill($('#sel-mic'), devices.audioinput, state.sel.mic || current('audio'));
  $('#field-speaker').hidden = !canChooseSpeaker() || !devices.audiooutput.length;
  fill($('#sel-speaker'), devices.audiooutput, state.sel.speaker);
}

async function runRelayCheck() {
  state.relay = 'wait';
  state.relayTransports = [];
  renderCheck();
  let servers = null;
  try {
    const res = await api.get(`/api/join/${encodeURIComponent(token)}/ice-servers`);
    servers = res.ice_servers || [];
  } catch {
    // Not offered by this server (or the link closed meanwhile): the call
    // itself will show whether the connection works.
    state.relay = 'later';
    renderCheck();
    return;
  }
  const { result, transports } = await checkRelay(servers);
  state.relay = result === 'ok' ? 'ok' : 'bad';
  state.relayTransports = transports;
  renderCheck();
  announce(state.relay === 'ok' ? netOkText() : t('check.net.bad'));
}

/** "The connection works", and the ways it works over, in plain words. */
function netOkText() {
  const ways = state.relayTransports.map((x) => t(`check.net.${x}`));
  if (!ways.length) return t('check.net.ok');
  const list = ways.length === 1 ? ways[0] : `${ways.slice(0, -1).join(', ')} ${t('check.net.and')} ${ways.at(-1)}`;
  return `${t('check.net.ok')} ${t('check.net.via', { ways: list })}`;
}

function renderCheck() {
  const media = { stream: state.stream, problem: state.problem, videoProblem: state.videoProblem };
  renderCamera($('#camera-status'), $('#camera-help'), media);
  renderMicrophone($('#mic-status'), media, state.micHeard);

  const spk = $('#speaker-status');
  if (state.speaker === true) setStatus(spk, 'ok', t('check.speaker.ok'));
  else if (state.speaker === false) setStatus(spk, 'bad', t('check.speaker.bad'));
  else setStatus(spk, 'pending', t('check.speaker.untested'));

  const net = $('#net-status');
  net.dataset.state = state.relay;
  const netHelp = $('#net-help');
  replace(netHelp);
  net.dataset.transports = state.relayTransports.join(' ');
  if (state.relay === 'ok') {
    setStatus(net, 'ok', netOkText());
    // Only the slower ways: it works, but the patient may notice.
    if (state.relayTransports.length && !state.relayTransports.includes('udp')) {
      replace(netHelp, h('p', { class: 'muted', text: t('check.net.slower') }));
    }
  } else if (state.relay === 'bad') {
    setStatus(net, 'bad', t('check.net.bad'));
    replace(netHelp, h('div', { class: 'notice bad' }, h('p', { text: t('check.net.badHelp') })));
  } else if (state.relay === 'later') setStatus(net, 'pending', t('check.net.later'));
  else setStatus(net, 'pending', t('check.net.wait'));

  const problems = Boolean(state.problem || state.videoProblem || state.relay === 'bad' || state.speaker === false);
  const allOk = !problems && state.stream && state.micHeard && state.relay !== 'wait';
  const summary = $('#check-summary');
  if (problems) {
    replace(summary, h('div', { class: 'notice warn' }, h('p', { text: t('check.problems') }), h('p', { text: t('check.goAnyway') })));
  } else if (allOk) {
    replace(summary, h('p', { class: 'notice ok', text: t('check.allOk') }));
  } else {
    replace(summary);
  }
}

function wireCheck() {
  $('#play-tone').addEventListener('click', async () => {
    $('#play-tone').disabled = true;
    await playTestTone(state.sel.speaker);
    $('#play-tone').disabled = false;
    $('#heard').hidden = false;
    focusOn($('#heard-q'));
  });
  $('#heard-yes').addEventListener('click', () => {
    state.speaker = true;
    $('#heard').hidden = true;
    renderCheck();
    announce(t('check.speaker.ok'));
  });
  $('#heard-no').addEventListener('click', () => {
    state.speaker = false;
    $('#heard').hidden = true;
    renderCheck();
    announce(t('check.speaker.bad'));
  });
  $('#sel-camera').addEventListener('change', (e) => {
    state.sel.camera = e.target.value;
    openDevices();
  });
  $('#sel-mic').addEventListener('change', (e) => {
    state.sel.mic = e.target.value;
    openDevices();
  });
  $('#sel-speaker').addEventListener('change', (e) => {
    state.sel.speaker = e.target.value;
  });
  $('#check-retry').addEventListener('click', async () => {
    state.speaker = null;
    await openDevices();
    await fillDeviceLists();
    runRelayCheck();
  });
  $('#go-wait').addEventListener('click', () => {
    state.stopMeter();
    state.stopMeter = () => {};
    enterWaitingRoom();
  });
}

// ---------- Waiting room and call ----------

function renderWaiting(statusKey) {
  const name = state.info?.therapist_name;
  state.rerender = () => {
    $('#wait-text').textContent = name ? t('wait.text', { therapist: name }) : t('wait.textNoName');
    $('#wait-status').textContent = t(statusKey);
  };
  state.rerender();
}

function enterWaitingRoom({ fresh = true } = {}) {
  renderWaiting('wait.connecting');
  show('waiting');
  if (state.signaling) state.signaling.stop();
  const sig = new Signaling({ link_token: token }, { url: signalingUrl(state.info?.room) });
  state.signaling = sig;
  // Events of a connection this page has let go of (after leave) are
  // ignored: a late `bye` must not change the page shown.
  const current = (fn) => (e) => {
    if (state.signaling === sig) fn(e.detail);
  };
  sig.addEventListener('welcome', current(onWelcome));
  sig.addEventListener('message', current(onMessage));
  sig.addEventListener('error', current(onError));
  sig.addEventListener('state', current(() => updateBanner()));
  sig.addEventListener('closed', (e) => {
    if (state.signaling === sig && e.detail.reason === null && !state.ended && e.detail.code !== 1000) {
      // Closed for good without a reason we know: treat like an ended session.
      endCall();
    }
  });
  sig.connect({ fresh });
}

function onWelcome(msg) {
  state.welcome = msg;
  document.body.dataset.signaling = 'open';
  if (msg.resumed) {
    if (state.call && state.inCall) state.call.resumed();
  } else if (state.call) {
    endCall();
  }
  updateBanner();
}

function onMessage(msg) {
  switch (msg.type) {
    case 'waiting':
      endCall();
      renderWaiting('wait.status');
      show('waiting');
      return;
    case 'admitted':
      return;
    case 'peer_joined':
      startCall();
      return;
    case 'peer_left':
      endCall();
      renderWaiting('call.peerGone');
      show('waiting');
      announce(t('call.peerGone'));
      return;
    case 'offer':
    case 'answer':
    case 'candidate':
    case 'end_of_candidates':
    case 'ice_restart':
      state.call?.handle(msg);
      return;
    case 'media_established':
      document.body.dataset.media = 'established';
      return;
    case 'media_state':
      state.peer.receive(msg);
      renderPeerScreen();
      return;
    case 'chat':
      receiveChat(msg);
      return;
    case 'bye':
      finish(msg.reason === 'left' ? 'left' : 'ended');
      return;
    case 'denied':
      finishDenied(msg);
      return;
    case 'replaced':
      finishReplaced();
      return;
    default:
      return;
  }
}

function onError(msg) {
  switch (msg.code) {
    case 'link_expired':
      // Over, withdrawn or past its time: the link's page says which.
      finish();
      loadLink();
      return;
    case 'link_not_yet_open':
      finish();
      loadLink();
      return;
    case 'unauthorized':
      finish();
      showMessage('join.unknown.title', 'join.unknown.text', 'join.unknown.help');
      return;
    case 'not_eligible':
      finish();
      showMessage('join.noteligible.title', 'join.noteligible.text', null);
      return;
    case 'replaced':
      finishReplaced();
      return;
    default:
      return;
  }
}

function startCall() {
  const w = state.welcome;
  if (state.call) state.call.close();
  const call = new Call({
    signaling: state.signaling,
    polite: w.polite,
    iceServers: w.ice_servers,
    relayOnly: w.candidate_policy === 'relay_only',
    stream: state.stream,
  });
  state.call = call;
  state.inCall = true;
  call.addEventListener('remotestream', (e) => {
    const v = $('#remote');
    if (v.srcObject !== e.detail) v.srcObject = e.detail;
    setSpeaker(v, state.sel.speaker);
  });
  call.addEventListener('state', (e) => {
    state.pcState = e.detail;
    document.body.dataset.call = e.detail;
    updateBanner();
  });
  call.addEventListener('quality', (e) => state.net.update(e.detail, { expectVideo: state.peer.moving }));
  showSelf();
  $('#remote-overlay').hidden = false;
  $('#remote-overlay').textContent = t('call.connecting');
  state.peer.clear();
  state.net.reset();
  state.rerender = renderCallControls;
  renderCallControls();
  startTimer();
  show('call');
  announce(t('call.started'));
  call.setMediaState(localMediaState());
  call.start();
  checkCameraSwitch();
}

/** Our microphone and camera, as the physiotherapist is told of them. */
function localMediaState() {
  const audio = state.stream?.getAudioTracks()[0];
  const video = state.stream?.getVideoTracks()[0];
  return { audio: Boolean(audio?.enabled), video: Boolean(video?.enabled && video.readyState === 'live'), screen: false };
}

/** Our own picture: mirrored like a mirror, except the back camera's. */
function showSelf() {
  const self = $('#self');
  const video = state.stream?.getVideoTracks()[0];
  self.srcObject = video ? new MediaStream([video]) : null;
  self.classList.toggle('mirror', facingOf(video) !== 'environment');
}

/** The screen layout while the physiotherapist shows a screen. */
function renderPeerScreen() {
  $('#s-call .call').dataset.peerScreen = String(state.inCall && state.peer.screen);
}

// ---------- Mere: switch camera, picture in picture, full screen ----------

async function checkCameraSwitch() {
  state.canSwitchCamera = await canSwitchCamera(state.stream?.getVideoTracks()[0]);
  renderViewTools();
}

function renderViewTools() {
  const views = state.views;
  const pip = $('#btn-pip');
  const full = $('#btn-fullscreen');
  const cam = $('#btn-switch-cam');
  cam.hidden = !state.canSwitchCamera;
  pip.hidden = !views.canPip;
  pip.disabled = !views.inPip && !views.pipReady;
  pip.setAttribute('aria-pressed', String(views.inPip));
  pip.querySelector('.label').textContent = t(views.inPip ? 'call.pip.exit' : 'call.pip');
  full.hidden = !views.canFullscreen;
  full.setAttribute('aria-pressed', String(views.inFullscreen));
  full.querySelector('.label').textContent = t(views.inFullscreen ? 'call.fullscreen.exit' : 'call.fullscreen');
  full.querySelector('.icon').className = `icon ${views.inFullscreen ? 'fullscreen-exit' : 'fullscreen'}`;
  $('#more').hidden = cam.hidden && pip.hidden && full.hidden;
  if ($('#more').hidden) toggleMore(false);
}

function toggleMore(open = $('#more-menu').hidden) {
  $('#more-menu').hidden = !open;
  $('#btn-more').setAttribute('aria-expanded', String(open));
}

async function onSwitchCamera() {
  const button = $('#btn-switch-cam');
  button.disabled = true;
  try {
    const track = await switchCamera(state.stream);
    state.sel.camera = track.getSettings().deviceId || state.sel.camera;
    const facing = facingOf(track);
    announce(t(facing === 'environment' ? 'call.switchCam.back' : facing === 'user' ? 'call.switchCam.front' : 'call.switchCam.other'));
  } catch {
    announce(t('call.switchCam.failed'), { assertive: true });
  } finally {
    // Whatever camera the stream holds now goes out, without renegotiating.
    const video = state.stream?.getVideoTracks()[0];
    if (video) await state.call?.replaceTrack(video);
    showSelf();
    renderCallControls();
    state.call?.setMediaState(localMediaState());
    button.disabled = false;
  }
}

function wireViewTools() {
  const views = new ViewModes($('#remote'), $('#s-call .call'));
  state.views = views;
  views.addEventListener('change', renderViewTools);
  $('#btn-more').addEventListener('click', () => toggleMore());
  // Esc closes the menu, from the button or from a choice in it.
  $('#more').addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !$('#more-menu').hidden) {
      toggleMore(false);
      $('#btn-more').focus();
    }
  });
  // A tap elsewhere closes the menu.
  document.addEventListener('click', (ev) => {
    if (!$('#more-menu').hidden && !$('#more').contains(ev.target)) toggleMore(false);
  });
  $('#btn-switch-cam').addEventListener('click', onSwitchCamera);
  $('#btn-pip').addEventListener('click', async () => {
    toggleMore(false);
    await views.togglePip().catch((err) => console.warn('picture in picture', err));
  });
  $('#btn-fullscreen').addEventListener('click', async () => {
    toggleMore(false);
    await views.toggleFullscreen().catch((err) => console.warn('full screen', err));
  });
  renderViewTools();
}

// ---------- Chat ----------

/** One line of the chat log: who, then the text (never parsed as HTML). */
function chatLine(whoKey, text) {
  const log = $('#chat-log');
  log.append(h('p', {}, h('strong', { text: `${t(whoKey)}: ` }), text));
  log.scrollTop = log.scrollHeight;
}

function receiveChat(msg) {
  if (msg.from === 'patient') return;
  chatLine('pchat.therapist', msg.text);
  if ($('#chat').hidden) {
    // The panel is closed: a badge on its button, and the text read out.
    state.unread = (state.unread || 0) + 1;
    renderChatBadge();
    announce(t('pchat.new', { text: msg.text }));
  }
}

function renderChatBadge() {
  const badge = $('#chat-badge');
  const n = state.unread || 0;
  badge.hidden = n === 0;
  badge.textContent = n ? t('pchat.unread', { n }) : '';
}

function toggleChat(open = $('#chat').hidden) {
  $('#chat').hidden = !open;
  $('#btn-chat').setAttribute('aria-expanded', String(open));
  if (open) {
    state.unread = 0;
    renderChatBadge();
    $('#chat-input').focus();
  }
}

function wireChat() {
  $('#btn-chat').addEventListener('click', () => toggleChat());
  $('#chat-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('#chat-input');
    const text = input.value.trim();
    if (!text || !state.signaling) return;
    if (state.signaling.send({ type: 'chat', text })) {
      chatLine('pchat.me', text);
      input.value = '';
    }
  });
}

/** The call timer: minutes and seconds since the call began on this page. */
function startTimer() {
  clearInterval(state.timer);
  const began = Date.now();
  const value = $('#call-timer-value');
  const tick = () => {
    const s = Math.floor((Date.now() - began) / 1000);
    const hours = Math.floor(s / 3600);
    const mm = String(Math.floor(s / 60) % 60).padStart(2, '0');
    const ss = String(s % 60).padStart(2, '0');
    value.textContent = hours ? `${hours}:${mm}:${ss}` : `${mm}:${ss}`;
  };
  tick();
  $('#call-timer').hidden = false;
  state.timer = setInterval(tick, 1000);
}

function endCall() {
  clearInterval(state.timer);
  $('#call-timer').hidden = true;
  state.inCall = false;
  if (state.call) {
    state.call.close();
    state.call = null;
  }
  state.views?.leave();
  toggleMore(false);
  $('#remote').srcObject = null;
  state.pcState = 'new';
  state.peer.clear();
  state.net.reset();
  renderPeerScreen();
  updateBanner();
}

/** The reconnecting banner: shown while signaling or media is down. */
function updateBanner() {
  const banner = $('#call-banner');
  const sigDown = state.signaling && state.signaling.state === 'reconnecting';
  const mediaDown = state.inCall && (state.pcState === 'disconnected' || state.pcState === 'failed');
  const down = sigDown || mediaDown;
  document.body.dataset.reconnecting = down ? 'true' : 'false';
  if (screens.waiting && !screens.waiting.hidden && sigDown) $('#wait-status').textContent = t('call.reconnecting');
  clearTimeout(state.bannerTimer);
  if (down) {
    banner.className = 'banner';
    banner.textContent = navigator.onLine === false ? t('call.offline') : t('call.reconnecting');
    banner.hidden = false;
    state.bannerShown = true;
  } else if (state.bannerShown && (state.pcState === 'connected' || !state.inCall)) {
    state.bannerShown = false;
    banner.className = 'banner ok';
    banner.textContent = t('call.reconnected');
    banner.hidden = false;
    if (!screens.waiting.hidden) renderWaiting('wait.status');
    state.bannerTimer = setTimeout(() => {
      banner.hidden = true;
    }, 4000);
  }
}

function renderCallControls() {
  const name = state.info?.therapist_name || t('join.title');
  $('#call-title').textContent = t('call.title', { name });
  $('#remote').setAttribute('aria-label', t('call.remoteView', { name }));
  $('#self').setAttribute('aria-label', t('call.selfView'));
  const audio = state.stream?.getAudioTracks()[0];
  const video = state.stream?.getVideoTracks()[0];
  const micOn = Boolean(audio && audio.enabled);
  const camOn = Boolean(video && video.enabled);
  $('#btn-mic .label').textContent = t(micOn ? 'call.mic.off' : 'call.mic.on');
  $('#btn-cam .label').textContent = t(camOn ? 'call.cam.off' : 'call.cam.on');
  $('#btn-mic .icon').className = `icon ${micOn ? 'mic' : 'mic-off'}`;
  $('#btn-cam .icon').className = `icon ${camOn ? 'cam' : 'cam-off'}`;
  $('#btn-mic').disabled = !audio;
  $('#btn-cam').disabled = !video;
  $('#mic-off-note').hidden = micOn || !audio;
  if (!$('#remote-overlay').hidden && state.pcState !== 'connected') $('#remote-overlay').textContent = t('call.connecting');
  renderViewTools();
  state.peer.render();
  state.net.render();
  renderPeerScreen();
}

function wireCall() {
  const remote = $('#remote');
  const hideOverlay = () => {
    if (remote.videoWidth > 0) $('#remote-overlay').hidden = true;
  };
  remote.addEventListener('resize', hideOverlay);
  remote.addEventListener('playing', hideOverlay);
  $('#btn-mic').addEventListener('click', () => {
    const audio = state.stream?.getAudioTracks()[0];
    if (!audio) return;
    audio.enabled = !audio.enabled;
    renderCallControls();
    state.call?.setMediaState(localMediaState());
    announce(t(audio.enabled ? 'call.mic.on' : 'call.mic.isOff'));
  });
  $('#btn-cam').addEventListener('click', () => {
    const video = state.stream?.getVideoTracks()[0];
    if (!video) return;
    video.enabled = !video.enabled;
    renderCallControls();
    state.call?.setMediaState(localMediaState());
    announce(t(video.enabled ? 'call.cam.on' : 'call.cam.isOff'));
  });
  $('#btn-leave').addEventListener('click', () => {
    // On a small screen the question takes the chat panel's place.
    if (!$('#chat').hidden) toggleChat(false);
    $('#leave-confirm').hidden = false;
    focusOn($('#leave-yes'));
  });
  $('#leave-no').addEventListener('click', () => {
    $('#leave-confirm').hidden = true;
    focusOn($('#btn-leave'));
  });
  // Leaving (the call or the waiting room) does not end the consultation:
  // the patient can go back from the same link until the therapist ends it.
  $('#leave-yes').addEventListener('click', () => {
    $('#leave-confirm').hidden = true;
    state.signaling?.leave();
    finish('left-call');
  });
  $('#wait-leave').addEventListener('click', () => {
    state.signaling?.leave();
    finish('left');
  });
  wireChat();
  wireViewTools();
}

/** The session is over on this side: stop media and signaling. */
function finish(page) {
  state.ended = true;
  endCall();
  if (state.signaling) {
    state.signaling.stop();
    state.signaling = null;
  }
  if (page === 'left-call') {
    // Camera and microphone go off at once; going back opens them again.
    stopStream(state.stream);
    state.stream = null;
    showMessage('left.title', 'left.callText', null, {
      actions: [
        () =>
          h('button', {
            type: 'button',
            id: 'rejoin',
            class: 'primary big',
            text: t('left.rejoin'),
            on: {
              click: async () => {
                state.ended = false;
                const media = await openMedia({ audioId: state.sel.mic, videoId: state.sel.camera });
                state.stream = media.stream;
                enterWaitingRoom();
              },
            },
          }),
      ],
    });
  } else if (page === 'left') {
    showMessage('left.waitTitle', 'left.text', null, {
      actions: [
        () =>
          h('button', {
            type: 'button',
            class: 'primary big',
            text: t('left.rejoin'),
            on: {
              click: () => {
                state.ended = false;
                enterWaitingRoom();
              },
            },
          }),
      ],
    });
  } else if (page === 'ended') {
    stopStream(state.stream);
    state.stream = null;
    showMessage('end.title', 'end.text', null);
  }
}

function finishDenied(msg) {
  finish();
  stopStream(state.stream);
  state.stream = null;
  if (msg.reason === 'not_eligible') {
    showMessage('denied.title', 'denied.notEligible', null);
    return;
  }
  showMessage('denied.title', 'denied.byTherapist', msg.note ? 'denied.note' : null);
  if (msg.note) {
    const prev = state.rerender;
    state.rerender = () => {
      prev();
      $('#message-help').append(' ', h('q', { text: msg.note }));
    };
    state.rerender();
  }
}

function finishReplaced() {
  finish();
  showMessage('replaced.title', 'replaced.text', null, {
    actions: [
      () =>
        h('button', {
          type: 'button',
          class: 'primary big',
          text: t('replaced.use'),
          on: {
            click: () => {
              state.ended = false;
              enterWaitingRoom({ fresh: true });
            },
          },
        }),
    ],
  });
}

// ---------- Start ----------

function init() {
  applyI18n();
  wireLangButton($('#lang'));
  onLangChange(() => state.rerender());
  $('#start').addEventListener('click', startCheck);
  wireCheck();
  wireCall();
  window.addEventListener('offline', () => updateBanner());
  window.addEventListener('online', () => updateBanner());
  if (!token) {
    showMessage('join.unknown.title', 'join.unknown.text', 'join.unknown.help');
    return;
  }
  loadLink();
}

init();
