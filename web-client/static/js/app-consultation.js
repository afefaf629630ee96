// One consultation on the dashboard: waiting room (admit or decline), the
// call (mute, camera, devices, relay/direct, live quality, chat, switching
// camera, sharing the screen, picture in picture and full screen, the
// patient's microphone and camera in words), the patient-safety prompt at
// the start, ending the call, the journal note and the billing result.

import { api } from './api.js';
import { Call, ConnectionIndicator, PeerMedia, ViewModes } from './call.js';
import {
  canChooseSpeaker,
  canShareScreen,
  canSwitchCamera,
  facingOf,
  listDevices,
  openMedia,
  openScreen,
  openTrack,
  setSpeaker,
  stopStream,
  switchCamera,
} from './devices.js';
import { announce, focusOn, h, replace } from './dom.js';
import { fmtDate, fmtLongDate, fmtNumber, fmtTime, has, onLangChange, t } from './i18n.js';
import { Signaling, signalingUrl } from './signaling.js';
import { amountText, checkbox, errorBox, field, okBox, onSubmit, pageHeading, statePill } from './ui.js';

const LIVE_STATES = new Set(['scheduled', 'open', 'waiting', 'in_call']);
const FINAL_STATES = new Set(['completed', 'cancelled', 'no_show', 'technical_failure']);

export async function consultationView(ctx, id) {
  let consultation = await api.get(`/api/consultations/${id}`);
  const patient = await api.get(`/api/patients/${consultation.patient_id}`).catch(() => null);
  const name = patient?.name || consultation.patient_name || '';

  const heading = pageHeading(t('cons.title', { name }));
  const when = h('p', {});
  const stateSlot = h('p', {});
  const body = h('div', { id: 'consultation-body' });
  replace(ctx.main, heading, when, stateSlot, body);

  let live = null;
  const relabel = () => {
    heading.textContent = t('cons.title', { name });
    document.title = `${heading.textContent} – Konsult`;
    when.textContent = t('cons.when', {
      date: fmtLongDate(consultation.start),
      time: fmtTime(consultation.start),
      n: consultation.length_minutes,
    });
    replace(stateSlot, h('span', { text: `${t('cons.state')}: ` }), statePill(consultation.state), ` · ${t('speciale.short', { code: consultation.speciale })}`);
    live?.relabel();
  };
  relabel();
  const offLang = onLangChange(relabel);

  const refresh = async () => {
    consultation = await api.get(`/api/consultations/${id}`);
    relabel();
    return consultation;
  };

  const showAfter = () => {
    live = null;
    if (consultation.state === 'ended') renderJournal(body, consultation, refresh);
    else if (FINAL_STATES.has(consultation.state)) renderFinal(body, consultation);
  };

  if (LIVE_STATES.has(consultation.state)) {
    live = await liveConsultation(body, consultation, patient, refresh, async () => {
      await refresh();
      showAfter();
    });
  } else {
    showAfter();
  }

  return () => {
    offLang();
    live?.close();
  };
}
consultationView.keepOnLang = true;

// ---------- Before and during the call ----------

