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
    await expectAccessible(tp, 'refused scheduling');
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
    await expectAccessible(pp, 'too early');
    await screenshot(pp, 'patient-link-too-early');

    // A consultation now; a new link revokes the old one.
    await tp.locator('#schedule-form').getByLabel('Dato').fill(copenhagenDate());
    const { time } = nextSlot();
    await tp.locator('#schedule-form').getByLabel('Klokkeslæt').fill(time);
    const now = await schedule(tp);
    await therapistOpens(tp, now.consultationId);
    await tp.getByText('Andre handlinger').click();
    await tp.getByRole('button', { name: 'Lav nyt link' }).click();
    const fresh = await tp.locator('#new-join-link').inputValue();
    assert.notEqual(fresh, now.joinUrl);
    await pp.goto(now.joinUrl);
    await pp.getByRole('heading', { name: 'Linket er ikke længere gyldigt' }).waitFor();
    await expectAccessible(pp, 'revoked');
    await screenshot(pp, 'patient-link-revoked');
    // The new link works; the therapist declines the waiting patient with a message.
    await patientToWaitingRoom(pp, fresh);
    await tp.locator('#waiting-status').getByText('Patienten venter i venteværelset').waitFor({ timeout: 30000 });
    await tp.getByLabel('Besked til patienten').fill('Vi ringer dig op i stedet.');
    await tp.getByRole('button', { name: 'Afvis' }).click();
    await pp.getByRole('heading', { name: 'Du blev ikke lukket ind' }).waitFor({ timeout: 20000 });
    assert.match(await pp.locator('#message-help').innerText(), /Vi ringer dig op i stedet\./);
    await expectAccessible(pp, 'declined');
    await screenshot(pp, 'patient-declined');

    // Cancelled: the link has expired.
    await tp.getByRole('button', { name: 'Aflys' }).click();
    await tp.getByText('Konsultationen er afsluttet med status: Aflyst.').waitFor();
    await pp.goto(fresh);
    await pp.getByRole('heading', { name: 'Linket er udløbet' }).waitFor();
    await expectAccessible(pp, 'expired');
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
    const therapists = tp.locator('section', { has: tp.getByRole('heading', { name: 'Behandlere' }) });
    await therapists.getByLabel('Navn').fill('Jonas Terapeut');
    await therapists.getByLabel('E-mail').fill('jonas@klinik.example');
    await therapists.getByLabel('Adgangskode').fill('endnu-en-lang-kode');
    await therapists.getByRole('button', { name: 'Opret behandler' }).click();
    await tp.locator('#therapist-list').getByText('Jonas Terapeut').waitFor();
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

function nextSlot() {
  const d = new Date(Date.now() + 5 * 60000);
  const time = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Copenhagen', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(d);
  return { time };
}
