// The rehearsal page, /proeve (also /rehearsal): anyone can try camera,
// microphone and connection before the day of a video consultation. It
// needs no join link and reads none: it asks the server nothing about a
// consultation, a link or a patient, so trying it records nothing.
//
// The checks:
// - camera and microphone: the join page's own check (device-check.js),
//   with the same plain-words help;
// - the server: GET /healthz, then a WebSocket to /ws opened and closed
//   before any hello (signaling.js `canReachSignaling`);
// - the browser: a WebRTC connection between two peer connections inside
//   this page, without ICE servers (devices.js `checkLoopback`). The relay
//   (TURN) is not tried: its credentials need a join link, and the join
//   page checks it on the day.
// Picture and sound never leave the page.

import { openForCheck, problemHelp, renderCamera, renderMicrophone, setStatus, watchMicrophone } from './device-check.js';
import { checkLoopback, stopStream } from './devices.js';
import { $, focusOn, h, replace, showOnly } from './dom.js';
import { applyI18n, locale, onLangChange, t, wireLangButton } from './i18n.js';
import { canReachSignaling } from './signaling.js';

/** How long the server may take to answer /healthz. */
const HEALTH_TIMEOUT_MS = 8000;

const screens = { intro: $('#s-intro'), check: $('#s-check'), done: $('#s-done') };

const state = {
  screen: 'intro',
  // Each start of the checks counts up; answers of an older run are dropped.
  run: 0,
  media: { stream: null, problem: null, videoProblem: null },
  mediaAsked: false,
  micHeard: false,
  server: 'wait', // wait | ok | bad
  webrtc: 'wait', // wait | ok | bad
  stopMeter: () => {},
  // The result shown at the top, so that the live region speaks only when it changes.
  shownSummary: null,
  doneOk: false,
};

function show(name, { focus = true } = {}) {
  state.screen = name;
  showOnly(Object.values(screens), screens[name]);
  document.body.dataset.screen = name;
  if (focus) focusOn(screens[name].querySelector('h1'));
}

// ---------- The checks ----------

/** Whether the server answers, over HTTP and over the signaling WebSocket. */
async function checkServer() {
  try {
    const res = await fetch('/healthz', {
      cache: 'no-store',
      credentials: 'omit',
      signal: AbortSignal.timeout?.(HEALTH_TIMEOUT_MS),
    });
    const body = await res.json();
    if (!res.ok || body.status !== 'ok') return false;
  } catch {
    return false;
  }
  return canReachSignaling();
}

async function startCheck() {
  const run = ++state.run;
  const current = () => run === state.run && state.screen === 'check';
  stopDevices();
  state.media = { stream: null, problem: null, videoProblem: null };
  state.mediaAsked = false;
  $('#preview').hidden = false;
  state.micHeard = false;
  state.server = 'wait';
  state.webrtc = 'wait';
  // Again from the check itself: focus stays on "Prøv igen".
  if (state.screen !== 'check') show('check');
  render();

  checkServer().then((ok) => {
    if (!current()) return;
    state.server = ok ? 'ok' : 'bad';
    render();
  });

  const media = await openForCheck();
  if (!current()) {
    stopStream(media.stream);
    return;
  }
  state.media = media;
  state.mediaAsked = true;
  const picture = Boolean(media.stream && media.stream.getVideoTracks().length);
  $('#preview').srcObject = picture ? media.stream : null;
  // No picture to show: the help takes the black box's place.
  $('#preview').hidden = !picture;
  if (media.stream) {
    state.stopMeter = watchMicrophone(media.stream, $('#mic-level'), () => {
      if (!current()) return;
      state.micHeard = true;
      render();
    });
  }
  render();

  // After the camera question: once it is allowed, browsers offer their
  // own addresses to WebRTC instead of mDNS names, as in the call.
  const webrtc = await checkLoopback();
  if (!current()) return;
  state.webrtc = webrtc === 'ok' ? 'ok' : 'bad';
  render();
}