async function liveConsultation(root, consultation, patient, refresh, onOver) {
  const labels = [];
  /** Sets a text now and again after a language switch. */
  const L = (el, key, vars) => {
    labels.push([el, key, vars]);
    el.textContent = t(key, vars);
    return el;
  };

  // Call area.
  const remote = h('video', { class: 'remote', autoplay: true, playsinline: true, id: 'remote' });
  const self = h('video', { class: 'self mirror', autoplay: true, muted: true, playsinline: true, id: 'self' });
  self.muted = true;
  const overlay = L(h('div', { class: 'overlay', id: 'remote-overlay' }), 'cons.nobody');
  const banner = h('p', { class: 'banner', role: 'status', 'aria-live': 'polite', hidden: true, id: 'call-banner' });
  // Labelled from the start: the page is shown (and may be read) before the
  // camera and microphone are open.
  const micBtn = h('button', { type: 'button', id: 'btn-mic', disabled: true }, h('span', { class: 'icon mic', 'aria-hidden': 'true' }), h('span', { class: 'label', text: t('call.mic.off') }));
  const camBtn = h('button', { type: 'button', id: 'btn-cam', disabled: true }, h('span', { class: 'icon cam', 'aria-hidden': 'true' }), h('span', { class: 'label', text: t('call.cam.off') }));
  const endBtn = h('button', { type: 'button', class: 'leave', id: 'btn-end', disabled: true }, h('span', { class: 'icon leave', 'aria-hidden': 'true' }), L(h('span', { class: 'label' }), 'cons.end'));
  const endConfirm = h(
    'div',
    { class: 'notice warn', hidden: true, role: 'alertdialog', 'aria-labelledby': 'end-q' },
    L(h('p', { id: 'end-q' }), 'cons.endConfirm'),
    h('div', { class: 'actions' }, L(h('button', { type: 'button', class: 'danger', id: 'end-yes' }), 'cons.end'), L(h('button', { type: 'button', id: 'end-no' }), 'common.cancel')),
  );
  // Over the picture: the connection in a word (read out only when it
  // changes) and what the patient has turned off (a polite live region).
  const netLevel = h('p', { class: 'net-level', id: 'net-level', hidden: true }, h('span', { class: 'icon', 'aria-hidden': 'true' }), ' ', h('span', { class: 'label' }));
  const peerState = h('div', { class: 'peer-state', id: 'peer-state', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });
  // Choices for the picture, in a row under the main controls.
  const toolButton = (id, icon) => h('button', { type: 'button', id, hidden: true }, h('span', { class: `icon ${icon}`, 'aria-hidden': 'true' }), h('span', { class: 'label' }));
  const switchBtn = toolButton('btn-switch-cam', 'switch-cam');
  const shareBtn = toolButton('btn-share', 'share');
  const pipBtn = toolButton('btn-pip', 'pip');
  const fullBtn = toolButton('btn-fullscreen', 'fullscreen');
  const tools = h('div', { class: 'view-tools', role: 'group', id: 'view-tools' }, switchBtn, shareBtn, pipBtn, fullBtn);
  const mediaNote = h('div', {});
  const callBox = h(
    'section',
    { class: 'call dark', 'aria-labelledby': 'call-h' },
    L(h('h2', { id: 'call-h', class: 'visually-hidden' }), 'cons.inCall'),
    banner,
    h('div', { class: 'stage' }, remote, self, overlay, h('div', { class: 'call-hud' }, netLevel, peerState)),
    h('div', { class: 'controls' }, micBtn, camBtn, endBtn),
    tools,
    endConfirm,
  );

  // Side panels.
  const waitStatus = h('div', { role: 'status', 'aria-live': 'polite', id: 'waiting-status' });
  const admitBtn = L(h('button', { type: 'button', class: 'primary', id: 'admit', hidden: true }), 'cons.admit');
  const denyReason = h('textarea', { rows: '2', maxlength: '500', id: 'deny-reason' });
  const denyBtn = L(h('button', { type: 'button', id: 'deny', hidden: true }), 'cons.deny');
  const denyLabel = L(h('label', { for: denyReason.id }), 'cons.denyReason');
  const denyHint = L(h('span', { class: 'hint', id: 'deny-hint' }), 'cons.denyReasonHint');
  denyReason.setAttribute('aria-describedby', denyHint.id);
  const denyField = h('div', { class: 'field', hidden: true }, denyLabel, denyHint, denyReason);
  const admitResult = h('div', { id: 'admit-result' });
  // The patient left the call: wait for them to come back, or end.
  const leftNotice = h(
    'div',
    { class: 'notice warn', hidden: true, id: 'patient-left', role: 'alert' },
    L(h('p', {}), 'cons.patientLeftChoice'),
    h(
      'div',
      { class: 'actions' },
      L(h('button', { type: 'button', id: 'wait-for-patient' }), 'cons.waitForPatient'),
      L(h('button', { type: 'button', class: 'danger', id: 'end-consultation' }), 'cons.endConsultation'),
    ),
  );
  const waitingCard = h(
    'section',
    { class: 'card', 'aria-labelledby': 'wr-h', id: 'waiting-room' },
    L(h('h2', { id: 'wr-h' }), 'cons.waitingRoom'),
    waitStatus,
    leftNotice,
    admitResult,
    h('div', { class: 'actions' }, admitBtn),
    denyField,
    h('div', { class: 'actions' }, denyBtn),
  );

  const safetyCard = safetyPanel(consultation, patient, L);
  const quality = qualityPanel(L);
  const devices = h('section', { class: 'card', 'aria-labelledby': 'dev-h' }, L(h('h2', { id: 'dev-h' }), 'devices.title'));
  const chat = chatPanel(L);
  const other = otherActions(consultation, L, refresh, onOver);

  replace(
    root,
    mediaNote,
    h('div', { class: 'call-layout' }, h('div', {}, callBox, safetyCard.el), h('div', {}, waitingCard, quality.el, devices, chat.el, other)),
  );

  // Media.
  const media = await openMedia();
  let stream = media.stream;
  if (media.problem || media.videoProblem) {
    const code = media.problem || media.videoProblem;
    replace(mediaNote, h('div', { class: 'notice warn' }, h('p', { text: t('cons.mediaProblem', { problem: t(`media.${code}`) }) }), h('p', { text: t(`media.${code}.help`) })));
  }
  let speakerId = '';
  // The shared screen's track while the screen is shared (it goes out in
  // the camera's place; the camera keeps running for the way back).
  let screenTrack = null;
  let cameraSwitchable = false;
  /** Our own picture: what goes out; the camera mirrored, except a back camera. */
  const showSelf = () => {
    const video = screenTrack || stream?.getVideoTracks()[0];
    self.srcObject = video ? new MediaStream([video]) : null;
    self.classList.toggle('mirror', !screenTrack && facingOf(video) !== 'environment');
    if (screenTrack) self.setAttribute('aria-label', t('call.share.self'));
    else self.removeAttribute('aria-label');
  };
  showSelf();
  /** Our microphone, camera and screen, as the patient is told of them. */
  const localMediaState = () => {
    const a = stream?.getAudioTracks()[0];
    const v = stream?.getVideoTracks()[0];
    return { audio: Boolean(a?.enabled), video: Boolean(v?.enabled && v.readyState === 'live'), screen: Boolean(screenTrack) };
  };

  // `started`: the consultation's call has started (a patient was admitted
  // at least once), so ending it is possible even with nobody connected.
  const state = {
    call: null,
    inCall: false,
    started: consultation.state === 'in_call',
    waiting: false,
    over: false,
    pcState: 'new',
    stalled: false,
    bannerShown: false,
    bannerTimer: null,
  };
  endBtn.disabled = !state.started;

  const renderControls = () => {
    const audio = stream?.getAudioTracks()[0];
    const video = stream?.getVideoTracks()[0];
    const micOn = Boolean(audio?.enabled);
    const camOn = Boolean(video?.enabled);
    micBtn.querySelector('.label').textContent = t(micOn ? 'call.mic.off' : 'call.mic.on');
    camBtn.querySelector('.label').textContent = t(camOn ? 'call.cam.off' : 'call.cam.on');
    micBtn.disabled = !audio;
    camBtn.disabled = !video;
    micBtn.setAttribute('aria-pressed', String(!micOn));
    camBtn.setAttribute('aria-pressed', String(!camOn));
    micBtn.querySelector('.icon').className = `icon ${micOn ? 'mic' : 'mic-off'}`;
    camBtn.querySelector('.icon').className = `icon ${camOn ? 'cam' : 'cam-off'}`;
    renderTools();
  };

  // Switching camera, sharing the screen, picture in picture, full screen.
  const views = new ViewModes(remote, callBox);
  const renderTools = () => {
    tools.setAttribute('aria-label', t('call.more.label'));
    switchBtn.hidden = !cameraSwitchable;
    switchBtn.querySelector('.label').textContent = t('call.switchCam');
    shareBtn.hidden = !canShareScreen();
    shareBtn.disabled = !state.inCall;
    shareBtn.setAttribute('aria-pressed', String(Boolean(screenTrack)));
    shareBtn.querySelector('.label').textContent = t(screenTrack ? 'call.share.stop' : 'call.share');
    shareBtn.querySelector('.icon').className = `icon ${screenTrack ? 'share-stop' : 'share'}`;
    pipBtn.hidden = !views.canPip;
    pipBtn.disabled = !views.inPip && !views.pipReady;
    pipBtn.setAttribute('aria-pressed', String(views.inPip));
    pipBtn.querySelector('.label').textContent = t(views.inPip ? 'call.pip.exit' : 'call.pip');
    fullBtn.hidden = !views.canFullscreen;
    fullBtn.setAttribute('aria-pressed', String(views.inFullscreen));
    fullBtn.querySelector('.label').textContent = t(views.inFullscreen ? 'call.fullscreen.exit' : 'call.fullscreen');
    fullBtn.querySelector('.icon').className = `icon ${views.inFullscreen ? 'fullscreen-exit' : 'fullscreen'}`;
    tools.hidden = [switchBtn, shareBtn, pipBtn, fullBtn].every((b) => b.hidden);
  };
  views.addEventListener('change', renderTools);
  const checkCameraSwitch = async () => {
    cameraSwitchable = await canSwitchCamera(stream?.getVideoTracks()[0]);
    renderTools();
  };

  renderControls();
  micBtn.addEventListener('click', () => {
    const a = stream?.getAudioTracks()[0];
    if (!a) return;
    a.enabled = !a.enabled;
    renderControls();
    state.call?.setMediaState(localMediaState());
    announce(t(a.enabled ? 'call.mic.on' : 'call.mic.isOff'));
  });
  camBtn.addEventListener('click', () => {
    const v = stream?.getVideoTracks()[0];
    if (!v) return;
    v.enabled = !v.enabled;
    renderControls();
    state.call?.setMediaState(localMediaState());
    announce(t(v.enabled ? 'call.cam.on' : 'call.cam.isOff'));
  });
  const problemNote = (key, vars) => replace(mediaNote, h('div', { class: 'notice warn', role: 'alert' }, h('p', { text: t(key, vars) })));
  switchBtn.addEventListener('click', async () => {
    switchBtn.disabled = true;
    try {
      const track = await switchCamera(stream);
      const facing = facingOf(track);
      announce(t(facing === 'environment' ? 'call.switchCam.back' : facing === 'user' ? 'call.switchCam.front' : 'call.switchCam.other'));
    } catch {
      problemNote('call.switchCam.failed');
    } finally {
      // Whatever camera the stream holds now goes out (unless a screen is
      // shared), without renegotiating.
      const video = stream?.getVideoTracks()[0];
      if (video && !screenTrack) await state.call?.replaceTrack(video);
      showSelf();
      renderControls();
      state.call?.setMediaState(localMediaState());
      switchBtn.disabled = false;
      await renderDevices();
    }
  });
  const stopShare = async ({ quiet = false } = {}) => {
    if (!screenTrack) return;
    const track = screenTrack;
    screenTrack = null;
    track.stop();
    await state.call?.replaceTrack(stream?.getVideoTracks()[0] || null, 'video');
    state.call?.setMediaState(localMediaState());
    showSelf();
    renderTools();
    if (!quiet) announce(t('call.share.off'));
  };
  shareBtn.addEventListener('click', async () => {
    if (screenTrack) {
      await stopShare();
      return;
    }
    let track;
    try {
      track = await openScreen();
    } catch (code) {
      // "denied" is also a cancelled choice: nothing to say then.
      if (code !== 'denied') problemNote('call.share.failed');
      return;
    }
    if (!state.call || screenTrack) {
      track.stop();
      return;
    }
    screenTrack = track;
    // The browser's own "Stop sharing" ends the track.
    track.addEventListener('ended', () => stopShare());
    await state.call.replaceTrack(track, 'video');
    state.call.setMediaState(localMediaState());
    showSelf();
    renderTools();
    announce(t('call.share.on'));
  });
  pipBtn.addEventListener('click', () => views.togglePip().catch((err) => console.warn('picture in picture', err)));
  fullBtn.addEventListener('click', () => views.toggleFullscreen().catch((err) => console.warn('full screen', err)));

  // The patient's microphone, camera and screen, and the connection.
  const peer = new PeerMedia(peerState, 'patient', t);
  const net = new ConnectionIndicator(netLevel, t);

  // Device choice.
  const renderDevices = async () => {
    const list = await listDevices();
    const current = (kind) => stream?.getTracks().find((x) => x.kind === kind)?.getSettings().deviceId || '';
    const makeSelect = (items, selected, key, onChange) => {
      const sel = h(
        'select',
        { on: { change: (e) => onChange(e.target.value) } },
        items.length ? items.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === selected, text: d.label || `${t(key)} ${i + 1}` })) : h('option', { value: '', text: t('check.devices.none') }),
      );
      return field(t(key), sel);
    };
    const switchTrack = async (kind, deviceId) => {
      try {
        const track = await openTrack(kind, deviceId);
        const old = stream?.getTracks().find((x) => x.kind === kind);
        if (old) {
          track.enabled = old.enabled;
          stream.removeTrack(old);
          old.stop();
        }
        if (!stream) stream = new MediaStream();
        stream.addTrack(track);
        if (kind === 'video') showSelf();
        // A shared screen stays out until the sharing stops.
        if (kind !== 'video' || !screenTrack) await state.call?.replaceTrack(track);
        state.call?.setMediaState(localMediaState());
        renderControls();
        if (kind === 'video') checkCameraSwitch();
      } catch (code) {
        replace(mediaNote, h('div', { class: 'notice warn' }, h('p', { text: t('cons.mediaProblem', { problem: t(`media.${code}`) }) })));
      }
    };
    replace(
      devices,
      h('h2', { id: 'dev-h', text: t('devices.title') }),
      h(
        'div',
        { class: 'stack' },
        makeSelect(list.videoinput, current('video'), 'devices.camera', (v) => switchTrack('video', v)),
        makeSelect(list.audioinput, current('audio'), 'devices.mic', (v) => switchTrack('audio', v)),
        canChooseSpeaker() && list.audiooutput.length
          ? makeSelect(list.audiooutput, speakerId, 'devices.speaker', (v) => {
              speakerId = v;
              setSpeaker(remote, v);
            })
          : null,
      ),
    );
  };
  await renderDevices();
  await checkCameraSwitch();

  // Banner: the signaling socket or the media path is down, or no media
  // arrives from the patient (the truth, whatever the connection says).
  const updateBanner = () => {
    const sigDown = sig.state === 'reconnecting';
    const pcDown = state.inCall && (state.pcState === 'disconnected' || state.pcState === 'failed');
    const stalled = state.inCall && state.stalled;
    const mediaDown = pcDown || stalled;
    document.body.dataset.reconnecting = sigDown || mediaDown ? 'true' : 'false';
    document.body.dataset.mediaFlowing = state.inCall && !mediaDown && state.pcState === 'connected' ? 'true' : 'false';
    quality.flowing(state.inCall && !mediaDown && !sigDown);
    clearTimeout(state.bannerTimer);
    if (sigDown || mediaDown) {
      banner.className = 'banner';
      banner.textContent = sigDown ? t('cons.reconnecting') : pcDown ? t('pc.disconnected') : t('cons.noMedia');
      banner.hidden = false;
      state.bannerShown = true;
    } else if (state.bannerShown) {
      state.bannerShown = false;
      banner.className = 'banner ok';
      banner.textContent = t('call.reconnected');
      state.bannerTimer = setTimeout(() => {
        banner.hidden = true;
      }, 4000);
    }
  };

  const setWaiting = (key, { waiting = false } = {}) => {
    state.waiting = waiting;
    admitBtn.hidden = !waiting;
    denyBtn.hidden = !waiting;
    denyField.hidden = !waiting;
    replace(waitStatus, h('p', { class: waiting ? 'notice warn' : 'muted', text: t(key), dataset: { key } }));
    if (!state.inCall) overlay.textContent = t(key);
    if (waiting) announce(t(key), { assertive: true });
  };

  // Signaling.
  const sig = new Signaling({ session: { consultation: consultation.id } }, { url: signalingUrl(consultation.id) });
  setWaiting('cons.connecting');
  let welcome = null;

  const startCall = () => {
    state.call?.close();
    const call = new Call({
      signaling: sig,
      polite: welcome.polite,
      iceServers: welcome.ice_servers,
      relayOnly: welcome.candidate_policy === 'relay_only',
      stream,
    });
    state.call = call;
    state.inCall = true;
    state.started = true;
    state.stalled = false;
    leftNotice.hidden = true;
    call.addEventListener('remotestream', (e) => {
      if (remote.srcObject !== e.detail) remote.srcObject = e.detail;
      setSpeaker(remote, speakerId);
    });
    call.addEventListener('state', (e) => {
      state.pcState = e.detail;
      document.body.dataset.call = e.detail;
      updateBanner();
    });
    call.addEventListener('quality', (e) => {
      quality.update(e.detail);
      net.update(e.detail, { expectVideo: peer.moving });
      if (state.stalled !== e.detail.stalled) {
        state.stalled = e.detail.stalled;
        updateBanner();
      }
    });
    overlay.hidden = false;
    overlay.textContent = t('call.connecting');
    endBtn.disabled = false;
    chat.enable(sig);
    safetyCard.prompt();
    setWaiting('cons.inCall');
    announce(t('call.started'));
    peer.clear();
    net.reset();
    renderTools();
    call.setMediaState(localMediaState());
    call.start();
  };

  const stopCall = () => {
    state.inCall = false;
    state.call?.close();
    state.call = null;
    if (screenTrack) {
      screenTrack.stop();
      screenTrack = null;
      showSelf();
    }
    views.leave();
    peer.clear();
    net.reset();
    renderTools();
    remote.srcObject = null;
    overlay.hidden = false;
    chat.disable();
    quality.reset();
    state.pcState = 'new';
    state.stalled = false;
    endBtn.disabled = !state.started;
    updateBanner();
  };

  const hideOverlay = () => {
    if (remote.videoWidth > 0) overlay.hidden = true;
  };
  remote.addEventListener('resize', hideOverlay);
  remote.addEventListener('playing', hideOverlay);

  sig.addEventListener('state', updateBanner);
  sig.addEventListener('welcome', (e) => {
    welcome = e.detail;
    if (e.detail.resumed) {
      if (state.inCall) state.call?.resumed();
    } else {
      stopCall();
      setWaiting('cons.nobody');
    }
    updateBanner();
  });
  sig.addEventListener('message', (e) => {
    const msg = e.detail;
    switch (msg.type) {
      case 'patient_waiting':
        replace(admitResult);
        leftNotice.hidden = true;
        setWaiting('cons.patientWaiting', { waiting: true });
        refresh().catch(() => {});
        return;
      case 'peer_joined':
        replace(admitResult);
        startCall();
        refresh().catch(() => {});
        return;
      case 'peer_left':
        stopCall();
        overlay.textContent = t('cons.patientLeft');
        setWaiting('cons.patientLeft');
        announce(t('cons.patientLeft'));
        // The consultation goes on: the patient may come back from the same
        // link. The therapist waits for them or ends it.
        refresh()
          .then((c) => {
            if (c.state === 'in_call') {
              state.started = true;
              endBtn.disabled = false;
              leftNotice.hidden = false;
            } else if (c.state === 'ended') finish();
          })
          .catch(() => {});
        return;
      case 'offer':
      case 'answer':
      case 'candidate':
      case 'end_of_candidates':
      case 'ice_restart':
        state.call?.handle(msg);
        return;
      case 'chat':
        chat.receive(msg);
        return;
      case 'media_state':
        peer.receive(msg);
        return;
      case 'media_established':
        document.body.dataset.media = 'established';
        quality.established();
        return;
      case 'bye':
        finish();
        return;
      case 'replaced':
        stopCall();
        replace(admitResult, h('div', { class: 'notice warn' }, h('p', { text: t('cons.replaced') }), h('button', { type: 'button', text: t('cons.useHere'), on: { click: () => sig.connect({ fresh: true }) } })));
        return;
      default:
        return;
    }
  });
  sig.addEventListener('error', (e) => {
    const msg = e.detail;
    if (msg.code === 'not_eligible') {
      const items = (msg.failures || []).map((f) => (has(`failure.${f}`) ? t(`failure.${f}`) : f));
      replace(admitResult, h('div', { class: 'notice bad', role: 'alert' }, h('p', { text: t('cons.notEligible') }), h('ul', {}, items.map((x) => h('li', { text: x })))));
      admitBtn.disabled = false;
    } else if (msg.code === 'admission_check_failed') {
      replace(admitResult, h('p', { class: 'notice bad', role: 'alert', text: t('cons.checkFailed') }));
      admitBtn.disabled = false;
    } else if (['unauthorized', 'wrong_state', 'forbidden'].includes(msg.code) && !state.inCall && !welcome) {
      replace(admitResult, h('p', { class: 'notice bad', role: 'alert', text: t('cons.sigError', { code: msg.code }) }));
    }
  });

  admitBtn.addEventListener('click', () => {
    admitBtn.disabled = true;
    replace(admitResult, h('p', { role: 'status', text: t('cons.admitting') }));
    sig.send({ type: 'admit' });
    setTimeout(() => {
      admitBtn.disabled = false;
    }, 3000);
  });
  denyBtn.addEventListener('click', () => {
    const reason = denyReason.value.trim();
    sig.send(reason ? { type: 'deny', reason } : { type: 'deny' });
    denyReason.value = '';
    setWaiting('cons.denied');
  });

  endBtn.addEventListener('click', () => {
    endConfirm.hidden = false;
    focusOn(endConfirm.querySelector('#end-yes'));
  });
  endConfirm.querySelector('#end-no').addEventListener('click', () => {
    endConfirm.hidden = true;
    focusOn(endBtn);
  });
  endConfirm.querySelector('#end-yes').addEventListener('click', async () => {
    endConfirm.hidden = true;
    sig.leave();
    finish();
  });
  leftNotice.querySelector('#wait-for-patient').addEventListener('click', () => {
    leftNotice.hidden = true;
    setWaiting('cons.waitingForReturn');
    focusOn(waitStatus);
  });
  leftNotice.querySelector('#end-consultation').addEventListener('click', () => {
    leftNotice.hidden = true;
    sig.leave();
    finish();
  });

  let finished = false;
  async function finish() {
    if (finished) return;
    finished = true;
    stopCall();
    sig.stop();
    stopStream(stream);
    announce(t('cons.ended'));
    // The server records the end as it handles the leave; look until it has.
    for (let i = 0; i < 20; i += 1) {
      const c = await refresh().catch(() => null);
      if (c && !LIVE_STATES.has(c.state)) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    await onOver();
  }

  sig.connect();

  return {
    relabel() {
      for (const [el, key, vars] of labels) el.textContent = t(key, vars);
      renderControls();
      peer.render();
      net.render();
      if (screenTrack) showSelf();
      const key = waitStatus.querySelector('[data-key]')?.dataset.key;
      if (key) setWaiting(key, { waiting: state.waiting });
      quality.relabel();
    },
    close() {
      views.dispose();
      if (finished) return;
      finished = true;
      stopCall();
      sig.stop();
      stopStream(stream);
    },
  };
}

