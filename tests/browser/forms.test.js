// The dashboard's forms in Danish whatever the browser's language: dates
// and times typed and shown as dd.mm.åååå and tt:mm in an American
// (en-US) Chromium, a wrong date refused in words without booking
// anything; the fee table edited as rows and saved; the audit log read in
// words. Each page is scanned with axe on a desktop, a phone and a small
// phone, and photographed.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newContext, screenshot, watchErrors } from './helpers/browser.js';
import {
  copenhagenDate,
  createPatient,
  expectAccessible,
  openCourse,
  recordAssessment,
  recordVisit,
  relogin,
  setupClinic,
} from './helpers/flows.js';
import { startServer } from './helpers/server.js';

const VIEWPORTS = [
  { name: 'desktop', width: 1440, height: 900 },
  { name: 'phone', width: 390, height: 664 },
  { name: 'small', width: 320, height: 568 },
];

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

/** An American browser: en-US locale (mm/dd/yyyy and AM/PM in native date fields). */
function americanContext() {
  return newContext(browser, { baseUrl: server.baseUrl, locale: 'en-US' });
}

/** Axe and a screenshot at each viewport, back at the default size after. */
async function acrossViewports(page, what, shot) {
  for (const v of VIEWPORTS) {
    await page.setViewportSize({ width: v.width, height: v.height });
    await expectAccessible(page, `${what} at ${v.width}×${v.height}`);
    await screenshot(page, `${shot}-${v.name}`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** Counts the page's requests that match `method` and a path. */
function countRequests(page, method, pathRe) {
  const counter = { n: 0 };
  page.on('request', (r) => {
    if (r.method() === method && pathRe.test(new URL(r.url()).pathname)) counter.n += 1;
  });
  return counter;
}

async function openAdmin(page) {
  await page.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
  await page.getByRole('heading', { name: 'Administration', level: 1 }).waitFor();
  await page.locator('#fee-rows fieldset').first().waitFor();
}

test('dates and times are read the Danish way, in Node', async () => {
  // The field module needs the page's address (for ?lang=) only to load.
  globalThis.location ??= { search: '' };
  const { parseDate, parseTime, formatDate } = await import('../../web-client/static/js/fields.js');
  for (const typed of ['3.12.2026', '03.12.2026', '03-12-2026', '3/12/2026', '03122026', '031226', '3.12.26', ' 3. 12. 2026 ', '2026-12-03']) {
    assert.equal(parseDate(typed), '2026-12-03', typed);
  }
  for (const typed of ['31.02.2026', '12/31/2026', '2026-13-01', '0.1.2026', 'i morgen', '', '3.12', '123']) {
    assert.equal(parseDate(typed), null, typed);
  }
  assert.equal(parseDate('29.02.2028'), '2028-02-29');
  assert.equal(parseDate('29.02.2027'), null);
  for (const [typed, want] of [['14:30', '14:30'], ['14.30', '14:30'], ['1430', '14:30'], ['9.30', '09:30'], ['0930', '09:30'], ['930', '09:30'], ['9', '09:00'], ['kl. 9.30', '09:30'], ['00:00', '00:00'], ['23.59', '23:59']]) {
    assert.equal(parseTime(typed), want, typed);
  }
  for (const typed of ['24:00', '12:60', '2:30 PM', '14:3', '', 'nu']) {
    assert.equal(parseTime(typed), null, typed);
  }
  assert.equal(formatDate('2026-12-03'), '03.12.2026');
});

test('administration: the audit log in words and the fee table as rows', { timeout: 240000 }, async () => {
  const context = await americanContext();
  const page = await context.newPage();
  const errors = watchErrors(page, 'admin');
  try {
    await setupClinic(page, server.setupLink);
    await openAdmin(page);

    // --- The audit log says what happened in words, not codes. ---
    const audit = page.locator('#audit-log');
    await audit.getByRole('cell', { name: 'Klinik oprettet', exact: true }).waitFor();
    const auditText = await audit.innerText();
    assert.doesNotMatch(auditText, /clinic\.create|therapist:|[a-z_]+\.[a-z_]+/, 'no action codes or raw actors');
    // Who: the admin by name, not an account id.
    assert.match(await audit.locator('tr[data-action="clinic.create"]').innerText(), /Mette Fysio\s+Klinik oprettet/);

    // --- The fee table as rows: the shipped table has four. ---
    const feeCard = page.locator('#fee-table-card');
    const rows = feeCard.locator('#fee-rows > fieldset');
    assert.equal(await rows.count(), 4);
    const first = rows.nth(0);
    assert.equal(await first.locator('legend').innerText(), 'Række 1');
    assert.equal(await first.getByLabel('Ydelsesnummer').inputValue(), '0131');
    assert.equal(await first.getByLabel('Honorar i kroner').inputValue(), '307,95');
    assert.equal(await first.getByLabel('Gælder fra').inputValue(), '01.01.2024');
    assert.equal(await first.getByLabel('Gælder til og med').inputValue(), '');
    assert.equal(await first.getByLabel('Speciale').inputValue(), '51');
    assert.equal(await first.getByLabel('Ydelse', { exact: true }).inputValue(), 'individual_video');
    await acrossViewports(page, 'administration', 'forms-admin');

    const puts = countRequests(page, 'PUT', /^\/api\/clinic\/fee-table$/);
    const fee51 = async () => (await page.locator('#fees-current tbody tr', { hasText: '0131' }).filter({ has: page.getByRole('cell', { name: '51', exact: true }) }).locator('td.num').first().innerText()).trim();
    const before = await fee51();

    // A fee that is not kroner: refused in words at the row, nothing sent.
    await first.getByLabel('Honorar i kroner').fill('tre hundrede');
    await feeCard.getByRole('button', { name: 'Gem honorartabel' }).click();
    const refusal = feeCard.locator('.form-errors [role="alert"]');
    await refusal.waitFor();
    assert.match(await refusal.innerText(), /Række 1: skriv honoraret i kroner, fx 307,95\./);
    assert.equal(await first.getByLabel('Honorar i kroner').getAttribute('aria-invalid'), 'true');
    assert.equal(puts.n, 0, 'nothing was sent');

    // A changed fee (Danish decimal comma) is saved; the fees in force follow.
    await first.getByLabel('Honorar i kroner').fill('320,00');
    await feeCard.getByRole('button', { name: 'Gem honorartabel' }).click();
    await feeCard.getByText('Gemt.').waitFor();
    assert.equal(puts.n, 1);
    const saved = await page.evaluate(async () => (await fetch('/api/clinic/fee-table')).text());
    assert.match(saved, /fee_ore = 32000/);
    assert.match(saved, /fee_ore = 32768/, 'the other rows kept');
    const toKr = (text) => Number(text.replace(/[^\d,]/g, '').replace(',', '.'));
    let after;
    for (let i = 0; i < 40; i += 1) {
      after = await fee51();
      if (after !== before) break;
      await page.waitForTimeout(250);
    }
    assert.notEqual(after, before, 'the fees card shows the new fee');
    // Regulation steps apply on top of the table's fee: the fee in force moves by the same factor.
    assert.ok(Math.abs(toKr(after) / toKr(before) - 320 / 307.95) < 0.002, `${before} → ${after}`);

    // A table the server refuses (two rows for the same service and
    // period): its reasons are shown in the form, and what was typed stays.
    await feeCard.getByRole('button', { name: 'Tilføj en række' }).click();
    const added = rows.nth(4);
    assert.equal(await added.locator('legend').innerText(), 'Række 5');
    await added.getByLabel('Ydelse', { exact: true }).selectOption('individual_video');
    await added.getByLabel('Ydelsesnummer').fill('0131');
    await added.getByLabel('Speciale').selectOption('51');
    await added.getByLabel('Honorar i kroner').fill('299,50');
    await added.getByLabel('Gælder fra').fill('1.4.2025');
    await feeCard.getByRole('button', { name: 'Gem honorartabel' }).click();
    const problem = feeCard.locator('.form-errors [role="alert"][data-codes~="invalid_fee_table"]');
    await problem.waitFor();
    assert.match(await problem.innerText(), /Honorartabellen er ikke gyldig/);
    assert.equal(await added.getByLabel('Honorar i kroner').inputValue(), '299,50');
    assert.equal(await added.getByLabel('Gælder fra').inputValue(), '01.04.2025');
    assert.equal(await rows.count(), 5);
    await expectAccessible(page, 'fee table refused');
    await screenshot(page, 'forms-fee-refused');
    await added.getByRole('button', { name: 'Fjern række 5' }).click();
    assert.equal(await rows.count(), 4);

    // The text view shows the same table as TOML.
    await feeCard.getByText('Avanceret: redigér tabellen som tekst (TOML)').click();
    assert.match(await page.locator('#fee-table').inputValue(), /fee_ore = 32000/);
    await feeCard.getByText('Avanceret: redigér tabellen som tekst (TOML)').click();

    // After a reload the form shows what was saved, and the log says so in words.
    await page.reload();
    await page.locator('#fee-rows fieldset').first().waitFor();
    assert.equal(await rows.nth(0).getByLabel('Honorar i kroner').inputValue(), '320,00');
    await audit.getByRole('cell', { name: 'Honorartabel gemt' }).first().waitFor();

    // In English, the same log and form in English words.
    await page.getByRole('button', { name: 'Show the page in English' }).click();
    await page.getByRole('heading', { name: 'Fee table' }).waitFor();
    await audit.getByRole('cell', { name: 'Clinic created', exact: true }).waitFor();
    await rows.nth(0).getByLabel('Fee in kroner').waitFor();
    assert.equal(await rows.nth(0).getByLabel('Fee in kroner').inputValue(), '320,00');
    assert.match(await rows.nth(0).getByLabel('Valid from').inputValue(), /^01\.01\.2024$/);
    await page.getByRole('button', { name: 'Vis siden på dansk' }).click();
    await page.getByRole('heading', { name: 'Honorartabel' }).waitFor();

    // The one refusal above is the browser's only complaint.
    assert.deepEqual(errors.filter((e) => !/status of 422/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(page, 'failure-forms-admin').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await context.close();
  }
});

test('an American browser books in Danish dates and times', { timeout: 240000 }, async () => {
  const context = await americanContext();
  const page = await context.newPage();
  let errors = [];
  try {
    await relogin(page, { fresh: true });
    // Watched from here: the login page's 401 from /api/me is expected.
    errors = watchErrors(page, 'therapist');
    assert.equal(await page.evaluate(() => navigator.language), 'en-US');

    // The helpers fill ISO dates (2026-11-29): still read.
    await createPatient(page, { name: 'Dorte Dato' });
    const patientId = page.url().split('/').pop();
    await recordVisit(page);
    assert.match(await page.locator('#visit-form').getByLabel('Dato').inputValue(), /^\d{2}\.\d{2}\.\d{4}$/);
    await openCourse(page);
    await recordAssessment(page);

    const form = page.locator('#schedule-form');
    const date = form.getByLabel('Dato');
    const time = form.getByLabel('Klokkeslæt');
    // Shown the Danish way, with the format under the label.
    assert.match(await date.inputValue(), /^\d{2}\.\d{2}\.\d{4}$/);
    assert.match(await time.inputValue(), /^\d{2}:\d{2}$/);
    assert.equal(await date.getAttribute('type'), 'text');
    assert.equal(await date.getAttribute('inputmode'), 'numeric');
    const hintId = await date.getAttribute('aria-describedby');
    assert.match(await page.locator(`[id="${hintId}"]`).innerText(), /dd\.mm\.åååå/);
    assert.match(await page.locator(`[id="${await time.getAttribute('aria-describedby')}"]`).innerText(), /tt:mm \(24 timer\)/);
    await acrossViewports(page, 'booking form', 'forms-booking');

    // A date that does not exist: a clear reason, and nothing is booked.
    const posts = countRequests(page, 'POST', /^\/api\/consultations$/);
    await date.fill('31.02.2026');
    await time.fill('14.30');
    await form.getByRole('button', { name: 'Planlæg' }).click();
    const refused = page.locator('#schedule-result [role="alert"][data-codes~="invalid_input"]');
    await refused.waitFor();
    assert.match(await refused.innerText(), /Dato: »31\.02\.2026« er ikke en dato\. Skriv dag, måned og år som dd\.mm\.åååå/);
    assert.equal(await date.getAttribute('aria-invalid'), 'true');
    assert.match(await date.getAttribute('aria-describedby'), /-error/);
    await expectAccessible(page, 'a date that is not a date');
    await screenshot(page, 'forms-booking-bad-date');
    // An American time is not guessed at either.
    await date.fill('01.12.2026');
    await time.fill('2:30 PM');
    await form.getByRole('button', { name: 'Planlæg' }).click();
    await page.locator('#schedule-result [role="alert"]').filter({ hasText: 'er ikke et klokkeslæt' }).waitFor();
    assert.equal(posts.n, 0, 'nothing was sent to the server');
    assert.equal(await page.locator('#join-link').count(), 0);

    // Three days from now, typed without leading zeros, at half past two.
    const day = new Date(Date.now() + 3 * 86400000);
    const iso = copenhagenDate(day);
    const [y, m, d] = iso.split('-').map(Number);
    await date.fill(`${d}.${m}.${y}`);
    await time.fill('14.30');
    await form.getByRole('button', { name: 'Planlæg' }).click();
    await page.locator('#join-link').waitFor();
    assert.equal(posts.n, 1);
    const done = await page.locator('#schedule-result [data-consultation] p').first().innerText();
    assert.match(done, new RegExp(`den ${d}\\. .* ${y} klokken 14[.:]30\\.`), done);
    // The field shows what it read, the Danish way.
    assert.equal(await date.inputValue(), `${String(d).padStart(2, '0')}.${String(m).padStart(2, '0')}.${y}`);
    assert.equal(await time.inputValue(), '14:30');
    const booked = await page.evaluate(async (q) => (await fetch(`/api/consultations?day=${q}`)).json(), iso);
    assert.equal(booked.length, 1);
    assert.equal(
      new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Copenhagen', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(new Date(booked[0].start)),
      '14:30',
    );

    // The day view: the day typed as dd-mm-åååå, the booking at 14.30.
    await page.getByRole('navigation').getByRole('link', { name: 'I dag' }).click();
    const dayField = page.locator('#day-form').getByLabel('Dag');
    await dayField.waitFor();
    assert.equal(await dayField.inputValue(), copenhagenDate().split('-').reverse().join('.'));
    await dayField.fill(`${String(d).padStart(2, '0')}-${String(m).padStart(2, '0')}-${y}`);
    await dayField.press('Enter');
    const row = page.locator('#today-list tr[data-consultation]');
    await row.waitFor();
    assert.match(await row.innerText(), /14[.:]30 \(30 min\)[\s\S]*Dorte Dato/);
    assert.match(page.url(), new RegExp(`day=${iso}$`));
    await expectAccessible(page, 'day view');
    await screenshot(page, 'forms-day');
    // A day that cannot be read: said in words, the day shown stays.
    await dayField.fill('12/31/2026');
    await page.locator('#day-form').getByRole('button', { name: 'Vis dagen' }).click();
    await page.locator('#day-form [role="alert"]').filter({ hasText: 'er ikke en dato' }).waitFor();
    assert.match(page.url(), new RegExp(`day=${iso}$`));
    await row.waitFor();

    // In English: the same Danish formats, the words in English.
    await page.getByRole('button', { name: 'Show the page in English' }).click();
    const dayEn = page.locator('#day-form').getByLabel('Day');
    await dayEn.waitFor();
    assert.match(await page.locator(`[id="${await dayEn.getAttribute('aria-describedby')}"]`).innerText(), /dd\.mm\.yyyy/);
    await dayEn.fill('32.1.2027');
    await page.locator('#day-form').getByRole('button', { name: 'Show the day' }).click();
    await page.locator('#day-form [role="alert"]').filter({ hasText: 'Day: “32.1.2027” is not a date. Write day, month and year as dd.mm.yyyy' }).waitFor();
    await page.getByRole('button', { name: 'Vis siden på dansk' }).click();
    await page.locator('#day-form').getByLabel('Dag').waitFor();

    // Billing: the period in Danish dates too.
    await page.getByRole('navigation').getByRole('link', { name: 'Afregning' }).click();
    const period = page.locator('#billing-period');
    await period.getByLabel('Fra').waitFor();
    assert.match(await period.getByLabel('Fra').inputValue(), /^01\.\d{2}\.\d{4}$/);
    await period.getByLabel('Fra').fill('1.11.2026');
    await period.getByLabel('Til').fill('30.11.2026');
    await period.getByRole('button', { name: 'Vis' }).click();
    await page.waitForURL(/from=2026-11-01&to=2026-11-30/);
    await expectAccessible(page, 'billing period');

    // The audit log names what was done to the patient, and whom, on
    // request. Forty more reads of the patient make it longer than a page.
    await page.evaluate(async (id) => {
      for (let i = 0; i < 40; i += 1) await fetch(`/api/patients/${id}`);
    }, patientId);
    await openAdmin(page);
    const audit = page.locator('#audit-log');
    await audit.getByRole('cell', { name: 'Videokonsultation planlagt' }).first().waitFor();
    // The newest entries, newest first (the API pages oldest first).
    const { chain } = await page.evaluate(async () => (await fetch('/api/audit?limit=1')).json());
    assert.ok(chain.entries > 50, `${chain.entries} entries`);
    assert.equal(await audit.locator('tbody tr').count(), 50);
    assert.equal(Number(await audit.locator('tbody tr').first().getAttribute('data-seq')), chain.entries);
    assert.equal(Number(await audit.locator('tbody tr').last().getAttribute('data-seq')), chain.entries - 49);
    assert.ok((await audit.getByRole('link', { name: 'Åbn patienten' }).count()) > 0);
    assert.equal(await audit.getByText('Dorte Dato').count(), 0, 'no patient names until asked for');
    await page.getByRole('button', { name: 'Vis patienternes navne' }).click();
    await page.getByText('Patienternes navne står nu i tabellen.').waitFor();
    const planned = audit.locator('tr[data-action="consultation.create"]').first();
    assert.match(await planned.innerText(), /Mette Fysio\s+Videokonsultation planlagt\s+Dorte Dato/);
    assert.doesNotMatch(await audit.innerText(), /[a-z_]+\.[a-z_]+|therapist:/, 'no action codes or raw actors');
    await expectAccessible(page, 'audit log with names');
    await screenshot(page, 'forms-audit');

    assert.deepEqual(errors, [], 'no script errors');
  } catch (err) {
    await screenshot(page, 'failure-forms-booking').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await context.close();
  }
});
