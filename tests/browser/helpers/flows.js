// The steps a therapist and a patient take, through the pages as a user
// would (labels and button names, in Danish), shared by the test files.

import assert from 'node:assert/strict';
import { axeSerious, screenshot, waitFor } from './browser.js';

export const ADMIN = { name: 'Mette Fysio', email: 'mette@klinik.example', password: 'korrekt-hest-batteri' };

const pad = (n) => String(n).padStart(2, '0');

/** Copenhagen date (YYYY-MM-DD) of an instant. */
export function copenhagenDate(d = new Date()) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Copenhagen', year: 'numeric', month: '2-digit', day: '2-digit' }).format(d);
}

/**
 * Minutes left of the Copenhagen calendar day. The billing rule is "one per
 * patient per Danish calendar day", and the server runs on the real clock.
 */
export function minutesToCopenhagenMidnight(d = new Date()) {
  const parts = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Copenhagen', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(d);
  const hour = Number(parts.find((p) => p.type === 'hour').value);
  const minute = Number(parts.find((p) => p.type === 'minute').value);
  return 24 * 60 - (hour * 60 + minute);
}

/**
 * A test whose consultations must fall on one Danish day waits out the
 * last `margin` minutes before Copenhagen midnight instead of straddling it.
 */
export async function awayFromDanishMidnight(margin = 20) {
  const left = minutesToCopenhagenMidnight();
  if (left <= margin) {
    console.log(`# ${left} min to Copenhagen midnight: waiting for the new day so both consultations share it`);
    await new Promise((resolve) => setTimeout(resolve, (left * 60 + 30) * 1000));
  }
}

/** Fails with the list when axe finds serious or critical violations. */
export async function expectAccessible(page, what) {
  const violations = await axeSerious(page);
  assert.deepEqual(violations, [], `${what}: axe found serious or critical violations:\n${JSON.stringify(violations, null, 2)}`);
}

/** The sizes the clinic's people use: a desktop, a phone with its browser bars, a small phone. */
export const SIZES = [
  [1440, 900],
  [390, 664],
  [320, 568],
];

/** {@link expectAccessible} at every one of {@link SIZES}; the page keeps its size after. */
export async function expectAccessibleAtEverySize(page, what) {
  const before = page.viewportSize();
  for (const [width, height] of SIZES) {
    await page.setViewportSize({ width, height });
    await expectAccessible(page, `${what} at ${width}×${height}`);
  }
  if (before) await page.setViewportSize(before);
}

/** First-run setup through /app/setup#token; ends logged in on the day view. */
export async function setupClinic(page, setupLink, { clinic = 'Fysioklinikken Aarhus', shots = false } = {}) {
  await page.goto(setupLink);
  await page.getByRole('heading', { name: 'Opret klinikken' }).waitFor();
  if (shots) {
    await expectAccessible(page, 'setup');
    await screenshot(page, 'app-setup');
  }
  await page.getByLabel('Klinikkens navn').fill(clinic);
  await page.getByLabel('Ydernummer').fill('123456');
  await page.getByLabel('Dit navn').fill(ADMIN.name);
  await page.getByLabel('Din e-mail').fill(ADMIN.email);
  await page.getByLabel('Adgangskode').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Opret klinikken' }).click();
  await page.getByRole('heading', { name: /^Konsultationer/ }).waitFor();
}

/** Logs out and in again through the login form (`fresh`: a new page, not logged in). */
export async function relogin(page, { shots = false, fresh = false } = {}) {
  if (fresh) await page.goto('/app');
  else await page.getByRole('button', { name: 'Log ud' }).click();
  await page.getByRole('heading', { name: 'Log ind' }).waitFor();
  if (shots) {
    await expectAccessible(page, 'login');
    await screenshot(page, 'app-login');
  }
  await page.getByLabel('E-mail').fill(ADMIN.email);
  await page.getByLabel('Adgangskode').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Log ind' }).click();
  await page.getByRole('heading', { name: /^Konsultationer/ }).waitFor();
}

