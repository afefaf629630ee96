// In the call (issue 11, "The patient, on a phone"): the patient on a phone
// (390 × 664, touch) and the therapist on a 1440 × 900 desktop.
//
// - Switching camera: Chromium runs with three fake cameras
//   (`--use-fake-device-for-media-stream=device-count=3`, a switch of the
//   fake device itself, no stub in the page). Chromium's second fake camera
//   (fake_device_1) is a Y16 depth camera whose frames no encoder takes,
//   so both sides start on fake_device_2 (chosen in the device check and
//   in the dashboard's camera list) and "Skift kamera" goes on to
//   fake_device_0: a different outgoing track with replaceTrack, the old
//   one stopped, no new offer or answer, the other side still decodes.
// - Picture in picture (where the browser offers it) and full screen,
//   entered and left, the label following.
// - media_state both ways: the therapist's microphone off is shown on the
//   patient's page, the patient's camera off on the therapist's, in a
//   status region; on again clears it.
// - The connection indicator says "God" in a healthy loopback call.
// - Screen sharing: getDisplayMedia works headless with
//   --use-fake-ui-for-media-stream (Chromium picks the screen itself); the
//   patient's page shows the screen layout; "Stop deling" and the
//   browser's own stop (the track's `ended`) bring the camera back, media
//   still flowing.
// - Every new control in reach at 390 × 664, 320 × 568 and 664 × 390, axe
//   clean there and on the therapist's 1440 × 900, and screenshots
//   (incall-*.png).
// The connection level and the peer notices are also tested as pure
// functions, without a browser.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ConnectionMeter, connectionLevel, peerNotices, peerTurnedOn } from '../../web-client/static/js/call.js';
import { expectMediaFlowing, launch, newContext, screenshot, waitFor, watchErrors } from './helpers/browser.js';
import {
  admit,
  confirmSafety,
  eligiblePatient,
  expectAccessible,
  schedule,
  setupClinic,
  therapistOpens,
} from './helpers/flows.js';
import { startServer } from './helpers/server.js';

const PORTRAIT = { width: 390, height: 664 };
const SMALL = { width: 320, height: 568 };
const LANDSCAPE = { width: 664, height: 390 };
const DESKTOP = { width: 1440, height: 900 };
const CALL_CONTROLS = ['#btn-mic', '#btn-cam', '#btn-chat', '#btn-leave'];
const MENU_ITEMS = ['#btn-switch-cam', '#btn-pip', '#btn-fullscreen'];

// ---------- Without a browser ----------

test('the connection level: good, weak (slow, lossy, frozen picture), lost; steadied for the screen', () => {
  const ok = { connectionState: 'connected', rttMs: 20, lossPct: 0, fps: 20, stalled: false };
  assert.equal(connectionLevel(ok), 'good');
  assert.equal(connectionLevel({ ...ok, rttMs: 650 }), 'weak');
  assert.equal(connectionLevel({ ...ok, lossPct: 12 }), 'weak');
  assert.equal(connectionLevel({ ...ok, fps: 0 }), 'weak', 'a camera picture that stands still');
  assert.equal(connectionLevel({ ...ok, fps: 0 }, { expectVideo: false }), 'good', 'a camera turned off, or a still screen');
  assert.equal(connectionLevel({ ...ok, stalled: true }), 'lost');
  assert.equal(connectionLevel({ ...ok, connectionState: 'disconnected' }), 'lost');
  assert.equal(connectionLevel({ ...ok, connectionState: 'connecting' }), null);
  assert.equal(connectionLevel({ ...ok, rttMs: null, lossPct: null, fps: null }), 'good', 'the first reading has no rates yet');

  const meter = new ConnectionMeter({ minIntervalMs: 3000 });
  assert.deepEqual(meter.update('good', 0), { level: null, changed: false }, 'one reading is not enough');
  assert.deepEqual(meter.update('good', 1000), { level: 'good', changed: true });
  assert.deepEqual(meter.update('weak', 2000), { level: 'good', changed: false }, 'one weak reading is a blip');
  assert.deepEqual(meter.update('weak', 3000), { level: 'good', changed: false }, 'not within 3 s of the last change');
  assert.deepEqual(meter.update('weak', 4000), { level: 'weak', changed: true });
  assert.deepEqual(meter.update('good', 5000), { level: 'weak', changed: false });
  assert.deepEqual(meter.update(null, 6000), { level: 'weak', changed: false }, 'not known: the level stays');
  assert.deepEqual(meter.update('good', 7000), { level: 'weak', changed: false }, 'an unknown reading breaks the run');
  assert.deepEqual(meter.update('good', 8000), { level: 'good', changed: true });
  meter.reset();
  assert.equal(meter.level, null);
});

