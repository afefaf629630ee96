// The rehearsal page, /proeve (issue 11, "Say who to call"): anyone can
// try camera, microphone and connection before the day, without a clinic,
// a consultation or a join link. The checks succeed with Chromium's fake
// devices; the page asks the server for nothing but /healthz and a
// WebSocket it closes before any hello. A denied camera shows the join
// check's plain-words help. The main button is in reach on 390 × 664 and
// 320 × 568 without scrolling; axe finds nothing serious at those sizes
// and 1440 × 900. The "too early" page of a join link leads to it.
// Screenshots are saved as rehearsal-*.png.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { cspViolations, launch, newContext, screenshot, watchErrors } from './helpers/browser.js';
import {
  copenhagenDate,
  createPatient,
  expectAccessible,
  openCourse,
  recordAssessment,
  recordVisit,
  schedule,
  setupClinic,
} from './helpers/flows.js';
import { startServer } from './helpers/server.js';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const PORTRAIT = { width: 390, height: 664 };
const SMALL = { width: 320, height: 568 };
const DESKTOP = { width: 1440, height: 900 };

/**
 * Everything the page asks of the server, and every frame it sends on a
 * WebSocket (there must be none: no hello).
 */
function watchTraffic(page) {
  const traffic = { requests: [], sockets: [], framesSent: [] };
  page.on('request', (req) => traffic.requests.push(new URL(req.url()).pathname));
  page.on('websocket', (ws) => {
    traffic.sockets.push(new URL(ws.url()).pathname);
    ws.on('framesent', (f) => traffic.framesSent.push(String(f.payload)));
  });
  return traffic;
}

/** Waits for the four checks and the summary to say everything works. */
async function expectAllWorks(page) {
  await page.locator('#camera-status.ok').waitFor({ timeout: 20000 });
  await page.locator('#mic-status.ok').waitFor({ timeout: 20000 });
  await page.locator('#server-status.ok').waitFor({ timeout: 20000 });
  await page.locator('#webrtc-status.ok').waitFor({ timeout: 20000 });
  await page.locator('#summary[data-state="ok"]').filter({ hasText: 'Alt virker. Du er klar til din videokonsultation.' }).waitFor();
}

/** Asserts `selector` is wholly inside the viewport with the page at its top, and at least 48 px high. */
async function expectInViewport(page, selector, what) {
  const m = await page.evaluate((sel) => {
    window.scrollTo(0, 0);
    const r = document.querySelector(sel).getBoundingClientRect();
    const vw = document.documentElement.clientWidth;
    const vh = window.innerHeight;
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return {
      top: Math.round(r.top),
      bottom: Math.round(r.bottom),
      height: Math.round(r.height),
      vw,
      vh,
      pageWidth: document.documentElement.scrollWidth,
      inside: r.top >= 0 && r.left >= 0 && r.bottom <= vh + 0.5 && r.right <= vw + 0.5,
      onTop: Boolean(hit && (hit === document.querySelector(sel) || document.querySelector(sel).contains(hit))),
    };
  }, selector);
  console.log(`# ${what}: ${selector} y ${m.top}–${m.bottom} in ${m.vw}×${m.vh}`);
  assert.ok(m.inside, `${what}: ${selector} is inside the viewport without scrolling: ${JSON.stringify(m)}`);
  assert.ok(m.onTop, `${what}: nothing covers ${selector}: ${JSON.stringify(m)}`);
  assert.ok(m.height >= 48, `${what}: ${selector} is at least 48 px high: ${JSON.stringify(m)}`);
  assert.ok(m.pageWidth <= m.vw, `${what}: nothing is wider than the screen: ${JSON.stringify(m)}`);
}

