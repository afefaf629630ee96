// The patient's join page, /join/<token>: link status, first screen,
// device and connection check, waiting room, call, and the pages after.
// The token is read from the address, never templated by the server.

import { api, ApiError } from './api.js';
import { Call } from './call.js';
import {
  canChooseSpeaker,
  checkRelay,
  levelMeter,
  listDevices,
  openMedia,
  playTestTone,
  setSpeaker,
  stopStream,
} from './devices.js';
import { $, announce, focusOn, h, replace, showOnly } from './dom.js';
import { applyI18n, fmtLongDate, fmtTime, onLangChange, t, wireLangButton } from './i18n.js';
import { Signaling } from './signaling.js';

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
};

function show(name, { focus = true } = {}) {
  showOnly(Object.values(screens), screens[name]);
  if (focus) focusOn(screens[name].querySelector('h1'));
}

/** Shows a message page (unknown, expired, revoked, early, errors). */
function showMessage(titleKey, textKey, helpKey, { vars = {}, actions = [] } = {}) {
  state.rerender = () => {
    $('#message-title').textContent = t(titleKey, vars);
    $('#message-text').textContent = t(textKey, vars);
    $('#message-help').textContent = helpKey ? t(helpKey, vars) : '';
    $('#message-help').hidden = !helpKey;
    replace($('#message-actions'), ...actions.map((a) => a()));
  };
  state.rerender();
  show('message');
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
    case 'expired':
      showMessage('join.expired.title', 'join.expired.text', 'join.expired.help');
      return;
    case 'revoked':
      showMessage('join.revoked.title', 'join.revoked.text', 'join.revoked.help');
      return;
    default:
      showMessage('join.unknown.title', 'join.unknown.text', 'join.unknown.help');
  }
}

function showEarly(info) {
  const opens = info.opens_at ? new Date(info.opens_at) : null;
  if (opens && !Number.isNaN(opens.getTime())) {
    showMessage('join.early.title', 'join.early.text', 'join.early.help', {
      vars: { date: fmtLongDate(opens), time: fmtTime(opens) },
    });
    // Look again when the link opens (and every minute, in case the clock
    // of this device is off).
    const wait = Math.min(Math.max(opens.getTime() - Date.now() + 1000, 5000), 60000);
    state.earlyTimer = setTimeout(loadLink, wait);
  } else {
    showMessage('join.early.title', 'join.early.nodate', null);
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
  };
  state.rerender();
  show('welcome');
}

// ---------- Device and connection check ----------

function setStatus(el, kind, text) {
  el.className = `status ${kind}`;
  replace(el, h('span', { class: 'mark', 'aria-hidden': 'true', text: kind === 'ok' ? '✓' : kind === 'bad' ? '!' : '…' }), ' ', text);
}

function help(textKey, helpKey) {
  return h('div', { class: 'notice bad' }, h('p', { text: t(textKey) }), helpKey ? h('p', { text: t(helpKey) }) : null);
}

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
  const res = await openMedia({ audioId: state.sel.mic, videoId: state.sel.camera });
  state.stream = res.stream;
  state.problem = res.problem || null;
  state.videoProblem = res.videoProblem || (res.stream && !res.stream.getVideoTracks().length ? 'nodevice' : null);
  $('#preview').srcObject = state.stream && state.stream.getVideoTracks().length ? state.stream : null;
  if (state.stream) {
    state.stopMeter = levelMeter(state.stream, (level) => {
      $('#mic-level').value = level;
      if (level > 0.12 && !state.micHeard) {
        state.micHeard = true;
        renderCheck();
        announce(t('check.mic.ok'));
      }
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
  const result = await checkRelay(servers);
  state.relay = result === 'ok' ? 'ok' : 'bad';
  renderCheck();
  announce(t(state.relay === 'ok' ? 'check.net.ok' : 'check.net.bad'));
}

function renderCheck() {
  const camStatus = $('#camera-status');
  const camHelp = $('#camera-help');
  if (state.problem) {
    setStatus(camStatus, 'bad', t(`media.${state.problem}`));
    replace(camHelp, help(`media.${state.problem}`, `media.${state.problem}.help`));
  } else if (!state.stream) {
    setStatus(camStatus, 'pending', t('check.camera.wait'));
    replace(camHelp);
  } else if (state.videoProblem) {
    setStatus(camStatus, 'bad', t('media.nocamera'));
    replace(camHelp, help(`media.${state.videoProblem}`, `media.${state.videoProblem}.help`));
  } else {
    setStatus(camStatus, 'ok', t('check.camera.ok'));
    replace(camHelp);
  }

  const micStatus = $('#mic-status');
  if (state.problem) setStatus(micStatus, 'bad', t(`media.${state.problem}`));
  else if (state.micHeard) setStatus(micStatus, 'ok', t('check.mic.ok'));
  else setStatus(micStatus, 'pending', t('check.mic.wait'));

  const spk = $('#speaker-status');
  if (state.speaker === true) setStatus(spk, 'ok', t('check.speaker.ok'));
  else if (state.speaker === false) setStatus(spk, 'bad', t('check.speaker.bad'));
  else setStatus(spk, 'pending', t('check.speaker.untested'));

  const net = $('#net-status');
  net.dataset.state = state.relay;
  const netHelp = $('#net-help');
  replace(netHelp);
  if (state.relay === 'ok') setStatus(net, 'ok', t('check.net.ok'));
  else if (state.relay === 'bad') {
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
  const sig = new Signaling({ link_token: token });
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
      finish();
      showMessage('join.expired.title', 'join.expired.text', 'join.expired.help');
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
  $('#self').srcObject = state.stream && state.stream.getVideoTracks().length ? state.stream : null;
  $('#remote-overlay').hidden = false;
  $('#remote-overlay').textContent = t('call.connecting');
  state.rerender = renderCallControls;
  renderCallControls();
  show('call');
  announce(t('call.started'));
  call.start();
}

function endCall() {
  state.inCall = false;
  if (state.call) {
    state.call.close();
    state.call = null;
  }
  $('#remote').srcObject = null;
  state.pcState = 'new';
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
    announce(t(audio.enabled ? 'call.mic.on' : 'call.mic.isOff'));
  });
  $('#btn-cam').addEventListener('click', () => {
    const video = state.stream?.getVideoTracks()[0];
    if (!video) return;
    video.enabled = !video.enabled;
    renderCallControls();
    announce(t(video.enabled ? 'call.cam.on' : 'call.cam.isOff'));
  });
  $('#btn-leave').addEventListener('click', () => {
    $('#leave-confirm').hidden = false;
    focusOn($('#leave-yes'));
  });
  $('#leave-no').addEventListener('click', () => {
    $('#leave-confirm').hidden = true;
    focusOn($('#btn-leave'));
  });
  // Leaving during the call ends the consultation (the link stops
  // working); leaving the waiting room does not, so only then can the
  // patient go back.
  $('#leave-yes').addEventListener('click', () => {
    $('#leave-confirm').hidden = true;
    state.signaling?.leave();
    finish('left-call');
  });
  $('#wait-leave').addEventListener('click', () => {
    state.signaling?.leave();
    finish('left');
  });
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
    stopStream(state.stream);
    state.stream = null;
    showMessage('left.title', 'left.callText', null);
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