test('the other side’s microphone, camera and screen in words', () => {
  assert.deepEqual(peerNotices('therapist', null), []);
  assert.deepEqual(peerNotices('therapist', { audio: true, video: true, screen: false }), []);
  assert.deepEqual(
    peerNotices('patient', { audio: false, video: false, screen: false }).map((n) => n.key),
    ['peer.patient.micOff', 'peer.patient.camOff'],
  );
  // A shared screen is what the patient sees: the camera being off is not news.
  assert.deepEqual(
    peerNotices('therapist', { audio: false, video: false, screen: true }).map((n) => n.key),
    ['peer.therapist.screen', 'peer.therapist.micOff'],
  );
  assert.deepEqual(peerNotices('someone', { audio: false, video: true }), []);
  assert.deepEqual(peerTurnedOn('patient', { audio: false, video: false }, { audio: true, video: true }), ['peer.patient.micOn', 'peer.patient.camOn']);
  assert.deepEqual(peerTurnedOn('patient', null, { audio: true, video: true }), [], 'the first state is no change');
});

// ---------- In the browser ----------

let server;
let browser;

before(async () => {
  server = await startServer();
  // Three fake cameras (the default is one): "Skift kamera" has somewhere to go.
  browser = await launch(['--use-fake-device-for-media-stream=device-count=3']);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Keeps the page's peer connections in window.__pcs (as helpers/browser.js newContext does). */
const TRACK_PEER_CONNECTIONS = `(() => {
  const Original = window.RTCPeerConnection;
  if (!Original || window.__pcs) return;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
})();`;

/** A phone: touch, a mobile viewport, twice the pixels; camera and microphone allowed. */
async function phoneContext() {
  const context = await browser.newContext({
    baseURL: server.baseUrl,
    locale: 'da-DK',
    timezoneId: 'Europe/Copenhagen',
    viewport: PORTRAIT,
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    permissions: ['camera', 'microphone'],
  });
  await context.addInitScript(TRACK_PEER_CONNECTIONS);
  return context;
}

/** The camera in the page's own picture (before and during the call). */
const outgoingCamera = (page) => page.evaluate(() => document.querySelector('#self').srcObject?.getVideoTracks()[0]?.label || null);

/** The page's outgoing video track and the descriptions of its live peer connection. */
async function outgoing(page) {
  return page.evaluate(() => {
    const pc = [...(window.__pcs || [])].reverse().find((p) => p.connectionState !== 'closed');
    if (!pc) return null;
    const sender = pc.getTransceivers().find((x) => x.receiver.track?.kind === 'video' && x.sender.track)?.sender;
    const track = sender?.track || null;
    window.__lastSent = track;
    return {
      id: track?.id || null,
      label: track?.label || null,
      local: pc.currentLocalDescription?.sdp || '',
      remote: pc.currentRemoteDescription?.sdp || '',
      senders: pc.getSenders().length,
    };
  });
}

/**
 * Every selector wholly inside the viewport, uncovered and not cut off
 * (its middle and both ends on top), at least 44 × 44 px (the page
 * scrolled to the top, as the patient sees it).
 */
async function expectInReach(page, selectors, what) {
  const m = await page.evaluate((sels) => {
    window.scrollTo(0, 0);
    const vw = document.documentElement.clientWidth;
    const vh = window.innerHeight;
    const items = {};
    for (const sel of sels) {
      const el = document.querySelector(sel);
      if (!el) {
        items[sel] = { missing: true };
        continue;
      }
      const r = el.getBoundingClientRect();
      const inside = r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= vh + 0.5 && r.right <= vw + 0.5;
      // The middle and both ends: a control cut off by a box around it fails at an end.
      const y = r.top + r.height / 2;
      const onTop = inside && [r.left + r.width / 2, r.left + 4, r.right - 4].every((x) => {
        const hit = document.elementFromPoint(x, y);
        return Boolean(hit && (hit === el || el.contains(hit)));
      });
      items[sel] = { top: Math.round(r.top), bottom: Math.round(r.bottom), left: Math.round(r.left), right: Math.round(r.right), width: Math.round(r.width), height: Math.round(r.height), inside, onTop };
    }
    return { viewport: `${vw}x${vh}`, pageWidth: document.documentElement.scrollWidth, items };
  }, selectors);
  console.log(`# ${what}: viewport ${m.viewport}; ${Object.entries(m.items).map(([s, r]) => (r.missing ? `${s} missing` : `${s} y ${r.top}–${r.bottom} x ${r.left}–${r.right}`)).join('; ')}`);
  for (const [sel, r] of Object.entries(m.items)) {
    assert.ok(!r.missing, `${what}: ${sel} is on the page`);
    assert.ok(r.inside, `${what}: ${sel} is inside the ${m.viewport} viewport: ${JSON.stringify(r)}`);
    assert.ok(r.onTop, `${what}: nothing covers ${sel}: ${JSON.stringify(r)}`);
    assert.ok(r.width >= 44 && r.height >= 44, `${what}: ${sel} is at least 44 × 44 px: ${JSON.stringify(r)}`);
  }
  assert.ok(m.pageWidth <= Number(m.viewport.split('x')[0]), `${what}: nothing is wider than the screen`);
}

/** Opens the patient's "Mere" menu (if closed) and waits for it. */
async function openMore(page) {
  if ((await page.locator('#btn-more').getAttribute('aria-expanded')) !== 'true') await page.getByRole('button', { name: 'Mere' }).click();
  await page.locator('#more-menu:not([hidden])').waitFor();
}

/** The colour camera both sides start on (fake_device_1 is a depth camera). */
const FIRST_CAMERA = 'fake_device_2';

/** The patient's first screen, device check (choosing the camera) and waiting room. */
async function patientToWaitingRoomWith(page, joinUrl, camera) {
  await page.goto(joinUrl);
  await page.getByRole('button', { name: 'Start' }).click();
  await page.getByRole('heading', { name: 'Tjek af kamera og lyd' }).waitFor();
  await page.locator('#camera-status.ok').waitFor({ timeout: 20000 });
  await page.locator('#sel-camera').selectOption({ label: camera });
  await waitFor(() => page.evaluate((label) => document.querySelector('#preview').srcObject?.getVideoTracks()[0]?.label === label, camera), { message: `the device check uses ${camera}` });
  await page.locator('#camera-status.ok').waitFor({ timeout: 20000 });
  await page.locator('#mic-status.ok').waitFor({ timeout: 20000 });
  await page.getByRole('button', { name: 'Gå til venteværelset' }).click();
  await page.locator('#wait-status').filter({ hasText: 'Venter på fysioterapeuten' }).waitFor({ timeout: 20000 });
}

/** Where the page's full-screen element is, by class ("" when none). */
const fullscreenClass = (page) => page.evaluate(() => document.fullscreenElement?.className || '');

test('in the call: switch camera, picture in picture, full screen, mute shown both ways, the connection, screen sharing', { timeout: 360000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await phoneContext();
  const tp = await tc.newPage();
  await tp.setViewportSize(DESKTOP);
  const pp = await pc.newPage();
  const errors = [...watchErrors(tp, 'therapist'), ...watchErrors(pp, 'patient')];
  try {
    await setupClinic(tp, server.setupLink);
    await eligiblePatient(tp, 'Jens Hansen');
    const { joinUrl, consultationId } = await schedule(tp, { relayOnly: false });
    await therapistOpens(tp, consultationId);
    await tp.getByLabel('Kamera', { exact: true }).selectOption({ label: FIRST_CAMERA });
    await waitFor(async () => (await outgoingCamera(tp)) === FIRST_CAMERA, { message: `the therapist's page uses ${FIRST_CAMERA}` });
    await patientToWaitingRoomWith(pp, joinUrl, FIRST_CAMERA);
    await tp.locator('#waiting-status').getByText('Patienten venter i venteværelset').waitFor({ timeout: 30000 });
    await admit(tp);
    await confirmSafety(tp);
    await pp.locator('#s-call:not([hidden])').waitFor({ timeout: 30000 });
    await Promise.all([expectMediaFlowing(tp, 'therapist'), expectMediaFlowing(pp, 'patient')]);
    const cameras = await pp.evaluate(async () => (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput').length);
    assert.equal(cameras, 3, 'the test browser has three fake cameras');
    assert.equal((await outgoing(pp)).label, FIRST_CAMERA, 'the patient sends the camera chosen in the device check');

    // --- The connection indicator: "God" on both pages. ---
    for (const [page, name] of [[pp, 'patient'], [tp, 'therapist']]) {
      await page.locator('#net-level[data-level="good"]').filter({ hasText: 'Forbindelse: God' }).waitFor({ timeout: 20000 });
      assert.equal(await page.locator('#net-level .icon').getAttribute('class'), 'icon net-good', `${name}: an icon with the word`);
    }

    // --- The other side's microphone and camera, both ways. ---
    assert.equal(await pp.locator('#peer-state').innerText(), '', 'nothing is off at the start');
    await tp.locator('#btn-mic').click();
    const patientStatus = pp.getByRole('status').filter({ hasText: 'Fysioterapeuten har slukket mikrofonen' });
    await patientStatus.waitFor({ timeout: 10000 });
    assert.equal(await pp.locator('#peer-state').getAttribute('aria-live'), 'polite');
    await pp.locator('#peer-state .peer-notice .icon.mic-off').waitFor();
    await pp.setViewportSize(SMALL);
    await expectAccessible(pp, 'patient call, the therapist’s microphone off, 320×568');
    await expectInReach(pp, [...CALL_CONTROLS, '#btn-more'], 'patient call with a notice at 320×568');
    await screenshot(pp, 'incall-patient-peer-mic-off-320');
    await pp.setViewportSize(PORTRAIT);
    await tp.locator('#btn-mic').click();
    await waitFor(async () => (await pp.locator('#peer-state').innerText()) === '', { message: 'the notice cleared when the microphone is on again' });

    await pp.locator('#btn-cam').click();
    await tp.getByRole('status').filter({ hasText: 'Patienten har slukket kameraet' }).waitFor({ timeout: 10000 });
    await expectAccessible(tp, 'therapist call, the patient’s camera off, 1440×900');
    await screenshot(tp, 'incall-therapist-peer-cam-off');
    await pp.locator('#btn-cam').click();
    await waitFor(async () => (await tp.locator('#peer-state').innerText()) === '', { message: 'the notice cleared when the camera is on again' });

    // --- Switching camera on the phone: a new outgoing track, no renegotiation. ---
    await expectInReach(pp, [...CALL_CONTROLS, '#btn-more'], 'patient call at 390×664');
    await openMore(pp);
    await expectInReach(pp, [...MENU_ITEMS, ...CALL_CONTROLS], 'the Mere menu at 390×664');
    await expectAccessible(pp, 'patient call with the Mere menu, 390×664');
    await screenshot(pp, 'incall-patient-more');
    // Esc closes the menu and leaves the focus on "Mere".
    await pp.locator('#btn-more').focus();
    await pp.keyboard.press('Escape');
    await pp.locator('#more-menu').waitFor({ state: 'hidden' });
    assert.equal(await pp.evaluate(() => document.activeElement?.id), 'btn-more');
    assert.equal(await pp.locator('#btn-more').getAttribute('aria-expanded'), 'false');
    await openMore(pp);
    for (const size of [SMALL, LANDSCAPE]) {
      await pp.setViewportSize(size);
      await expectInReach(pp, [...MENU_ITEMS, ...CALL_CONTROLS], `the Mere menu at ${size.width}×${size.height}`);
      await expectAccessible(pp, `patient call with the Mere menu, ${size.width}×${size.height}`);
    }
    await screenshot(pp, 'incall-patient-more-landscape');
    await pp.setViewportSize(PORTRAIT);
    const before = await outgoing(pp);
    await pp.evaluate(() => {
      window.__oldCamera = window.__lastSent;
    });
    await pp.getByRole('button', { name: 'Skift kamera' }).click();
    const afterSwitch = await waitFor(
      async () => {
        const now = await outgoing(pp);
        return now && now.id && now.id !== before.id ? now : null;
      },
      { message: 'a different outgoing camera track' },
    );
    assert.equal(before.label, FIRST_CAMERA);
    assert.equal(afterSwitch.label, 'fake_device_0', `the next camera: ${before.label} → ${afterSwitch.label}`);
    assert.equal(await pp.evaluate(() => window.__oldCamera.readyState), 'ended', 'the old camera is stopped');
    assert.equal(afterSwitch.local, before.local, 'no new offer or answer (replaceTrack)');
    assert.equal(afterSwitch.remote, before.remote, 'no new offer or answer from the other side');
    assert.equal(afterSwitch.senders, before.senders, 'the same senders');
    assert.equal(await pp.evaluate(() => document.querySelector('#self').srcObject.getVideoTracks()[0].id), afterSwitch.id, 'the own picture shows the new camera');
    await Promise.all([expectMediaFlowing(tp, 'therapist after the patient switched camera'), expectMediaFlowing(pp, 'patient after switching camera')]);
    // The therapist can switch too (a desktop with two cameras).
    const tBefore = await outgoing(tp);
    await tp.getByRole('button', { name: 'Skift kamera' }).click();
    await waitFor(async () => (await outgoing(tp))?.id !== tBefore.id, { message: 'the therapist’s new outgoing camera track' });
    await expectMediaFlowing(pp, 'patient after the therapist switched camera');

    // --- Picture in picture, where the browser offers it. ---
    const pipEnabled = await pp.evaluate(() => document.pictureInPictureEnabled === true);
    await openMore(pp);
    if (pipEnabled) {
      await pp.getByRole('button', { name: 'Billede i billede' }).click();
      await waitFor(() => pp.evaluate(() => document.pictureInPictureElement?.id === 'remote'), { message: 'picture in picture' });
      await openMore(pp);
      await pp.getByRole('button', { name: 'Luk billede i billede' }).click();
      await waitFor(() => pp.evaluate(() => document.pictureInPictureElement === null), { message: 'picture in picture left' });
      await openMore(pp);
      await pp.getByRole('button', { name: 'Billede i billede' }).waitFor();
    } else {
      assert.equal(await pp.locator('#btn-pip').isHidden(), true, 'no picture-in-picture button where the browser has none');
    }

    // --- Full screen on the phone: the call's box, the controls still in reach. ---
    await pp.getByRole('button', { name: 'Fuld skærm' }).click();
    await waitFor(async () => (await fullscreenClass(pp)) === 'call', { message: 'the call in full screen' });
    await expectInReach(pp, [...CALL_CONTROLS, '#btn-more'], 'the call in full screen');
    await expectAccessible(pp, 'patient call in full screen');
    await screenshot(pp, 'incall-patient-fullscreen');
    await openMore(pp);
    await pp.getByRole('button', { name: 'Afslut fuld skærm' }).click();
    await waitFor(async () => (await fullscreenClass(pp)) === '', { message: 'full screen left with the button' });
    // Leaving by the browser's own way (Esc, the back gesture) relabels the button too.
    await openMore(pp);
    await pp.getByRole('button', { name: 'Fuld skærm' }).click();
    await waitFor(async () => (await fullscreenClass(pp)) === 'call', { message: 'the call in full screen again' });
    await pp.keyboard.press('Escape');
    // Headless Chromium may leave Esc to the page; then leave the way the browser does.
    const escaped = await waitFor(async () => (await fullscreenClass(pp)) === '', { timeout: 2000, message: 'Esc' }).catch(() => false);
    console.log(`# Esc left full screen in headless Chromium: ${Boolean(escaped)}`);
    if (!escaped) await pp.evaluate(() => document.exitFullscreen());
    await waitFor(async () => (await fullscreenClass(pp)) === '', { message: 'full screen left' });
    await openMore(pp);
    await pp.getByRole('button', { name: 'Fuld skærm' }).waitFor();
    await pp.getByRole('button', { name: 'Mere' }).click();

    // The therapist: full screen of the call's box, then back.
    await tp.getByRole('button', { name: 'Fuld skærm' }).click();
    await waitFor(async () => (await fullscreenClass(tp)) === 'call dark', { message: 'the therapist’s call in full screen' });
    await tp.getByRole('button', { name: 'Afslut fuld skærm' }).click();
    await waitFor(async () => (await fullscreenClass(tp)) === '', { message: 'the therapist left full screen' });

    // --- Screen sharing: the patient sees the screen full size. ---
    const camera = await outgoing(tp);
    await tp.getByRole('button', { name: 'Del skærm' }).click();
    const sharing = await waitFor(
      async () => {
        const now = await outgoing(tp);
        return now && now.id !== camera.id ? now : null;
      },
      { message: 'the screen goes out in the camera’s place' },
    );
    assert.match(sharing.label, /screen|window|tab|web-contents/i, `a screen track: ${sharing.label}`);
    assert.equal(sharing.local, camera.local, 'sharing needs no new offer');
    await tp.getByRole('button', { name: 'Stop deling' }).waitFor();
    await pp.locator('.call[data-peer-screen="true"]').waitFor({ timeout: 10000 });
    await pp.getByRole('status').filter({ hasText: 'Fysioterapeuten viser sin skærm' }).waitFor();
    const layout = await pp.evaluate(() => {
      const v = document.querySelector('#remote');
      const box = document.querySelector('#s-call .call').getBoundingClientRect();
      const r = v.getBoundingClientRect();
      return { fit: getComputedStyle(v).objectFit, video: [r.width, r.height], box: [box.width, box.height] };
    });
    assert.equal(layout.fit, 'contain', 'the whole screen is shown, nothing cut off');
    assert.ok(layout.video[0] >= layout.box[0] - 2 && layout.video[1] >= layout.box[1] - 2, `the screen takes the whole call area: ${JSON.stringify(layout)}`);
    await expectMediaFlowing(pp, 'patient watching the shared screen');
    await expectInReach(pp, [...CALL_CONTROLS, '#btn-more'], 'patient watching a screen at 390×664');
    await expectAccessible(pp, 'patient watching a screen, 390×664');
    await screenshot(pp, 'incall-patient-screen');
    await pp.setViewportSize(LANDSCAPE);
    await expectInReach(pp, [...CALL_CONTROLS, '#btn-more'], 'patient watching a screen at 664×390');
    await expectAccessible(pp, 'patient watching a screen, 664×390');
    await screenshot(pp, 'incall-patient-screen-landscape');
    await pp.setViewportSize(PORTRAIT);
    // Sharing changes only what goes out: the patient is still seen and heard.
    await expectMediaFlowing(tp, 'therapist while sharing the screen');
    await waitFor(async () => (await tp.evaluate(() => document.body.dataset.reconnecting)) === 'false', { message: 'no "no media" banner on the therapist’s page while sharing' });
    await expectAccessible(tp, 'therapist sharing the screen, 1440×900');
    await screenshot(tp, 'incall-therapist-sharing');

    // "Stop deling": the camera again.
    await tp.getByRole('button', { name: 'Stop deling' }).click();
    await waitFor(async () => (await outgoing(tp))?.label?.startsWith('fake_device'), { message: 'the camera goes out again' });
    await pp.locator('.call[data-peer-screen="false"]').waitFor({ timeout: 10000 });
    await waitFor(async () => (await pp.locator('#peer-state').innerText()) === '', { message: 'the screen notice cleared' });
    await expectMediaFlowing(pp, 'patient after the sharing stopped');

    // The browser's own "Stop sharing" ends the track: the camera again too.
    await tp.getByRole('button', { name: 'Del skærm' }).click();
    await pp.locator('.call[data-peer-screen="true"]').waitFor({ timeout: 10000 });
    await tp.evaluate(() => {
      const track = window.__pcs.at(-1).getSenders().find((s) => s.track?.kind === 'video').track;
      track.stop();
      track.dispatchEvent(new Event('ended'));
    });
    await tp.getByRole('button', { name: 'Del skærm' }).waitFor();
    await waitFor(async () => (await outgoing(tp))?.label?.startsWith('fake_device'), { message: 'the camera after the browser’s stop' });
    await pp.locator('.call[data-peer-screen="false"]').waitFor({ timeout: 10000 });
    await Promise.all([expectMediaFlowing(pp, 'patient at the end'), expectMediaFlowing(tp, 'therapist at the end')]);

    // --- In English: the new words follow the language switch. ---
    await tp.locator('#btn-cam').click();
    await pp.getByRole('status').filter({ hasText: 'Fysioterapeuten har slukket kameraet' }).waitFor({ timeout: 10000 });
    await pp.getByRole('button', { name: 'Show the page in English' }).click();
    await pp.locator('#peer-state').filter({ hasText: 'The physiotherapist has turned off the camera' }).waitFor();
    await pp.locator('#net-level').filter({ hasText: 'Connection: Good' }).waitFor();
    await pp.getByRole('button', { name: 'More' }).click();
    await pp.getByRole('button', { name: 'Switch camera' }).waitFor();
    await pp.setViewportSize(SMALL);
    await expectInReach(pp, [...MENU_ITEMS, ...CALL_CONTROLS], 'the More menu in English at 320×568');
    await screenshot(pp, 'incall-patient-more-en-320');
    await pp.setViewportSize(PORTRAIT);
    await pp.getByRole('button', { name: 'More' }).click();
    await pp.getByRole('button', { name: 'Vis siden på dansk' }).click();
    await pp.locator('#net-level').filter({ hasText: 'Forbindelse: God' }).waitFor();
    await tp.locator('#btn-cam').click();
    await waitFor(async () => (await pp.locator('#peer-state').innerText()) === '', { message: 'the camera notice cleared' });

    // --- The whole call with the new controls: axe and screenshots. ---
    for (const size of [PORTRAIT, SMALL, LANDSCAPE]) {
      await pp.setViewportSize(size);
      await expectInReach(pp, [...CALL_CONTROLS, '#btn-more'], `patient call at ${size.width}×${size.height}`);
      await expectAccessible(pp, `patient call, ${size.width}×${size.height}`);
    }
    await screenshot(pp, 'incall-patient-landscape');
    await pp.setViewportSize(PORTRAIT);
    await screenshot(pp, 'incall-patient-portrait');
    await expectAccessible(tp, 'therapist call, 1440×900');
    await screenshot(tp, 'incall-therapist');

    assert.deepEqual(errors.filter((e) => !/WebSocket|net::/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(pp, 'incall-failure-patient').catch(() => {});
    await screenshot(tp, 'incall-failure-therapist').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});