function safetyPanel(consultation, patient, L) {
  const location = h('input', { type: 'text', id: 'safety-location', required: true, autocomplete: 'off' });
  const phone = h('input', { type: 'tel', id: 'safety-phone', required: true, value: patient?.phone || '', autocomplete: 'off' });
  const result = h('div', { role: 'status' });
  const locLabel = L(h('label', { for: location.id }), 'safety.location');
  const locHint = L(h('span', { class: 'hint', id: 'safety-location-hint' }), 'safety.locationHint');
  location.setAttribute('aria-describedby', locHint.id);
  const form = h(
    'form',
    { class: 'stack', id: 'safety-form' },
    h('div', { class: 'form-errors' }),
    L(h('p', {}), 'safety.intro'),
    h('div', { class: 'grid-2' }, h('div', { class: 'field' }, locLabel, locHint, location), h('div', { class: 'field' }, L(h('label', { for: phone.id }), 'safety.phone'), phone)),
    h('div', { class: 'actions' }, L(h('button', { type: 'submit', class: 'primary' }), 'safety.confirm')),
  );
  const el = h('section', { class: 'card', 'aria-labelledby': 'safety-h', id: 'safety', hidden: true }, L(h('h2', { id: 'safety-h' }), 'safety.title'), form, result);
  onSubmit(form, async () => {
    const body = { patient_location: location.value.trim(), callback_phone: phone.value.trim() };
    await api.post(`/api/consultations/${consultation.id}/safety`, body);
    el.classList.remove('highlight');
    form.hidden = true;
    replace(result, okBox(t('safety.done', { location: body.patient_location, phone: body.callback_phone })));
  });
  let prompted = false;
  return {
    el,
    prompt() {
      el.hidden = false;
      if (!prompted && !form.hidden) {
        prompted = true;
        el.classList.add('highlight');
      }
    },
  };
}