/** Creates a patient; ends on the patient's page. */
export async function createPatient(page, { name, phone = '+45 12 34 56 78' }) {
  await page.getByRole('navigation').getByRole('link', { name: 'Patienter' }).click();
  await page.getByRole('heading', { name: 'Patienter', level: 1 }).waitFor();
  const form = page.locator('#new-patient');
  await form.getByLabel('Navn', { exact: true }).fill(name);
  await form.getByLabel('Telefon').fill(phone);
  await form.getByRole('button', { name: 'Opret patient' }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

/** Records an in-clinic visit (default: yesterday at 10:00). */
export async function recordVisit(page, { date = copenhagenDate(new Date(Date.now() - 86400000)), time = '10:00' } = {}) {
  const form = page.locator('#visit-form');
  await form.getByLabel('Dato').fill(date);
  await form.getByLabel('Klokkeslæt').fill(time);
  await form.getByRole('button', { name: 'Registrér besøg i klinikken' }).click();
  await page.locator('#visit-list li').first().waitFor();
}

/** Opens a course of speciale 51 (optionally a structured course). */
export async function openCourse(page, { speciale = '51' } = {}) {
  const before = await page.locator('article[data-course]').count();
  const form = page.locator('#course-form');
  await form.getByLabel('Speciale').selectOption(speciale);
  if (speciale === '62') {
    // Vederlagsfri fysioterapi needs a diagnosis group: the first one offered.
    const group = form.getByLabel('Diagnosegruppe');
    const first = await group.locator('option').nth(1).getAttribute('value');
    await group.selectOption(first);
  }
  await form.getByLabel('Henvisningsdato').fill(copenhagenDate(new Date(Date.now() - 7 * 86400000)));
  await form.getByRole('button', { name: 'Åbn forløb' }).click();
  await waitFor(async () => (await page.locator('article[data-course]').count()) > before, { message: 'the new course' });
}

/** Records an assessment with every criterion met in the (only) course. */
export async function recordAssessment(page) {
  const course = page.locator('article[data-course]').first();
  const form = course.locator('form.assessment-form');
  for (const label of [
    'kognitivt i stand',
    'teknisk i stand',
    'relevant behandling',
    'patientsikker',
    'patientens præferencer',
  ]) {
    await form.getByLabel(label).check();
  }
  await form.getByRole('button', { name: 'Gem vurdering' }).click();
  await waitFor(async () => (await page.locator('article[data-course] .criteria li[data-met="true"]').count()) === 5, {
    message: 'five met criteria',
  });
}

/**
 * A patient eligible for video: created, seen in the clinic yesterday, a
 * course of speciale 51 and an assessment with every criterion met; ends on
 * the patient's page.
 */
export async function eligiblePatient(page, name) {
  await createPatient(page, { name });
  await recordVisit(page);
  await openCourse(page);
  await recordAssessment(page);
}

/**
 * Schedules a consultation from the patient's page; returns {joinUrl,
 * consultationId}. Relay-only is the clinic's default; `relayOnly: false`
 * turns it off for this consultation (a direct path may then be used).
 */
export async function schedule(page, { relayOnly = true } = {}) {
  const form = page.locator('#schedule-form');
  await form.getByLabel('Kun via relay').setChecked(relayOnly);
  await form.getByRole('button', { name: 'Planlæg' }).click();
  const link = page.locator('#join-link');
  await link.waitFor();
  const joinUrl = await link.inputValue();
  const consultationId = await page.locator('#schedule-result [data-consultation]').getAttribute('data-consultation');
  assert.match(joinUrl, /\/join\/[^/]+$/);
  return { joinUrl, consultationId };
}

/** The patient: first screen, device check, waiting room. */
export async function patientToWaitingRoom(page, joinUrl, { shots = false, prefix = 'patient', therapist = ADMIN.name } = {}) {
  await page.goto(joinUrl);
  await page.getByRole('heading', { name: 'Din videokonsultation' }).waitFor();
  await page.locator('#welcome-with').filter({ hasText: therapist }).waitFor();
  if (shots) {
    await expectAccessible(page, 'patient first screen');
    await screenshot(page, `${prefix}-1-welcome`);
  }
  await page.getByRole('button', { name: 'Start' }).click();
  await page.getByRole('heading', { name: 'Tjek af kamera og lyd' }).waitFor();
  await page.locator('#camera-status.ok').waitFor({ timeout: 20000 });
  await page.locator('#mic-status.ok').waitFor({ timeout: 20000 });
  await page.getByRole('button', { name: 'Afspil lyd' }).click();
  await page.getByRole('button', { name: 'Ja' }).click();
  await page.locator('#speaker-status.ok').waitFor();
  // The relay check needs GET /api/join/{token}/ice-servers; where the
  // server does not offer it, the page says it checks when joining.
  const token = new URL(joinUrl).pathname.split('/').pop();
  const ice = await page.request.get(`/api/join/${token}/ice-servers`);
  const expected = ice.status() === 404 ? 'later' : 'ok';
  await page.locator(`#net-status[data-state="${expected}"]`).waitFor({ timeout: 20000 });
  if (shots) {
    await expectAccessible(page, 'patient device check');
    await screenshot(page, `${prefix}-2-check`);
  }
  await page.getByRole('button', { name: 'Gå til venteværelset' }).click();
  await page.getByRole('heading', { name: 'Du er i venteværelset' }).waitFor();
  await page.locator('#wait-status').filter({ hasText: 'Venter på fysioterapeuten' }).waitFor({ timeout: 20000 });
  if (shots) {
    await expectAccessible(page, 'patient waiting room');
    await screenshot(page, `${prefix}-3-waiting`);
  }
}

/** The therapist opens the consultation page. */
export async function therapistOpens(page, consultationId) {
  await page.goto(`/app/consultations/${consultationId}`);
  await page.getByRole('heading', { name: /^Videokonsultation med/ }).waitFor();
}

/** The therapist admits the waiting patient and confirms the safety prompt. */
export async function admit(page) {
  await page.getByRole('button', { name: 'Luk patienten ind' }).click({ timeout: 30000 });
  await page.locator('#safety:not([hidden])').waitFor({ timeout: 30000 });
}

export async function confirmSafety(page) {
  const safety = page.locator('#safety');
  await safety.getByLabel('Hvor er patienten?').fill('Hjemme, Vestergade 12, 8000 Aarhus C');
  await safety.getByLabel('Telefonnummer').fill('+45 12 34 56 78');
  await safety.getByRole('button', { name: 'Bekræft' }).click();
  await safety.getByText('Bekræftet:').waitFor();
}

/** Ends the call and writes the journal note; returns the billing result section. */
export async function endAndWriteJournal(page) {
  await page.locator('#btn-end').click();
  await page.locator('#end-yes').click();
  return writeJournal(page);
}

/** Writes the journal note of an ended call; returns the billing result section. */
export async function writeJournal(page) {
  const form = page.locator('#journal-form');
  await form.waitFor({ timeout: 20000 });
  await form.getByLabel('Status siden sidst').fill('Øvelserne er udført dagligt; mindre smerte ved gang.');
  await form.getByLabel('Monitorering og evaluering').fill('Gangdistance øget fra 500 m til 1 km.');
  await form.getByLabel('Komplikationer og bivirkninger').fill('Ingen.');
  await form.getByLabel('Træningsterapi, vejledning og instruktion i øvelser').fill('Korrigeret squat-teknik; ny øvelse: step-up.');
  await form.getByLabel('Tilpasning af mål og behandlingsplan').fill('Mål uændret; næste kontrol om to uger.');
  await form.getByRole('button', { name: 'Gem journalnotat og afslut' }).click();
  const result = page.locator('#billing-result section[data-billable]');
  await result.waitFor({ timeout: 20000 });
  return result;
}
