// Issue 11, "Danish everywhere": a refusal from the server is shown in the
// user's language. Booking a video consultation in the past is refused by
// the server (the form does not check it); the Danish page says so in
// Danish under its Danish introduction, with no English words, and the
// English page says it in English. A problem that brings no text of its
// own is still told in Danish, never by its English `detail`.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newContext, screenshot, watchErrors } from './helpers/browser.js';
import { createPatient, expectAccessible,
  expectAccessibleAtEverySize, openCourse, recordAssessment, recordVisit, setupClinic } from './helpers/flows.js';
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

/** Words of the server's English texts that must not reach a Danish reader. */
const ENGLISH = /\b(the|a|an|cannot|be|in|past|consultation|scheduled|not|found|must)\b/i;

test('a refusal from the server is shown in Danish, and in English on the English page', { timeout: 240000 }, async () => {
  const context = await newContext(browser, { baseUrl: server.baseUrl });
  const page = await context.newPage();
  const errors = watchErrors(page, 'therapist');
  try {
    await setupClinic(page, server.setupLink);
    await createPatient(page, { name: 'Grethe Fortid' });
    await recordVisit(page);
    await openCourse(page);
    await recordAssessment(page);

    const requests = [];
    page.on('response', (r) => {
      if (r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/consultations') requests.push(r.status());
    });

    // --- Danish: a day long gone. ---
    const form = page.locator('#schedule-form');
    await form.getByLabel('Dato').fill('03.01.2022');
    await form.getByLabel('Klokkeslæt').fill('10:00');
    await form.getByRole('button', { name: 'Planlæg' }).click();
    const refusal = page.locator('#schedule-result [role="alert"][data-codes~="scheduled_in_past"]');
    await refusal.waitFor();
    assert.deepEqual(requests, [400], 'the server refused it');
    const danish = await refusal.innerText();
    assert.match(danish, /^Videokonsultationen kan ikke planlægges:/);
    assert.match(danish, /En konsultation kan ikke planlægges i fortiden\./);
    assert.doesNotMatch(danish, ENGLISH, `no English in the Danish refusal: ${danish}`);
    assert.equal(await page.locator('#join-link').count(), 0, 'nothing was booked');
    await expectAccessibleAtEverySize(page, 'refusal in Danish');
    await screenshot(page, 'problems-refused-da');

    // --- English: the same refusal in English words. ---
    await page.getByRole('button', { name: 'Show the page in English' }).click();
    const englishForm = page.locator('#schedule-form');
    await englishForm.getByRole('button', { name: 'Schedule', exact: true }).waitFor();
    await englishForm.getByLabel('Date').fill('03.01.2022');
    await englishForm.getByLabel('Time').fill('10:00');
    await englishForm.getByRole('button', { name: 'Schedule', exact: true }).click();
    await page.waitForFunction(() => {
      const alert = document.querySelector('#schedule-result [role="alert"]');
      return alert && alert.innerText.startsWith('The video consultation cannot be scheduled');
    });
    assert.deepEqual(requests, [400, 400]);
    const english = await page.locator('#schedule-result [role="alert"]').innerText();
    assert.match(english, /a consultation cannot be scheduled in the past/);
    assert.doesNotMatch(english, /fortiden|planlægges|kan ikke/, `no Danish in the English refusal: ${english}`);
    await screenshot(page, 'problems-refused-en');

    // --- A problem without items (not from Konsult's server): never its
    // English detail on the Danish page; the English page may show it. ---
    const told = await page.evaluate(async () => {
      const { ApiError } = await import('/static/js/api.js');
      const { setLang } = await import('/static/js/i18n.js');
      const bare = { type: 'about:blank', title: 'Conflict', status: 409, detail: 'the consultation is cancelled' };
      const en = new ApiError(409, bare).reasons;
      setLang('da');
      const da = new ApiError(409, bare).reasons;
      const daMessage = new ApiError(409, bare).message;
      const known = new ApiError(409, { ...bare, type: 'urn:konsult:problem:last_admin' }).reasons;
      const noDanishItem = new ApiError(400, { errors: [{ code: 'x', da: '', en: 'english only' }] }).reasons;
      return { en, da, daMessage, known, noDanishItem };
    });
    assert.deepEqual(told.en, ['the consultation is cancelled']);
    assert.equal(told.da.length, 1);
    assert.match(told.da[0], /Opdater siden/);
    assert.doesNotMatch(told.da[0], ENGLISH, told.da[0]);
    assert.equal(told.daMessage, told.da[0], 'the error message is the Danish text too');
    assert.match(told.known[0], /sidste aktive administrator/);
    assert.doesNotMatch(told.noDanishItem[0], /english only/);

    // The two refusals are the browser's only complaints.
    assert.deepEqual(errors.filter((e) => !/status of 400/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(page, 'failure-problems').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await context.close();
  }
});