function qualityPanel(L) {
  const dl = h('dl', { class: 'quality', id: 'quality' });
  const rows = {};
  for (const key of ['path', 'state', 'rtt', 'loss', 'bitrate']) {
    const dd = h('dd', { id: `q-${key}`, text: '–' });
    rows[key] = dd;
    dl.append(L(h('dt', {}), `quality.${key}`), dd);
  }
  const established = h('p', { class: 'status ok', hidden: true });
  const el = h('section', { class: 'card', 'aria-labelledby': 'q-h' }, L(h('h2', { id: 'q-h' }), 'quality.title'), dl, established);
  let last = null;
  let isEstablished = false;
  let isFlowing = false;
  const showEstablished = () => {
    established.hidden = !(isEstablished && isFlowing);
    established.textContent = t('cons.mediaEstablished');
  };
  const render = () => {
    const q = last;
    if (!q) {
      for (const dd of Object.values(rows)) dd.textContent = '–';
      return;
    }
    const path = q.candidateType === 'relay' ? 'relay' : q.candidateType ? 'direct' : 'unknown';
    rows.path.textContent = t(`quality.${path}`);
    rows.path.dataset.path = path;
    rows.path.dataset.candidate = q.candidateType || '';
    rows.state.textContent = has(`pc.${q.connectionState}`) ? t(`pc.${q.connectionState}`) : q.connectionState;
    rows.rtt.textContent = q.rttMs === null ? '–' : t('quality.ms', { n: fmtNumber(q.rttMs) });
    rows.loss.textContent = q.lossPct === null ? '–' : t('quality.pct', { n: fmtNumber(q.lossPct, 1) });
    rows.bitrate.textContent = q.kbps === null ? '–' : t('quality.kbps', { n: fmtNumber(q.kbps) });
  };
  return {
    el,
    update(q) {
      last = q;
      render();
    },
    reset() {
      last = null;
      isFlowing = false;
      render();
      showEstablished();
    },
    established() {
      isEstablished = true;
      showEstablished();
    },
    /** Whether media flows right now: "both ways" is shown only then. */
    flowing(now) {
      isFlowing = now;
      showEstablished();
    },
    relabel() {
      render();
      showEstablished();
    },
  };
}

