// "I dag" on a busy day with two therapists: mine by default, the whole
// clinic's on request with a therapist column, the waiting count for the
// chosen scope, and a patient's arrival pushed to the day view (server-sent
// events) within two seconds. axe at desktop and phone sizes; a screenshot
// of the busy day.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newContext, screenshot, waitFor, watchErrors } from './helpers/browser.js';
import {
  eligiblePatient,
  expectAccessible,
  expectAccessibleAtEverySize,
  patientToWaitingRoom,
  relogin,
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

/** An eligible patient with a consultation now, for `therapist` (a name in the booking form). */
async function bookNow(page, name, therapist) {
  await eligiblePatient(page, name);
  if (therapist) {
    const select = page.locator('#schedule-form').getByLabel('Behandler');
    await waitFor(async () => (await select.locator('option').count()) > 1, { message: 'colleagues in the booking form' });
    await select.selectOption({ label: therapist });
  }
  return schedule(page, { relayOnly: false });
}

const bodyData = (page, key) => page.evaluate((k) => document.body.dataset[k] || '', key);

test('the day per therapist, with arrivals pushed', { timeout: 240000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  const errors = watchErrors(tp, 'therapist');
  try {
    await setupClinic(tp, server.setupLink);
    // The setup link, used, says so before any form is filled in.
    const again = await pc.newPage();
    await again.goto(server.setupLink);
    await again.getByText('Linket er ikke gyldigt eller er allerede brugt.').waitFor();
    assert.equal(await again.locator('form input').count(), 0, 'no form to fill in');
    await expectAccessibleAtEverySize(again, 'used setup link');
    await again.close();
    // No demo here: no demo link on the day view.
    assert.equal(await tp.locator('#demo-notice').count(), 0);
    // A colleague.
    await tp.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
    const form = tp.locator('#new-therapist');
    await form.getByLabel('Navn').fill('Jonas Terapeut');
    await form.getByLabel('E-mail').fill('jonas@klinik.example');
    await form.getByLabel('Adgangskode').fill('endnu-en-lang-kode');
    await form.getByRole('button', { name: 'Opret behandler' }).click();
    await tp.locator('#therapist-list').getByText('Jonas Terapeut', { exact: true }).waitFor();
    // One consultation for the colleague, one for me.
    const theirs = await bookNow(tp, 'Ane Kollega', 'Jonas Terapeut');
    const mine = await bookNow(tp, 'Bo Egen');

    const day = await tc.newPage();
    // The arrival signals, observed: system notifications (granted here) and
    // the chime's oscillators; the page can be made to look hidden, as a
    // tab in the background is.
    await day.addInitScript(() => {
      window.__signals = { notifications: [], oscillators: 0, hidden: false };
      window.Notification = class {
        static permission = 'granted';
        static requestPermission() {
          return Promise.resolve('granted');
        }
        constructor(title, options) {
          window.__signals.notifications.push({ title, ...options });
        }
      };
      const RealAudioContext = window.AudioContext;
      window.AudioContext = class extends RealAudioContext {
        createOscillator() {
          window.__signals.oscillators += 1;
          return super.createOscillator();
        }
      };
      Object.defineProperty(document, 'visibilityState', {
        get: () => (window.__signals.hidden ? 'hidden' : 'visible'),
      });
    });
    const signals = () => day.evaluate(() => ({ ...window.__signals }));
    await day.goto('/app');
    await day.getByRole('heading', { name: /^Konsultationer/ }).waitFor();
    // Mine by default: my consultation only, and a word about the others.
    assert.ok(await day.getByLabel('Mine konsultationer').isChecked());
    await day.locator(`tr[data-consultation="${mine.consultationId}"]`).waitFor();
    assert.equal(await day.locator(`tr[data-consultation="${theirs.consultationId}"]`).count(), 0);
    await waitFor(async () => (await bodyData(day, 'activity')) === 'push', { message: 'the day view listens to pushed activity' });

    // The colleague's patient arrives: not my waiting count.
    const pa = await pc.newPage();
    await patientToWaitingRoom(pa, theirs.joinUrl, { therapist: 'Jonas Terapeut', prefix: 'today-a' });
    await day.getByLabel('Hele klinikkens').check();
    await day.locator(`tr[data-consultation="${theirs.consultationId}"][data-state="waiting"]`).waitFor({ timeout: 5000 });
    assert.equal(await day.locator(`tr[data-consultation="${theirs.consultationId}"] td.therapist`).innerText(), 'Jonas Terapeut');
    assert.equal(await day.locator(`tr[data-consultation="${mine.consultationId}"] td.therapist`).innerText(), 'Dig');
    await day.locator('#waiting-summary').getByText('1 venter i venteværelset').waitFor();
    await day.getByLabel('Mine konsultationer').check();
    await day.locator('#waiting-summary').getByText('Ingen venter').waitFor();
    assert.equal((await day.title()).startsWith('('), false, "a colleague's patient is not in my tab title");
    // The sound is off until the therapist turns it on: that arrival made
    // none, and a visible page shows no system notification.
    assert.equal(await day.locator('#arrival-sound').isChecked(), false, 'the chime is off by default');
    assert.deepEqual(await signals(), { notifications: [], oscillators: 0, hidden: false });
    await day.locator('#arrival-sound').check();
    await waitFor(async () => (await signals()).oscillators === 2, { message: 'turning the sound on plays the chime once' });
    // The therapist works in another tab now.
    await day.evaluate(() => {
      window.__signals.hidden = true;
    });

    // My patient arrives: pushed to my day (the server pushes within 2 s,
    // see tests/api_activity.rs; here the page under a loaded CI machine
    // gets a margin, and the figure is printed).
    const pb = await pc.newPage();
    await patientToWaitingRoom(pb, mine.joinUrl, { prefix: 'today-b' });
    const arrived = Date.now();
    await day.locator(`tr[data-consultation="${mine.consultationId}"][data-state="waiting"]`).waitFor({ timeout: 5000 });
    console.log(`# my waiting patient shown ${Date.now() - arrived} ms after the waiting room opened`);
    await day.locator('#waiting-summary').getByText('1 venter i venteværelset (dine patienter)').waitFor();
    await waitFor(async () => (await day.title()).startsWith('(1) venter'), { message: 'the tab title counts my waiting patient' });
    assert.equal(await bodyData(day, 'activity'), 'push');
    // My patient's arrival chimed and, the tab being hidden, notified.
    const heard = await signals();
    assert.equal(heard.oscillators, 4, 'the arrival chimed');
    assert.equal(heard.notifications.length, 1, JSON.stringify(heard));
    assert.equal(heard.notifications[0].title, 'Konsult');
    assert.match(heard.notifications[0].body, /venter/);
    await day.evaluate(() => {
      window.__signals.hidden = false;
    });

    // The busy day, the whole clinic's, at every size.
    await day.getByLabel('Hele klinikkens').check();
    await day.locator('#waiting-summary').getByText('2 venter i venteværelset').waitFor();
    for (const [width, height] of [
      [1440, 900],
      [390, 664],
      [320, 568],
    ]) {
      await day.setViewportSize({ width, height });
      await expectAccessible(day, `day view, whole clinic, ${width}×${height}`);
    }
    await day.setViewportSize({ width: 1440, height: 900 });
    await screenshot(day, 'app-today-busy');
    assert.deepEqual(errors.filter((e) => !/status of 4\d\d/.test(e)), [], 'no script errors');
  } catch (err) {
    err.message += `\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});

test('a demo server shows the demo patient\'s link on the dashboard', { timeout: 120000 }, async () => {
  const demo = await startServer({ demo: true });
  const tc = await newContext(browser, { baseUrl: demo.baseUrl });
  const pc = await newContext(browser, { baseUrl: demo.baseUrl });
  try {
    const tp = await tc.newPage();
    await tp.goto('/app');
    await tp.getByLabel('E-mail').fill('terapeut@demo.konsult');
    await tp.getByLabel('Adgangskode').fill(demo.demo.password);
    await tp.getByRole('button', { name: 'Log ind' }).click();
    await tp.getByRole('heading', { name: /^Konsultationer/ }).waitFor();
    const link = tp.getByLabel('Patientens link');
    assert.equal(await link.inputValue(), demo.demo.joinUrl, 'the link the console printed');
    await expectAccessibleAtEverySize(tp, 'demo day view');
    await screenshot(tp, 'app-today-demo');
    // It works: the patient's first screen.
    const pp = await pc.newPage();
    await pp.goto(await link.inputValue());
    await pp.getByRole('heading', { name: 'Din videokonsultation' }).waitFor();
  } finally {
    await tc.close();
    await pc.close();
    await demo.stop();
  }
});

test('an admission refused by the re-check tells the therapist why, and the patient what to do', { timeout: 180000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  try {
    await relogin(tp, { fresh: true });
    const booked = await bookNow(tp, 'Cecilie Tilbagekaldt');
    const patientUrl = tp.url();
    const pp = await pc.newPage();
    await patientToWaitingRoom(pp, booked.joinUrl, { prefix: 'revoked' });
    // While the patient waits, a colleague revokes the assessment.
    const other = await tc.newPage();
    await other.goto(patientUrl);
    await other.getByRole('button', { name: 'Tilbagekald vurdering' }).click();
    await other.locator('[data-confirm="revoke"]').click();
    await other.getByText('Ingen gældende vurdering.').waitFor();
    await other.close();
    // Admitting is refused at once, with the reason.
    await therapistOpens(tp, booked.consultationId);
    await tp.locator('#waiting-status').getByText('Patienten venter i venteværelset').waitFor({ timeout: 30000 });
    await tp.getByRole('button', { name: 'Luk patienten ind' }).click();
    const refusal = tp.locator('[role="alert"]').filter({ hasText: 'Patienten kan ikke lukkes ind:' });
    await refusal.waitFor({ timeout: 5000 });
    assert.match(await refusal.innerText(), /vurdering af videokonsultation er tilbagekaldt/);
    await expectAccessibleAtEverySize(tp, 'admission refused');
    await screenshot(tp, 'app-admission-refused');
    // The patient is told in plain words.
    await pp.getByRole('heading', { name: 'Du blev ikke lukket ind' }).waitFor({ timeout: 10000 });
    assert.match(await pp.locator('#message-text').innerText(), /kan ikke holdes som video lige nu/);
    await screenshot(pp, 'patient-admission-refused');
  } catch (err) {
    err.message += `\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});

test("the patient's page lists the consultations and shows the link again, unchanged", { timeout: 120000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  try {
    await relogin(tp, { fresh: true });
    const booked = await bookNow(tp, 'Dorte Historik');
    await tp.reload();
    const history = tp.locator('#patient-consultations');
    const item = history.locator(`li[data-consultation="${booked.consultationId}"]`);
    await item.waitFor();
    assert.match(await item.innerText(), /Planlagt/);
    assert.match(await item.innerText(), /Med Mette Fysio, 30 min\./);
    assert.match(await item.innerText(), /Afregning: ikke afgjort endnu\./);
    await item.getByRole('button', { name: 'Vis patientens link igen' }).click();
    const link = item.locator('#join-link');
    await link.waitFor();
    assert.equal(await link.inputValue(), booked.joinUrl, 'the same link as when it was booked');
    assert.match(await item.innerText(), /det virker stadig/);
    await expectAccessibleAtEverySize(tp, "patient page with the link shown again");
    await screenshot(tp, 'app-patient-history');
    // It still works for the patient.
    const pp = await pc.newPage();
    await pp.goto(booked.joinUrl);
    await pp.getByRole('heading', { name: 'Din videokonsultation' }).waitFor();
  } finally {
    await tc.close();
    await pc.close();
  }
});

test('a secretary books for a therapist and sees the day, but no clinical data', { timeout: 120000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const sc = await newContext(browser, { baseUrl: server.baseUrl });
  try {
    const tp = await tc.newPage();
    await relogin(tp, { fresh: true });
    await eligiblePatient(tp, 'Erik Sekretærbooket');
    const patientUrl = tp.url();
    await tp.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
    const form = tp.locator('#new-therapist');
    await form.getByLabel('Navn').fill('Sara Sekretær');
    await form.getByLabel('E-mail').fill('sara@klinik.example');
    await form.getByLabel('Adgangskode').fill('sekretaer-lang-kode');
    await form.getByLabel('Rolle').selectOption('secretary');
    await form.getByRole('button', { name: 'Opret behandler' }).click();
    await tp.locator('#therapist-list').getByText('Sara Sekretær', { exact: true }).waitFor();

    const sp = await sc.newPage();
    await sp.goto('/app');
    await sp.getByLabel('E-mail').fill('sara@klinik.example');
    await sp.getByLabel('Adgangskode').fill('sekretaer-lang-kode');
    await sp.getByRole('button', { name: 'Log ind' }).click();
    await sp.getByRole('heading', { name: /^Konsultationer/ }).waitFor();
    // The whole clinic's day, no choice of scope.
    assert.equal(await sp.locator('#today-scope').count(), 0);
    await sp.locator('#today-list th', { hasText: 'Behandler' }).waitFor();
    await expectAccessibleAtEverySize(sp, 'secretary day view');
    // The patient: who, booking and consultations; no visits, courses or logs.
    await sp.goto(patientUrl);
    await sp.locator('#schedule-form').waitFor();
    for (const clinicalPart of ['#visits', '#courses', '#history']) {
      assert.equal(await sp.locator(clinicalPart).count(), 0, `${clinicalPart} is not shown to a secretary`);
    }
    const therapist = sp.locator('#schedule-form').getByLabel('Behandler');
    await waitFor(async () => (await therapist.locator('option').count()) > 1, { message: 'clinicians to choose from' });
    assert.equal(await therapist.locator('option', { hasText: 'Sara Sekretær' }).count(), 0, 'a secretary runs no consultation');
    await therapist.selectOption({ label: 'Mette Fysio' });
    const booked = await schedule(sp, { relayOnly: false });
    assert.match(booked.joinUrl, /\/join\//);
    await expectAccessibleAtEverySize(sp, 'secretary patient page');
    await screenshot(sp, 'app-secretary-booked');
  } finally {
    await tc.close();
    await sc.close();
  }
});
