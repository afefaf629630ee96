// The patient's pages for links that do not (yet) work, scheduling an
// ineligible patient, and English on a patient page: unknown, too early
// (with the time the link opens), revoked (a new link was made), expired
// (the consultation was cancelled). Each page is scanned with axe.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newContext, screenshot, watchErrors } from './helpers/browser.js';
import {
  copenhagenDate,
  createPatient,
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
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('link pages, refused scheduling with every reason, and English', { timeout: 180000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  const pp = await pc.newPage();
  const errors = [...watchErrors(tp, 'therapist'), ...watchErrors(pp, 'patient')];
  try {
    await setupClinic(tp, server.setupLink);

    // Unknown link, in Danish and then in English.
    await pp.goto('/join/dette-er-ikke-et-rigtigt-link');
    await pp.getByRole('heading', { name: 'Linket virker ikke' }).waitFor();
    await expectAccessible(pp, 'unknown link');
    await screenshot(pp, 'patient-link-unknown');
    await pp.getByRole('button', { name: 'Show the page in English' }).click();
    await pp.getByRole('heading', { name: 'This link does not work' }).waitFor();
    assert.equal(await pp.evaluate(() => document.documentElement.lang), 'en');
    await screenshot(pp, 'patient-link-unknown-en');
    await pp.getByRole('button', { name: 'Vis siden på dansk' }).click();
    await pp.getByRole('heading', { name: 'Linket virker ikke' }).waitFor();

    // An ineligible patient: every failed criterion is named.
    await createPatient(tp, { name: 'Ole Hansen' });
    const patientUrl = tp.url();
    await openCourse(tp);
    await tp.locator('#schedule-form').getByRole('button', { name: 'Planlæg' }).click();
    const refused = tp.locator('#schedule-result [role="alert"]');
    await refused.waitFor();
    assert.match(await refused.innerText(), /kan ikke planlægges/);
    for (const code of ['no_in_clinic_visit_before', 'no_assessment']) {
      await tp.locator(`#schedule-result li[data-code="${code}"]`).waitFor();
    }
    await expectAccessibleAtEverySize(tp, 'refused scheduling');
    await screenshot(tp, 'app-schedule-refused');

    // Eligible now; a consultation tomorrow at 10:00 is not open yet.
    await recordVisit(tp);
    await recordAssessment(tp);
    const tomorrow = copenhagenDate(new Date(Date.now() + 86400000));
    await tp.locator('#schedule-form').getByLabel('Dato').fill(tomorrow);
    await tp.locator('#schedule-form').getByLabel('Klokkeslæt').fill('10:00');
    const early = await schedule(tp);
    await pp.goto(early.joinUrl);
    await pp.getByRole('heading', { name: 'Det er for tidligt' }).waitFor();
    assert.match(await pp.locator('#message-text').innerText(), /Linket åbner .* klokken 09[.:]45\./);
    await expectAccessibleAtEverySize(pp, 'too early');
    await screenshot(pp, 'patient-link-too-early');

    // A consultation now; a new link revokes the old one.
    await tp.locator('#schedule-form').getByLabel('Dato').fill(copenhagenDate());
    const { time } = nextSlot();
    await tp.locator('#schedule-form').getByLabel('Klokkeslæt').fill(time);
    const now = await schedule(tp);
    // "Planlæg" pressed again for the same time: a warning, no second one.
    await tp.locator('#schedule-form').getByRole('button', { name: 'Planlæg' }).click();
    await tp.locator('#schedule-result').getByText('Patienten har allerede en videokonsultation på det tidspunkt').waitFor();
    await tp.getByRole('button', { name: 'Planlæg alligevel' }).waitFor();
    await expectAccessibleAtEverySize(tp, 'overlapping schedule');
    await therapistOpens(tp, now.consultationId);
    await tp.getByText('Andre handlinger').click();
    await tp.getByRole('button', { name: 'Lav nyt link' }).click();
    // It asks first, and says the old link stops working.
    assert.match(await tp.locator('#confirm-q').innerText(), /gamle link holder op med at virke/);
    await expectAccessibleAtEverySize(tp, 'confirm a new link');
    await tp.locator('[data-confirm="link"]').click();
    const fresh = await tp.locator('#new-join-link').inputValue();
    assert.notEqual(fresh, now.joinUrl);
    await pp.goto(now.joinUrl);
    await pp.getByRole('heading', { name: 'Linket er ikke længere gyldigt' }).waitFor();
    assert.match(await pp.locator('#message-help').innerText(), /Ring til Fysioklinikken Aarhus/);
    await expectAccessibleAtEverySize(pp, 'revoked');
    await screenshot(pp, 'patient-link-revoked');
    // The new link works; the therapist declines the waiting patient with a message.
    await patientToWaitingRoom(pp, fresh);
    await tp.locator('#waiting-status').getByText('Patienten venter i venteværelset').waitFor({ timeout: 30000 });
    await tp.getByLabel('Besked til patienten').fill('Vi ringer dig op i stedet.');
    await tp.getByRole('button', { name: 'Afvis' }).click();
    await pp.getByRole('heading', { name: 'Du blev ikke lukket ind' }).waitFor({ timeout: 20000 });
    assert.match(await pp.locator('#message-help').innerText(), /Vi ringer dig op i stedet\./);
    await expectAccessibleAtEverySize(pp, 'declined');
    await screenshot(pp, 'patient-declined');

    // Cancelled: the link has expired.
    await tp.getByRole('button', { name: 'Aflys' }).click();
    // "Nej, fortryd" changes nothing; then it is cancelled for real.
    await tp.getByRole('button', { name: 'Nej, fortryd' }).click();
    assert.equal(await tp.locator('#confirm-q').count(), 1);
    assert.equal(await tp.locator('[role="alertdialog"]:visible').count(), 0);
    await tp.getByRole('button', { name: 'Aflys' }).click();
    await tp.locator('[data-confirm="cancel"]').click();
    await tp.getByText('Konsultationen er afsluttet med status: Aflyst.').waitFor();
    // The admin gives the clinic's phone number; a wrong one is refused.
    await tp.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
    const phone = tp.getByLabel('Klinikkens telefonnummer');
    await phone.fill('ring os');
    await tp.getByRole('button', { name: 'Gem klinikkens oplysninger' }).click();
    await tp.locator('[role="alert"]').filter({ hasText: /8/ }).first().waitFor();
    await phone.fill('70 20 30 40');
    await tp.getByRole('button', { name: 'Gem klinikkens oplysninger' }).click();
    await tp.getByText('Gemt.').waitFor();
    await pp.goto(fresh);
    // Cancelled by the clinic: the page says so and whom to call, with a
    // link that dials the clinic.
    await pp.getByRole('heading', { name: 'Klinikken har aflyst' }).waitFor();
    assert.match(await pp.locator('#message-help').innerText(), /Ring til Fysioklinikken Aarhus/);
    const call = pp.getByRole('link', { name: 'Ring til Fysioklinikken Aarhus: 70 20 30 40' });
    assert.equal(await call.getAttribute('href'), 'tel:70203040');
    assert.ok(await call.isVisible(), 'the number is on the screen');
    await expectAccessibleAtEverySize(pp, 'expired');
    await screenshot(pp, 'patient-link-expired');

    // A revoked assessment blocks new consultations, and says so.
    await tp.goto(patientUrl);
    await tp.getByRole('button', { name: 'Tilbagekald vurdering' }).click();
    await tp.locator('[data-confirm="revoke"]').click();
    await tp.getByText('Ingen gældende vurdering.').waitFor();
    await tp.locator('#schedule-form').getByRole('button', { name: 'Planlæg' }).click();
    await tp.locator('#schedule-result li[data-code="assessment_revoked"]').waitFor();
    await screenshot(tp, 'app-assessment-revoked');

    assert.deepEqual(errors.filter((e) => !/status of 4\d\d/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(tp, 'failure-links-therapist').catch(() => {});
    await screenshot(pp, 'failure-links-patient').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});

test('administration: a new therapist and the fee table', { timeout: 60000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  try {
    await relogin(tp, { fresh: true });
    await tp.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
    await tp.getByRole('heading', { name: 'Administration', level: 1 }).waitFor();
    const therapists = tp.locator('#new-therapist');
    await therapists.getByLabel('Navn').fill('Jonas Terapeut');
    await therapists.getByLabel('E-mail').fill('jonas@klinik.example');
    // A common password is refused, in Danish.
    await therapists.getByLabel('Adgangskode').fill('qwerty123456');
    await therapists.getByRole('button', { name: 'Opret behandler' }).click();
    await therapists.getByText('Adgangskoden er blandt de mest brugte').waitFor();
    await therapists.getByLabel('Adgangskode').fill('endnu-en-lang-kode');
    await therapists.getByRole('button', { name: 'Opret behandler' }).click();
    await tp.locator('#therapist-list').getByText('Jonas Terapeut', { exact: true }).waitFor();
    // The admin sets Jonas a new password, then deactivates and
    // reactivates the account (deactivation asks first).
    const jonas = tp.locator('#therapist-list li', { hasText: 'Jonas Terapeut' });
    await jonas.getByRole('button', { name: 'Ny adgangskode: Jonas Terapeut' }).click();
    await jonas.getByLabel('Ny adgangskode til Jonas Terapeut').fill('jonas-nye-lange-kode');
    await jonas.getByRole('button', { name: 'Sæt adgangskode' }).click();
    await jonas.getByText('Ny adgangskode sat for Jonas Terapeut').waitFor();
    tp.once('dialog', (dialog) => dialog.accept());
    await jonas.getByRole('button', { name: 'Deaktivér: Jonas Terapeut' }).click();
    await jonas.getByText('Deaktiveret').waitFor();
    await jonas.getByRole('button', { name: 'Genaktivér: Jonas Terapeut' }).click();
    await jonas.getByRole('button', { name: 'Deaktivér: Jonas Terapeut' }).waitFor();
    await expectAccessible(tp, 'administration with account controls');
    const login = await tp.evaluate(async () => {
      const res = await fetch('/api/login', { method: 'POST', credentials: 'omit', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'jonas@klinik.example', password: 'jonas-nye-lange-kode' }) });
      return res.status;
    });
    assert.equal(login, 200, 'Jonas logs in with the password the admin set');
    const fee = tp.locator('section', { has: tp.getByRole('heading', { name: 'Honorartabel' }) });
    assert.match(await tp.locator('#fee-table').inputValue(), /307|30795/, 'the current table is shown');
    await fee.getByRole('button', { name: 'Gem honorartabel' }).click();
    await fee.getByText('Gemt.').waitFor();
    const clinic = tp.locator('section', { has: tp.getByRole('heading', { name: 'Klinik' }) });
    await clinic.getByRole('button', { name: 'Gem klinikkens oplysninger' }).click();
    await clinic.getByText('Gemt.').waitFor();
    // The dashboard in English, kept after a reload.
    await tp.getByRole('button', { name: 'Show the page in English' }).click();
    await tp.getByRole('navigation').getByRole('link', { name: 'Today' }).waitFor();
    await tp.getByRole('heading', { name: 'Therapists' }).waitFor();
    await tp.reload();
    await tp.getByRole('heading', { name: 'Fee table' }).waitFor();
    assert.equal(await tp.evaluate(() => document.documentElement.lang), 'en');
    await tp.getByRole('button', { name: 'Vis siden på dansk' }).click();
    await tp.getByRole('heading', { name: 'Honorartabel' }).waitFor();
  } finally {
    await tc.close();
  }
});

test('the first screen and the invitation say what the patient pays', { timeout: 120000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  const pp = await pc.newPage();
  try {
    await relogin(tp, { fresh: true });
    // The clinic works under speciale 62 too.
    await tp.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
    const clinic = tp.locator('section', { has: tp.getByRole('heading', { name: 'Klinik' }) });
    await clinic.getByLabel('Speciale 62 – vederlagsfri fysioterapi').check();
    await clinic.getByRole('button', { name: 'Gem klinikkens oplysninger' }).click();
    await clinic.getByText('Gemt.').waitFor();
    const cases = [
      { speciale: '51', name: 'Grethe Almen', da: /Din egenbetaling er 194,14 kr\./, en: /You pay DKK 194\.14 yourself\./ },
      { speciale: '62', name: 'Holger Vederlagsfri', da: /gratis for dig/, en: /free of charge for you/ },
    ];
    for (const c of cases) {
      await createPatient(tp, { name: c.name });
      await recordVisit(tp);
      await openCourse(tp, { speciale: c.speciale });
      await recordAssessment(tp);
      await tp.locator('#schedule-form').getByLabel('Dato').fill(copenhagenDate());
      await tp.locator('#schedule-form').getByLabel('Klokkeslæt').fill(nextSlot().time);
      if (c.speciale === '62') {
        // An admin books for a colleague (made in the administration test).
        await tp.locator('#schedule-form').getByLabel('Behandler').selectOption({ label: 'Jonas Terapeut' });
      }
      const { joinUrl } = await schedule(tp);
      // The invitation the therapist sends says it too.
      const invitation = await tp.locator('#schedule-invitation').textContent();
      assert.match(invitation, c.da, `invitation for speciale ${c.speciale}`);
      assert.match(invitation, /videokonsultation med Fysioklinikken Aarhus/);
      await pp.goto(joinUrl);
      await pp.getByRole('heading', { name: 'Din videokonsultation' }).waitFor();
      await pp.locator('#welcome-payment').filter({ hasText: c.da }).waitFor();
      if (c.speciale === '62') await pp.locator('#welcome-with').filter({ hasText: 'Jonas Terapeut' }).waitFor();
      await expectAccessible(pp, `first screen, speciale ${c.speciale}`);
      await screenshot(pp, `patient-1-welcome-payment-${c.speciale}`);
      await pp.getByRole('button', { name: 'Show the page in English' }).click();
      await pp.locator('#welcome-payment').filter({ hasText: c.en }).waitFor();
      await pp.getByRole('button', { name: 'Vis siden på dansk' }).click();
      await pp.locator('#welcome-payment').filter({ hasText: c.da }).waitFor();
    }
  } catch (err) {
    await screenshot(tp, 'failure-payment-therapist').catch(() => {});
    await screenshot(pp, 'failure-payment-patient').catch(() => {});
    err.message += `\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});

function nextSlot() {
  const d = new Date(Date.now() + 5 * 60000);
  const time = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Copenhagen', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(d);
  return { time };
}