function chatPanel(L) {
  const log = h('div', { class: 'chat-log', role: 'log', 'aria-live': 'polite', id: 'chat-log', tabindex: '0', 'aria-labelledby': 'chat-h' });
  const input = h('input', { type: 'text', maxlength: '2000', id: 'chat-input', disabled: true, autocomplete: 'off' });
  const send = L(h('button', { type: 'submit', disabled: true }), 'chat.send');
  const form = h('form', { class: 'copy-row' }, h('label', { for: input.id, class: 'visually-hidden', text: t('chat.message') }), input, send);
  let sig = null;
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text || !sig) return;
    if (sig.send({ type: 'chat', text })) {
      log.append(h('p', {}, h('strong', { text: `${t('chat.me')}: ` }), text));
      input.value = '';
      log.scrollTop = log.scrollHeight;
    }
  });
  return {
    el: h('section', { class: 'card', 'aria-labelledby': 'chat-h' }, L(h('h2', { id: 'chat-h' }), 'chat.title'), log, form),
    enable(s) {
      sig = s;
      input.disabled = false;
      send.disabled = false;
    },
    disable() {
      input.disabled = true;
      send.disabled = true;
    },
    receive(msg) {
      log.append(h('p', {}, h('strong', { text: `${t(msg.from === 'patient' ? 'chat.patient' : 'chat.therapist')}: ` }), msg.text));
      log.scrollTop = log.scrollHeight;
    },
  };
}