function stopDevices() {
  state.stopMeter();
  state.stopMeter = () => {};
  stopStream(state.media.stream);
  state.media = { ...state.media, stream: null };
  $('#preview').srcObject = null;
  $('#mic-level').value = 0;
}

/** The overall result: checking | mic (all else works) | ok | problems, and what failed. */
function result() {
  const failed = [];
  if (state.media.problem || state.media.videoProblem) failed.push('camera');
  if (state.media.problem) failed.push('mic');
  if (state.server === 'bad' || state.webrtc === 'bad') failed.push('net');
  if (!state.mediaAsked || state.server === 'wait' || state.webrtc === 'wait') return { key: 'checking', failed };
  if (failed.length) return { key: 'problems', failed };
  return { key: state.micHeard ? 'ok' : 'mic', failed };
}

// ---------- Rendering ----------

function render() {
  if (state.screen === 'check') renderCheck();
  else if (state.screen === 'done') renderDone();
}

function renderNet(statusEl, helpEl, value, prefix, helpKey) {
  replace(helpEl);
  if (value === 'ok') setStatus(statusEl, 'ok', t(`${prefix}.ok`));
  else if (value === 'bad') {
    setStatus(statusEl, 'bad', t(`${prefix}.bad`));
    replace(helpEl, problemHelp(helpKey));
  } else setStatus(statusEl, 'pending', t(`${prefix}.wait`));
}

function renderCheck() {
  if (state.mediaAsked) renderCamera($('#camera-status'), $('#camera-help'), state.media);
  else {
    setStatus($('#camera-status'), 'pending', t('check.camera.wait'));
    replace($('#camera-help'));
  }
  renderMicrophone($('#mic-status'), state.media, state.micHeard);
  renderNet($('#server-status'), $('#server-help'), state.server, 'rehearsal.server', 'check.net.badHelp');
  renderNet($('#webrtc-status'), $('#webrtc-help'), state.webrtc, 'rehearsal.webrtc', 'rehearsal.webrtc.badHelp');
  renderSummary();
}

/** The result at the top: a live region, changed only when the result changes. */
function renderSummary() {
  const { key, failed } = result();
  const shown = `${key}:${failed.join(',')}`;
  if (state.shownSummary === shown) return;
  state.shownSummary = shown;
  const summary = $('#summary');
  summary.dataset.state = key;
  if (key === 'problems') {
    const what = new Intl.ListFormat(locale(), { type: 'conjunction' }).format(failed.map((part) => t(`rehearsal.part.${part}`)));
    replace(
      summary,
      h('div', { class: 'notice warn' }, h('p', { text: t('rehearsal.summary.problems', { what }) }), h('p', { text: t('rehearsal.summary.call') })),
    );
  } else {
    replace(summary, h('p', { class: key === 'ok' ? 'notice ok' : 'notice', text: t(`rehearsal.summary.${key}`) }));
  }
}

function renderDone() {
  $('#done-title').textContent = t(state.doneOk ? 'rehearsal.done.okTitle' : 'rehearsal.done.title');
  $('#done-text').textContent = t('rehearsal.done.off');
  $('#done-next').textContent = t(state.doneOk ? 'rehearsal.done.okNext' : 'rehearsal.done.next');
  screens.done.dataset.result = state.doneOk ? 'ok' : 'problems';
}

function finish() {
  state.doneOk = result().key === 'ok';
  state.run += 1;
  stopDevices();
  state.shownSummary = null;
  renderDone();
  show('done');
}

// ---------- Start ----------

function init() {
  applyI18n();
  wireLangButton($('#lang'));
  onLangChange(() => {
    state.shownSummary = null;
    render();
  });
  $('#start').addEventListener('click', startCheck);
  $('#retry').addEventListener('click', startCheck);
  $('#again').addEventListener('click', startCheck);
  $('#finish').addEventListener('click', finish);
  // Leaving the page turns camera and microphone off at once.
  window.addEventListener('pagehide', stopDevices);
  show('intro', { focus: false });
}

init();
