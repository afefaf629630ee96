// The patient's page on a phone (issue 11, "Controls always in reach"):
// on 390 × 664 (a phone with its browser bars) each step's main button is
// inside the viewport without scrolling (welcome, device check, waiting
// room, the page after leaving); in the call the four controls (microphone,
// camera, Beskeder, Forlad samtalen) are inside the viewport at 390 × 664,
// 320 × 568 and in landscape 664 × 390, with the chat panel open too, and
// the leave question's buttons as well. Nothing is wider than the screen
// at 320 px. The therapist uses a 1440 × 900 desktop. Every screen is
// scanned with axe; screenshots are saved as phone-*.png.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import path from 'node:path';
import { SCREENSHOTS, launch, newContext, waitFor, watchErrors } from './helpers/browser.js';
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
const LANDSCAPE = { width: 664, height: 390 };
const DESKTOP = { width: 1440, height: 900 };
const CALL_CONTROLS = ['#btn-mic', '#btn-cam', '#btn-chat', '#btn-leave'];

/** A phone: touch, a mobile viewport, twice the pixels; camera and microphone allowed. */
async function phoneContext() {
  return browser.newContext({
    baseURL: server.baseUrl,
    locale: 'da-DK',
    timezoneId: 'Europe/Copenhagen',
    viewport: PORTRAIT,
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    permissions: ['camera', 'microphone'],
  });
}

/**
 * Where each element is, with the page scrolled to the top (the patient
 * has not scrolled): its box, the viewport, whether it is wholly inside
 * the viewport and whether its middle is the topmost thing there (not
 * covered by another layer). Also the page's width against the viewport.
 */
async function measure(page, selectors) {
  return page.evaluate((sels) => {
    window.scrollTo(0, 0);
    const vw = document.documentElement.clientWidth;
    const vh = window.innerHeight;
    const out = { viewport: `${vw}x${vh}`, pageWidth: document.documentElement.scrollWidth, pageHeight: document.documentElement.scrollHeight, items: {} };
    for (const sel of sels) {
      const el = document.querySelector(sel);
      if (!el) {
        out.items[sel] = { missing: true };
        continue;
      }
      const r = el.getBoundingClientRect();
      const inside = r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= vh + 0.5 && r.right <= vw + 0.5;
      const hit = inside ? document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2) : null;
      out.items[sel] = {
        top: Math.round(r.top),
        bottom: Math.round(r.bottom),
        left: Math.round(r.left),
        right: Math.round(r.right),
        width: Math.round(r.width),
        height: Math.round(r.height),
        inside,
        onTop: Boolean(hit && (hit === el || el.contains(hit))),
      };
    }
    return out;
  }, selectors);
}

/** Asserts every selector is wholly inside the viewport, uncovered, and at least 48 × 48 px. */
async function expectInReach(page, selectors, what) {
  const m = await measure(page, selectors);
  console.log(`# ${what}: viewport ${m.viewport}, page ${m.pageWidth}×${m.pageHeight}; ${Object.entries(m.items)
    .map(([s, r]) => (r.missing ? `${s} missing` : `${s} y ${r.top}–${r.bottom} x ${r.left}–${r.right}`))
    .join('; ')}`);
  for (const [sel, r] of Object.entries(m.items)) {
    assert.ok(!r.missing, `${what}: ${sel} is on the page`);
    assert.ok(r.inside, `${what}: ${sel} is inside the ${m.viewport} viewport without scrolling: ${JSON.stringify(r)}`);
    assert.ok(r.onTop, `${what}: nothing covers ${sel}: ${JSON.stringify(r)}`);
    assert.ok(r.width >= 48 && r.height >= 48, `${what}: ${sel} is at least 48 × 48 px: ${JSON.stringify(r)}`);
  }
  const vw = Number(m.viewport.split('x')[0]);
  assert.ok(m.pageWidth <= vw, `${what}: nothing is wider than the screen (page ${m.pageWidth} px, viewport ${vw} px)`);
  return m;
}