/** Reissue link, cancel, no-show, technical failure. */
function otherActions(consultation, L, refresh, onOver) {
  const result = h('div', { role: 'status' });
  const act = (path, after) => async (ev) => {
    ev.target.disabled = true;
    replace(result);
    try {
      const res = await api.post(`/api/consultations/${consultation.id}/${path}`);
      await after(res);
    } catch (err) {
      replace(result, errorBox(err));
    } finally {
      ev.target.disabled = false;
    }
  };
  const markAndLeave = (path) =>
    act(path, async () => {
      await refresh();
      await onOver();
    });
  const reissue = act('link', (res) => {
    const input = h('input', { type: 'text', readonly: true, value: res.join_url, id: 'new-join-link' });
    replace(result, h('div', { class: 'notice ok' }, h('p', { text: t('cons.reissued') }), field(t('schedule.link'), input)));
  });
  // No one-click accidents: each action asks first, saying what follows.
  const confirmBox = h('div', { class: 'notice warn', hidden: true, role: 'alertdialog', 'aria-labelledby': 'confirm-q' });
  const ask = (code, labelKey, danger, run) => {
    const button = L(h('button', { type: 'button', class: danger ? 'danger' : undefined }), labelKey);
    button.addEventListener('click', () => {
      const yes = h('button', {
        type: 'button',
        class: danger ? 'danger' : 'primary',
        text: t('cons.confirm.yes', { action: t(labelKey) }),
        dataset: { confirm: code },
        on: {
          click: async (ev) => {
            confirmBox.hidden = true;
            await run(ev);
          },
        },
      });
      const no = h('button', {
        type: 'button',
        text: t('cons.confirm.no'),
        on: {
          click: () => {
            confirmBox.hidden = true;
            focusOn(button);
          },
        },
      });
      replace(confirmBox, h('p', { id: 'confirm-q', text: t(`cons.confirm.${code}`) }), h('div', { class: 'actions' }, yes, no));
      confirmBox.hidden = false;
      focusOn(yes);
    });
    return button;
  };
  return h(
    'details',
    { class: 'card' },
    L(h('summary', { class: 'button' }), 'cons.more'),
    h(
      'div',
      { class: 'actions' },
      ask('link', 'cons.reissue', false, reissue),
      ask('no-show', 'cons.noShow', false, markAndLeave('no-show')),
      ask('technical-failure', 'cons.techFail', false, markAndLeave('technical-failure')),
      ask('cancel', 'cons.cancel', true, markAndLeave('cancel')),
    ),
    confirmBox,
    result,
  );
}

