// A whole consultation in two browser contexts, therapist and patient:
// setup and login, patient, in-clinic visit, course, assessment,
// scheduling and the join link; the patient's device check and waiting
// room; admission and the safety prompt; video and audio both ways; a
// drop of the patient's signaling that heals without a reload or a
// renegotiation (media kept flowing); the end,
// the journal note and the billing line (319,83 kr, 125,69 / 194,14 for
// sp. 51). Then a second consultation the same day: the call works and the
// page says why it is not billable. Billing page and CSV export; the
// ended consultation's link page. Every main screen is scanned with axe and saved as
// a screenshot.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  controllableSignaling,
  cspViolations,
  expectMediaFlowing,
  launch,
  mediaStats,
  newContext,
  screenshot,
  waitFor,
  watchErrors,
} from './helpers/browser.js';
import {
  admit,
  awayFromDanishMidnight,
  confirmSafety,
  copenhagenDate,
  createPatient,
  endAndWriteJournal,
  expectAccessible,
  expectAccessibleAtEverySize,
  openCourse,
  patientToWaitingRoom,
  recordAssessment,
  recordVisit,
  relogin,
  schedule,
  setupClinic,
  therapistOpens,
} from './helpers/flows.js';
import { startServer } from './helpers/server.js';

let server;
let browser;