/** Every h1 and button of the shown screen fits its box (no text cut or spilling out). */
async function expectNothingCut(page, what) {
  const cut = await page.evaluate(() =>
    [...document.querySelectorAll('h1, button, .brand')]
      .filter((el) => el.getClientRects().length && !el.closest('.visually-hidden') && !el.classList.contains('visually-hidden'))
      .filter((el) => el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''} "${el.textContent.trim().slice(0, 40)}"`),
  );
  assert.deepEqual(cut, [], `${what}: text cut or wider than the screen`);
}

/** Saves what the phone shows (the viewport, not the whole page) to screenshots/<name>.png. */
async function screenshot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

/** Checks the screen at each of the given sizes; ends at the first. */
async function expectInReachAt(page, sizes, selectors, what) {
  for (const size of sizes) {
    await page.setViewportSize(size);
    await expectInReach(page, selectors, `${what} at ${size.width}×${size.height}`);
    await expectNothingCut(page, `${what} at ${size.width}×${size.height}`);
  }
  await page.setViewportSize(sizes[0]);
}

test('on a phone every step’s main button and every call control is in reach, portrait and landscape', { timeout: 150000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await phoneContext();
  const tp = await tc.newPage();
  await tp.setViewportSize(DESKTOP);
  const pp = await pc.newPage();
  const errors = [...watchErrors(tp, 'therapist'), ...watchErrors(pp, 'patient')];
  try {
    await setupClinic(tp, server.setupLink);
    await eligiblePatient(tp, 'Birthe Kristiansen');
    const { joinUrl, consultationId } = await schedule(tp, { relayOnly: false });
    await therapistOpens(tp, consultationId);

    // --- Welcome: "Start" without scrolling. ---
    await pp.goto(joinUrl);
    await pp.getByRole('heading', { name: 'Din videokonsultation' }).waitFor();
    await pp.locator('#welcome-with').filter({ hasText: 'Mette Fysio' }).waitFor();
    await expectInReachAt(pp, [PORTRAIT, SMALL], ['#start'], 'welcome');
    await expectAccessible(pp, 'phone: welcome');
    await screenshot(pp, 'phone-1-welcome');
    await pp.getByRole('button', { name: 'Start' }).click();

    // --- Device check: the continue button without scrolling, before and after the checks. ---
    await pp.getByRole('heading', { name: 'Tjek af kamera og lyd' }).waitFor();
    await expectInReachAt(pp, [PORTRAIT, SMALL], ['#go-wait'], 'device check (starting)');
    await pp.locator('#camera-status.ok').waitFor({ timeout: 20000 });
    await pp.locator('#mic-status.ok').waitFor({ timeout: 20000 });
    await pp.getByRole('button', { name: 'Afspil lyd' }).click();
    await pp.getByRole('button', { name: 'Ja' }).click();
    await pp.locator('#speaker-status.ok').waitFor();
    await pp.locator('#net-status:not([data-state="wait"])').waitFor({ timeout: 20000 });
    await expectInReachAt(pp, [PORTRAIT, SMALL], ['#go-wait'], 'device check (done)');
    await expectAccessible(pp, 'phone: device check');
    await screenshot(pp, 'phone-2-check');
    await pp.getByRole('button', { name: 'Gå til venteværelset' }).click();

    // --- Waiting room: its button without scrolling. ---
    await pp.getByRole('heading', { name: 'Du er i venteværelset' }).waitFor();
    await pp.locator('#wait-status').filter({ hasText: 'Venter på fysioterapeuten' }).waitFor({ timeout: 20000 });
    await expectInReachAt(pp, [PORTRAIT, SMALL], ['#wait-leave'], 'waiting room');
    await expectAccessible(pp, 'phone: waiting room');
    await screenshot(pp, 'phone-3-waiting');

    // --- The therapist (desktop) admits; the call on the phone. ---
    await tp.locator('#waiting-status').getByText('Patienten venter i venteværelset').waitFor({ timeout: 30000 });
    await admit(tp);
    await confirmSafety(tp);
    await pp.locator('#s-call:not([hidden])').waitFor({ timeout: 30000 });
    await pp.locator('#remote-overlay').waitFor({ state: 'hidden', timeout: 45000 });
    await waitFor(() => pp.evaluate(() => document.querySelector('#remote').videoWidth > 0), { message: 'the therapist’s picture on the phone' });

    await expectInReachAt(pp, [PORTRAIT, SMALL, LANDSCAPE], CALL_CONTROLS, 'call');
    await expectAccessible(pp, 'phone: call');
    await screenshot(pp, 'phone-4-call');
    await pp.setViewportSize(LANDSCAPE);
    await expectAccessible(pp, 'phone: call, landscape');
    await screenshot(pp, 'phone-4-call-landscape');
    await pp.setViewportSize(SMALL);
    await screenshot(pp, 'phone-4-call-320');
    // In English (longer labels) on the smallest screen.
    await pp.getByRole('button', { name: 'Show the page in English' }).click();
    await pp.locator('#btn-leave').filter({ hasText: 'Leave' }).waitFor();
    await expectInReachAt(pp, [SMALL, LANDSCAPE], CALL_CONTROLS, 'call in English');
    await screenshot(pp, 'phone-4-call-en-320');
    await pp.getByRole('button', { name: 'Vis siden på dansk' }).click();
    await pp.locator('#btn-leave').filter({ hasText: 'Forlad' }).waitFor();
    // The same page on a computer screen.
    await pp.setViewportSize(DESKTOP);
    await expectInReach(pp, CALL_CONTROLS, 'call at 1440×900');
    await screenshot(pp, 'phone-4-call-desktop');
    await pp.setViewportSize(PORTRAIT);

    // The picture of the therapist takes most of the screen, and the
    // controls lie over it (the stage reaches the bottom of the viewport).
    const stage = await pp.evaluate(() => {
      const r = document.querySelector('#s-call .stage').getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, vh: window.innerHeight };
    });
    assert.ok(stage.bottom - stage.top > stage.vh * 0.7, `the video fills most of the screen: ${JSON.stringify(stage)}`);

    // --- Chat: a message from the therapist, the panel opened on the phone. ---
    await tp.locator('#chat-input').fill('Prøv at løfte armen til skulderhøjde.');
    await tp.locator('#chat-input').press('Enter');
    await pp.locator('#chat-badge').filter({ hasText: '1 ny' }).waitFor();
    await expectInReachAt(pp, [PORTRAIT, SMALL, LANDSCAPE], CALL_CONTROLS, 'call with an unread message');
    await pp.getByRole('button', { name: /Beskeder/ }).click();
    await pp.locator('#chat-log').getByText('Fysioterapeuten: Prøv at løfte armen til skulderhøjde.').waitFor();
    const chatParts = ['#chat-input', '#chat-form button[type="submit"]', ...CALL_CONTROLS];
    await expectInReachAt(pp, [PORTRAIT, SMALL, LANDSCAPE], chatParts, 'call with the chat open');
    await pp.getByLabel('Skriv en besked').fill('Det gør lidt ondt.');
    await pp.getByRole('button', { name: 'Send' }).click();
    await tp.locator('#chat-log').getByText('Det gør lidt ondt.').waitFor();
    await pp.locator('#chat-log').getByText('Dig: Det gør lidt ondt.').waitFor();
    await expectAccessible(pp, 'phone: call with chat');
    await screenshot(pp, 'phone-5-chat');
    await pp.setViewportSize(LANDSCAPE);
    await expectAccessible(pp, 'phone: call with chat, landscape');
    await screenshot(pp, 'phone-5-chat-landscape');
    await pp.setViewportSize(PORTRAIT);
    await pp.getByRole('button', { name: /Beskeder/ }).click();
    assert.equal(await pp.locator('#chat').isHidden(), true, 'the Beskeder button closes the panel again');

    // --- Leaving: the question takes the open chat's place; its buttons in reach, then the page after it. ---
    await pp.getByRole('button', { name: /Beskeder/ }).click();
    await pp.locator('#chat:not([hidden])').waitFor();
    await pp.getByRole('button', { name: 'Forlad samtalen' }).click();
    await pp.locator('#leave-confirm:not([hidden])').waitFor();
    assert.equal(await pp.locator('#chat').isHidden(), true, 'the chat panel closes for the leave question');
    assert.equal(await pp.locator('#btn-chat').getAttribute('aria-expanded'), 'false');
    await expectInReachAt(pp, [PORTRAIT, SMALL, LANDSCAPE], ['#leave-yes', '#leave-no'], 'the leave question');
    await expectAccessible(pp, 'phone: the leave question');
    await screenshot(pp, 'phone-6-leave');
    await pp.getByRole('button', { name: 'Ja, forlad' }).click();
    await pp.getByRole('heading', { name: 'Du har forladt samtalen' }).waitFor();
    await expectInReachAt(pp, [PORTRAIT, SMALL], ['#rejoin'], 'after leaving');
    await expectAccessible(pp, 'phone: after leaving');
    await screenshot(pp, 'phone-7-left');

    assert.deepEqual(errors.filter((e) => !/WebSocket|net::/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(pp, 'phone-failure').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});