// ---------- After the call ----------

const JOURNAL_FIELDS = ['status_since_last', 'evaluation', 'complications', 'exercises_and_instruction', 'plan_changes'];

function renderJournal(root, consultation, refresh) {
  const areas = JOURNAL_FIELDS.map((key) => {
    const ta = h('textarea', { name: key, id: `journal-${key}`, rows: '3' });
    return { key, ta, el: field(t(`journal.${key}`), ta, { hint: has(`journal.${key}.hint`) ? t(`journal.${key}.hint`) : undefined }) };
  });
  const goal = checkbox(t('journal.goal_reached_discharge'), { name: 'goal_reached_discharge', id: 'journal-goal' });
  const free = h('textarea', { name: 'free_text', id: 'journal-free_text', rows: '3' });
  const result = h('div', { id: 'billing-result' });
  const form = h(
    'form',
    { class: 'stack card', id: 'journal-form', 'aria-labelledby': 'journal-h' },
    h('h2', { id: 'journal-h', text: t('journal.title') }),
    h('p', { text: t('journal.intro') }),
    h('div', { class: 'form-errors' }),
    areas.map((a) => a.el),
    goal.el,
    field(t('journal.free_text'), free, { optional: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('journal.submit') })),
  );
  onSubmit(form, async () => {
    const journal = {};
    for (const a of areas) journal[a.key] = a.ta.value.trim() || null;
    journal.goal_reached_discharge = goal.input.checked;
    journal.free_text = free.value.trim() || null;
    const res = await api.post(`/api/consultations/${consultation.id}/complete`, { journal });
    form.hidden = true;
    replace(result, okBox(t('journal.saved')), billingResult(res));
    focusOn(result.querySelector('h2'));
    await refresh().catch(() => {});
  });
  replace(root, h('p', { class: 'notice', text: t('cons.ended') }), form, result);
  focusOn(form.querySelector('h2'));
}