before(async () => {
  await awayFromDanishMidnight();
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const bodyData = (page, key) => page.evaluate((k) => document.body.dataset[k] || '', key);

test('a full consultation with a network drop, the journal note and billing; a second one the same day is not billable', { timeout: 300000 }, async () => {
  const therapistContext = await newContext(browser, { baseUrl: server.baseUrl });
  const patientContext = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await therapistContext.newPage();
  const pp = await patientContext.newPage();
  const errors = [...watchErrors(tp, 'therapist'), ...watchErrors(pp, 'patient')];

  try {
    // --- Therapist: first run, login, patient, visit, course, assessment. ---
    await setupClinic(tp, server.setupLink, { shots: true });
    await expectAccessible(tp, 'day view (empty)');
    await screenshot(tp, 'app-today-empty');
    await relogin(tp, { shots: true });

    await createPatient(tp, { name: 'Karen Jensen' });
    const patientUrl = tp.url();
    await recordVisit(tp);
    await openCourse(tp);
    await recordAssessment(tp);
    const first = await schedule(tp, { relayOnly: false });
    await expectAccessible(tp, 'patient page with a scheduled consultation');
    await screenshot(tp, 'app-patient-scheduled');
    // The link can be copied, and the invitation downloaded as .ics.
    await tp.getByRole('button', { name: 'Kopiér link' }).click();
    assert.equal(await tp.evaluate(() => navigator.clipboard.readText()), first.joinUrl);
    const [ics] = await Promise.all([tp.waitForEvent('download'), tp.getByRole('link', { name: 'Hent kalenderinvitation (.ics)' }).click()]);
    assert.equal(ics.suggestedFilename(), 'videokonsultation.ics');
    const icsText = Buffer.concat(await (await ics.createReadStream()).toArray()).toString('utf8');
    assert.match(icsText, /BEGIN:VCALENDAR/);
    assert.ok(icsText.replace(/\r\n[ \t]/g, '').includes(first.joinUrl), 'the invitation carries the join link');
    // The patient list.
    await tp.getByRole('link', { name: '← Patienter' }).click();
    await tp.locator('#patient-list').getByRole('link', { name: 'Karen Jensen' }).waitFor();
    await expectAccessible(tp, 'patient list');
    await screenshot(tp, 'app-patients');
    await tp.goBack();
    await tp.locator('#schedule-form').waitFor();

    // --- The call. ---
    await therapistOpens(tp, first.consultationId);
    const signaling = await controllableSignaling(pp);
    await patientToWaitingRoom(pp, first.joinUrl, { shots: true });

    await tp.locator('#waiting-status').getByText('Patienten venter i venteværelset').waitFor({ timeout: 30000 });
    await expectAccessible(tp, 'consultation page, patient waiting');
    await screenshot(tp, 'app-waiting-room');
    // The day view shows who is waiting.
    const dayPage = await therapistContext.newPage();
    await dayPage.goto('/app');
    await dayPage.locator(`tr[data-consultation="${first.consultationId}"][data-state="waiting"]`).waitFor({ timeout: 20000 });
    await dayPage.locator('#waiting-summary').getByText('1 venter').waitFor();
    // The tab says it too, so a therapist on another tab sees it.
    await waitFor(async () => (await dayPage.title()).startsWith('(1) venter'), { message: 'the tab title counts who waits' });
    await dayPage.getByLabel('Spil en lyd, når en patient kommer i venteværelset').waitFor();
    await expectAccessible(dayPage, 'day view with a waiting patient');
    await screenshot(dayPage, 'app-today-waiting');
    await dayPage.close();

    await admit(tp);
    await confirmSafety(tp);
    await Promise.all([expectMediaFlowing(tp, 'therapist'), expectMediaFlowing(pp, 'patient')]);
    await waitFor(async () => (await bodyData(tp, 'media')) === 'established' && (await bodyData(pp, 'media')) === 'established', {
      message: 'media_established on both pages (the server saw two-way media)',
    });
    // Live quality on the dashboard: a direct path and a round-trip time.
    await waitFor(async () => (await tp.locator('#q-path').getAttribute('data-path')) === 'direct', { message: 'a direct path' });
    await waitFor(async () => /\d+ ms/.test(await tp.locator('#q-rtt').innerText()), { message: 'a round-trip time' });
    await pp.locator('#remote-overlay').waitFor({ state: 'hidden' });
    // The patient sees how long the call has lasted.
    await waitFor(async () => /^\d\d:\d\d$/.test(await pp.locator('#call-timer-value').innerText()), { message: 'the call timer' });
    const csp = await tp.evaluate(async () => (await fetch('/join/x')).headers.get('content-security-policy'));
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.deepEqual(await cspViolations(pp), [], 'the patient page keeps the CSP');
    assert.deepEqual(await cspViolations(tp), [], 'the dashboard keeps the CSP');
    await expectAccessible(pp, 'patient call');
    await expectAccessible(tp, 'therapist call');
    await screenshot(pp, 'patient-4-call');
    await screenshot(tp, 'app-call');

    // --- Chat both ways: the panel closed shows a badge and reads the message out. ---
    await tp.locator('#chat-input').fill('Prøv at løfte armen til skulderhøjde.');
    await tp.locator('#chat-input').press('Enter');
    await pp.locator('#chat-badge').filter({ hasText: '1 ny' }).waitFor();
    await waitFor(async () => /Ny besked fra fysioterapeuten: Prøv at løfte armen/.test(await pp.locator('[aria-live]').allInnerTexts().then((t) => t.join(' '))), {
      message: 'the new message is read out on the patient page',
    });
    await pp.getByRole('button', { name: /Beskeder/ }).click();
    await pp.locator('#chat-log').getByText('Fysioterapeuten: Prøv at løfte armen til skulderhøjde.').waitFor();
    assert.equal(await pp.locator('#chat-badge').isHidden(), true, 'the badge goes when the panel opens');
    await pp.getByLabel('Skriv en besked').fill('Det gør lidt ondt.');
    await pp.getByRole('button', { name: 'Send' }).click();
    await tp.locator('#chat-log').getByText('Det gør lidt ondt.').waitFor();
    await pp.locator('#chat-log').getByText('Dig: Det gør lidt ondt.').waitFor();
    await expectAccessible(pp, 'patient call with chat');
    await screenshot(pp, 'patient-4-call-chat');
    await pp.getByRole('button', { name: /Beskeder/ }).click();

    // --- The patient's network drops for a few seconds. ---
    await pp.evaluate(() => {
      window.__sameDocument = true;
    });
    const before = await mediaStats(pp);
    await signaling.drop();
    await waitFor(async () => (await bodyData(pp, 'reconnecting')) === 'true', { message: 'the reconnecting state' });
    await pp.locator('#call-banner:not([hidden])').waitFor();
    await expectAccessible(pp, 'patient call, reconnecting');
    await screenshot(pp, 'patient-5-reconnecting');
    await new Promise((r) => setTimeout(r, 4000));
    await signaling.restore();
    await waitFor(async () => (await bodyData(pp, 'reconnecting')) === 'false', { timeout: 45000, message: 'the call to recover' });
    assert.equal(await pp.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
    await Promise.all([expectMediaFlowing(pp, 'patient after the drop'), expectMediaFlowing(tp, 'therapist after the drop')]);
    const afterDrop = await mediaStats(pp);
    assert.ok(afterDrop.framesDecoded > before.framesDecoded);
    // Only signaling dropped (the media path on loopback stayed up): the
    // resume leaves the working call alone, no renegotiation.
    assert.equal(afterDrop.ufrag, before.ufrag, 'no ICE restart while ICE was connected');

    // --- End, journal note, billing line. ---
    const result = await endAndWriteJournal(tp);
    assert.equal(await result.getAttribute('data-billable'), 'true');
    // 307,95 kr at the October 2022 level, regulated +1,06 % (2023-04-01)
    // and +2,77 % (2024-04-01); region 39,3 %, the patient the rest.
    assert.equal(await tp.locator('#bill-fee').innerText(), '319,83 kr');
    assert.equal(await tp.locator('#bill-region').innerText(), '125,69 kr');
    assert.equal(await tp.locator('#bill-patient').innerText(), '194,14 kr');
    assert.match(await tp.locator('#billing-line').innerText(), /0131, sp\. 51/);
    await expectAccessibleAtEverySize(tp, 'journal note and billing result');
    await screenshot(tp, 'app-journal-billing');
    await pp.getByRole('heading', { name: 'Samtalen er slut' }).waitFor({ timeout: 20000 });
    await expectAccessibleAtEverySize(pp, 'patient after the call');
    await screenshot(pp, 'patient-6-ended');

    // The used link now says the consultation is over.
    await pp.goto(first.joinUrl);
    await pp.getByRole('heading', { name: 'Samtalen er slut' }).waitFor();
    assert.equal(await bodyData(pp, 'linkStatus'), 'ended');

    // --- A second consultation the same day. ---
    await tp.goto(patientUrl);
    await tp.locator('#schedule-form').waitFor();
    const second = await schedule(tp, { relayOnly: false });
    await therapistOpens(tp, second.consultationId);
    await patientToWaitingRoom(pp, second.joinUrl);
    await admit(tp);
    await confirmSafety(tp);
    await Promise.all([expectMediaFlowing(tp, 'therapist (second)'), expectMediaFlowing(pp, 'patient (second)')]);
    await waitFor(async () => (await bodyData(tp, 'media')) === 'established', { message: 'media_established (second)' });
    const secondResult = await endAndWriteJournal(tp);
    assert.equal(await secondResult.getAttribute('data-billable'), 'false');
    assert.equal(await secondResult.getAttribute('data-reason'), 'already_billed_that_day');
    const reason = await tp.locator('#bill-reason').innerText();
    assert.match(reason, /^Årsag: .*1 konsultation\/hold pr\. kalenderdag/, `the page says why: ${reason}`);
    await screenshot(tp, 'app-journal-not-billable');

    // --- The patient's history: both consultations, their billing, the journal on request. ---
    await tp.goto(patientUrl);
    const firstItem = tp.locator(`#patient-consultations li[data-consultation="${first.consultationId}"]`);
    await firstItem.waitFor();
    assert.match(await firstItem.locator('.billing').innerText(), /^Afregnet: ydelse 0131/);
    const secondItem = tp.locator(`#patient-consultations li[data-consultation="${second.consultationId}"]`);
    assert.match(await secondItem.locator('.billing').innerText(), /kalenderdag/);
    assert.equal(await firstItem.getByRole('button', { name: 'Vis patientens link igen' }).count(), 0, 'a completed consultation has no link to show');
    await firstItem.getByRole('button', { name: 'Læs journalnotatet' }).click();
    await firstItem.getByText('Gangdistance øget fra 500 m til 1 km.').waitFor();
    await expectAccessibleAtEverySize(tp, 'patient history with a journal note');
    await screenshot(tp, 'app-patient-history-journal');

    // --- Billing page and CSV export. ---
    await tp.getByRole('navigation').getByRole('link', { name: 'Afregning' }).click();
    await tp.getByRole('heading', { name: 'Afregning', level: 1 }).waitFor();
    await tp.locator('#billing-table tbody tr').first().waitFor();
    assert.equal(await tp.locator('#billing-table tbody tr').count(), 1);
    assert.equal(await tp.locator('#total-fee').innerText(), '319,83 kr');
    assert.equal(await tp.locator('#total-region').innerText(), '125,69 kr');
    assert.equal(await tp.locator('#total-patient').innerText(), '194,14 kr');
    // Later regulation steps are not recorded: the fee says it is unconfirmed.
    assert.equal(await tp.locator('#billing-table tbody tr .pill.warn').count(), 1);
    // Today's period is not over, so it cannot be exported yet (an exported
    // period never changes); the page says when it can.
    assert.equal(await tp.getByRole('link', { name: 'Hent CSV' }).count(), 0);
    assert.match(await tp.locator('#export-when-closed').innerText(), /når perioden er slut/);
    const refused = await tp.evaluate(async (d) => {
      const res = await fetch(`/api/billing/export.csv?from=${d}&to=${d}`);
      return { status: res.status, body: await res.json() };
    }, copenhagenDate());
    assert.equal(refused.status, 409);
    assert.equal(refused.body.type, 'urn:konsult:problem:period_not_closed');
    await expectAccessibleAtEverySize(tp, 'billing page');
    await screenshot(tp, 'app-billing');

    // --- Administration. ---
    await tp.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
    await tp.getByRole('heading', { name: 'Administration', level: 1 }).waitFor();
    await tp.locator('#fee-form').waitFor();
    await expectAccessible(tp, 'administration');
    await screenshot(tp, 'app-admin');

    assert.deepEqual(errors.filter((e) => !/WebSocket|ERR_INTERNET_DISCONNECTED|net::/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(tp, 'failure-therapist').catch(() => {});
    await screenshot(pp, 'failure-patient').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-4000)}`;
    throw err;
  } finally {
    await therapistContext.close();
    await patientContext.close();
  }
});