test('the rehearsal page checks camera, microphone and connection without a link', { timeout: 120000 }, async () => {
  const context = await newContext(browser, { baseUrl: server.baseUrl });
  const page = await context.newPage();
  const errors = watchErrors(page, 'rehearsal');
  const traffic = watchTraffic(page);
  const logBefore = server.logs().length;
  try {
    // A token in the address changes nothing: the page does not read it.
    await page.goto('/proeve?token=dette-er-ikke-et-link');
    await page.getByRole('heading', { name: 'Prøv dit kamera og din mikrofon' }).waitFor();
    await page.setViewportSize(DESKTOP);
    await expectAccessible(page, 'rehearsal intro, 1440 × 900');
    await screenshot(page, 'rehearsal-1-intro-desktop');

    await page.getByRole('button', { name: 'Start prøven' }).click();
    await page.getByRole('heading', { name: 'Prøve af kamera, lyd og forbindelse' }).waitFor();
    await expectAllWorks(page);
    assert.equal(await page.evaluate(() => document.querySelector('#preview').srcObject?.getVideoTracks()[0]?.readyState), 'live');
    await expectAccessible(page, 'rehearsal check, 1440 × 900');
    await screenshot(page, 'rehearsal-2-check-desktop');

    // English through the same switch as the join page.
    await page.getByRole('button', { name: 'Show the page in English' }).click();
    await page.getByRole('heading', { name: 'Camera, sound and connection test' }).waitFor();
    await page.locator('#summary').filter({ hasText: 'Everything works. You are ready for your video consultation.' }).waitFor();
    await page.locator('#server-status').filter({ hasText: 'The connection to Konsult works.' }).waitFor();
    await screenshot(page, 'rehearsal-2-check-en');
    await page.getByRole('button', { name: 'Vis siden på dansk' }).click();
    await page.locator('#summary').filter({ hasText: 'Alt virker.' }).waitFor();

    // Ending turns camera and microphone off and says the patient is ready.
    await page.getByRole('button', { name: 'Afslut prøven' }).click();
    await page.getByRole('heading', { name: 'Du er klar' }).waitFor();
    await page.getByText('Kameraet og mikrofonen er slukket nu.').waitFor();
    assert.equal(await page.evaluate(() => document.querySelector('#preview').srcObject), null);
    await expectAccessible(page, 'rehearsal done, 1440 × 900');
    await screenshot(page, 'rehearsal-3-done-desktop');

    // Only /healthz and one socket, closed without a frame: no join link,
    // no TURN credentials, no API.
    const asked = traffic.requests.filter((p) => !p.startsWith('/static/') && p !== '/proeve');
    assert.deepEqual(asked, ['/healthz'], `requests: ${JSON.stringify(traffic.requests)}`);
    assert.deepEqual(traffic.sockets, ['/ws']);
    assert.deepEqual(traffic.framesSent, [], 'no hello (or any frame) is sent');
    assert.deepEqual(await cspViolations(page), []);
    assert.deepEqual(errors, []);
    // The server logged nothing about the visit.
    const logged = server.logs().slice(logBefore);
    assert.doesNotMatch(logged, /hello|websocket|signal|join|link/i, `server log during the visit:\n${logged}`);
  } finally {
    await context.close();
  }
});

test('a denied camera shows what to do, in plain words', { timeout: 60000 }, async () => {
  const context = await newContext(browser, { baseUrl: server.baseUrl });
  // The patient pressed "Block" when the browser asked.
  await context.addInitScript(() => {
    navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
  });
  const page = await context.newPage();
  try {
    await page.goto('/proeve');
    await page.getByRole('button', { name: 'Start prøven' }).click();
    await page.locator('#camera-status.bad').filter({ hasText: 'Siden har ikke lov til at bruge kamera og mikrofon.' }).waitFor();
    await page.locator('#camera-help').getByText('Tryk på hængelåsen eller kamera-ikonet').waitFor();
    await page.locator('#mic-status.bad').waitFor();
    assert.ok(await page.locator('#preview').isHidden(), 'no black picture where there is no camera');
    await page.locator('#server-status.ok').waitFor({ timeout: 20000 });
    const summary = page.locator('#summary[data-state="problems"]');
    await summary.waitFor({ timeout: 20000 });
    assert.match(await summary.innerText(), /Det virker ikke endnu: kameraet og mikrofonen/);
    assert.match(await summary.innerText(), /Ring til klinikken/);
    assert.equal(await page.locator('#summary').getAttribute('role'), 'status');
    await expectAccessible(page, 'rehearsal, camera denied');
    await screenshot(page, 'rehearsal-2-denied');

    // Trying again keeps the focus on the button and gives the same help.
    await page.getByRole('button', { name: 'Prøv igen' }).click();
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'retry');
    await page.locator('#camera-help').getByText('Tryk på hængelåsen').waitFor();

    await page.getByRole('button', { name: 'Afslut prøven' }).click();
    await page.getByRole('heading', { name: 'Prøven er slut' }).waitFor();
    await page.getByText('Ikke alt virkede.').waitFor();
  } finally {
    await context.close();
  }
});