function billingResult(res) {
  if (res.billable && res.line) {
    const l = res.line;
    return h(
      'section',
      { class: 'card highlight', 'aria-labelledby': 'bill-h', dataset: { billable: 'true' } },
      h('h2', { id: 'bill-h', tabindex: '-1', text: t('billing.result') }),
      h('p', { class: 'status ok', text: t('billing.billable') }),
      res.repeated ? h('p', { class: 'muted', text: t('billing.repeated') }) : null,
      h(
        'dl',
        { class: 'facts', id: 'billing-line' },
        h('dt', { text: t('billing.service') }),
        h('dd', { text: `${l.service_number}, ${t('speciale.short', { code: l.speciale })}` }),
        h('dt', { text: t('billing.fee') }),
        h('dd', { id: 'bill-fee', text: amountText(l.fee) }),
        h('dt', { text: t('billing.regionShare') }),
        h('dd', { id: 'bill-region', text: amountText(l.region_share) }),
        h('dt', { text: t('billing.patientShare') }),
        h('dd', { id: 'bill-patient', text: amountText(l.patient_share) }),
        h('dt', { text: t('billing.day') }),
        h('dd', { text: fmtDate(`${l.calendar_day}T12:00:00Z`) }),
      ),
    );
  }
  const reason = res.reason || {};
  return h(
    'section',
    { class: 'card highlight', 'aria-labelledby': 'bill-h', dataset: { billable: 'false', reason: reason.code || '' } },
    h('h2', { id: 'bill-h', tabindex: '-1', text: t('billing.result') }),
    h('p', { class: 'status bad', text: t('billing.notBillable') }),
    h('p', { id: 'bill-reason' }, h('strong', { text: `${t('billing.why')} ` }), (document.documentElement.lang === 'en' ? reason.en : reason.da) || reason.code || ''),
  );
}

async function renderFinal(root, consultation) {
  const items = [h('p', { class: 'notice', text: t('cons.final', { state: has(`state.${consultation.state}`) ? t(`state.${consultation.state}`) : consultation.state }) })];
  if (consultation.state === 'completed') {
    try {
      const journal = await api.get(`/api/consultations/${consultation.id}/journal`);
      const note = journal.note || journal.journal || journal;
      items.push(
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'jn-h' },
          h('h2', { id: 'jn-h', text: t('journal.title') }),
          h(
            'dl',
            { class: 'facts' },
            [...JOURNAL_FIELDS, 'free_text'].filter((k) => note[k]).map((k) => [h('dt', { text: t(`journal.${k}`) }), h('dd', { text: note[k] })]),
            note.goal_reached_discharge ? [h('dt', { text: t('journal.goal_reached_discharge') }), h('dd', { text: t('app.yes') })] : null,
          ),
        ),
      );
    } catch {
      // The note is shown where it can be read; the state is enough here.
    }
  }
  replace(root, ...items);
}