for (const [size, name] of [
  [PORTRAIT, '390x664'],
  [SMALL, '320x568'],
]) {
  test(`on a ${name} phone the main button is in reach and axe finds nothing serious`, { timeout: 60000 }, async () => {
    const context = await browser.newContext({
      baseURL: server.baseUrl,
      locale: 'da-DK',
      timezoneId: 'Europe/Copenhagen',
      viewport: size,
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      permissions: ['camera', 'microphone'],
    });
    const page = await context.newPage();
    try {
      await page.goto('/proeve');
      await page.getByRole('heading', { name: 'Prøv dit kamera og din mikrofon' }).waitFor();
      await expectInViewport(page, '#start', `intro ${name}`);
      await expectAccessible(page, `rehearsal intro, ${name}`);
      await screenshot(page, `rehearsal-1-intro-${name}`);

      await page.locator('#start').tap();
      await expectAllWorks(page);
      await expectInViewport(page, '#finish', `check ${name}`);
      await expectAccessible(page, `rehearsal check, ${name}`);
      await screenshot(page, `rehearsal-2-check-${name}`);

      await page.locator('#finish').tap();
      await page.getByRole('heading', { name: 'Du er klar' }).waitFor();
      await expectInViewport(page, '#again', `done ${name}`);
      await expectAccessible(page, `rehearsal done, ${name}`);
      await screenshot(page, `rehearsal-3-done-${name}`);
    } finally {
      await context.close();
    }
  });
}

test('the early page of a join link leads to the rehearsal page', { timeout: 120000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  const pp = await pc.newPage();
  try {
    await setupClinic(tp, server.setupLink);
    await createPatient(tp, { name: 'Inger Prøve' });
    await recordVisit(tp);
    await openCourse(tp);
    await recordAssessment(tp);
    const tomorrow = copenhagenDate(new Date(Date.now() + 86400000));
    await tp.locator('#schedule-form').getByLabel('Dato').fill(tomorrow);
    await tp.locator('#schedule-form').getByLabel('Klokkeslæt').fill('10:00');
    const { joinUrl } = await schedule(tp);
    // The invitation names the rehearsal page.
    const invitation = await tp.locator('#schedule-invitation').textContent();
    assert.match(invitation, /Du kan prøve dit kamera og din mikrofon i forvejen:\s*https?:\/\/[^\s]+\/proeve/);

    await pp.goto(joinUrl);
    await pp.getByRole('heading', { name: 'Det er for tidligt' }).waitFor();
    const link = pp.getByRole('link', { name: 'Prøv dit kamera og din mikrofon nu' });
    assert.equal(await link.getAttribute('href'), '/proeve');
    await expectAccessible(pp, 'too early, with the rehearsal link');
    await screenshot(pp, 'rehearsal-0-from-early-page');
    await link.click();
    await pp.getByRole('heading', { name: 'Prøv dit kamera og din mikrofon' }).waitFor();
    assert.equal(new URL(pp.url()).pathname, '/proeve');
  } finally {
    await tc.close();
    await pc.close();
  }
});
