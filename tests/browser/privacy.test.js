// Privacy in the pages: the patient's join page shows the clinic's privacy
// notice (GDPR art. 13) in Danish and English on every screen, also for a
// link that does not work; the clinic sets its contact in the
// administration; a patient's page shows who has accessed the record
// (sundhedsloven § 42 a). Each page is scanned with axe.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newContext, screenshot, watchErrors } from './helpers/browser.js';
import {
  ADMIN,
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

/** Opens the footer's privacy notice and returns its text. */
async function openNotice(page, summaryName) {
  const summary = page.locator('#privacy-open');
  await summary.filter({ hasText: summaryName }).waitFor();
  if (!(await page.locator('#privacy-details').evaluate((d) => d.open))) await summary.click();
  await page.locator('#privacy-body h2').waitFor();
  return page.locator('#privacy-body').innerText();
}

test('the join page shows the privacy notice in Danish and English', { timeout: 180000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  const pp = await pc.newPage();
  const errors = [...watchErrors(tp, 'therapist'), ...watchErrors(pp, 'patient')];
  try {
    await setupClinic(tp, server.setupLink, { clinic: 'Fysioklinikken Aarhus' });
    await createPatient(tp, { name: 'Pia Privat' });
    await recordVisit(tp);
    await openCourse(tp);
    await recordAssessment(tp);
    const { joinUrl } = await schedule(tp);

    // The first screen: the short notice is visible, the whole notice one click away.
    await pp.goto(joinUrl);
    await pp.getByRole('heading', { name: 'Din videokonsultation' }).waitFor();
    await pp.locator('#privacy-summary').filter({ hasText: 'Samtalen bliver ikke optaget. Klinikken er ansvarlig for dine oplysninger.' }).waitFor();
    const da = await openNotice(pp, 'Privatliv: sådan behandler vi dine oplysninger');
    for (const text of [
      'Sådan behandler vi dine oplysninger',
      'Fysioklinikken Aarhus er dataansvarlig',
      'Hvorfor',
      'Lyd og video bliver ikke optaget eller gemt',
      'Din IP-adresse',
      'Journalnotatet gemmes i 5 år efter det seneste notat',
      'Du kan få en kopi af dine oplysninger',
      'Kontakt',
    ]) {
      assert.ok(da.includes(text), `${text} missing from:\n${da}`);
    }
    await expectAccessible(pp, 'privacy notice (Danish)');
    await screenshot(pp, 'patient-privacy-da');

    // In English, on the same screen.
    await pp.getByRole('button', { name: 'Show the page in English' }).click();
    const en = await openNotice(pp, 'Privacy: how we handle your information');
    for (const text of ['How we handle your information', 'Fysioklinikken Aarhus is the data controller', 'Sound and video are not recorded or kept', '5 years after the latest note']) {
      assert.ok(en.includes(text), `${text} missing from:\n${en}`);
    }
    assert.equal(await pp.locator('#privacy-summary').innerText(), 'The consultation is not recorded. The clinic is responsible for your information.');
    await expectAccessible(pp, 'privacy notice (English)');
    await screenshot(pp, 'patient-privacy-en');
    await pp.getByRole('button', { name: 'Vis siden på dansk' }).click();

    // The clinic adds its contact; the patient sees it.
    await tp.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
    const card = tp.locator('#privacy-notice');
    await card.getByLabel('Kontakt ved spørgsmål om personoplysninger').fill('Vestergade 12, 8000 Aarhus C, tlf. 86 12 34 56');
    await card.getByRole('button', { name: 'Gem privatlivsoplysning' }).click();
    await card.getByText('Gemt.').waitFor();
    await expectAccessible(tp, 'administration with privacy and records');
    await screenshot(tp, 'app-admin-privacy');
    await pp.reload();
    const withContact = await openNotice(pp, 'Privatliv');
    assert.ok(withContact.includes('86 12 34 56'), withContact);

    // Also a link that does not work shows the default notice.
    await pp.goto('/join/ikke-et-rigtigt-link');
    await pp.getByRole('heading', { name: 'Linket virker ikke' }).waitFor();
    const unknown = await openNotice(pp, 'Privatliv');
    assert.ok(unknown.includes('Den klinik, der har sendt dig linket, er dataansvarlig'), unknown);
    await expectAccessible(pp, 'privacy notice on an unknown link');

    // The patient's page in the dashboard: who has accessed the record.
    await tp.getByRole('navigation').getByRole('link', { name: 'Patienter' }).click();
    await tp.locator('#patient-list').getByRole('link', { name: 'Pia Privat' }).click();
    await tp.getByRole('heading', { name: 'Pia Privat', level: 1 }).waitFor();
    await tp.getByRole('button', { name: 'Vis adgangslog' }).click();
    const created = tp.locator('#access-log tr[data-action="patient.create"]');
    await created.waitFor();
    assert.match(await created.innerText(), new RegExp(`${ADMIN.name}\\s+Klinikadministrator\\s+Oprettede patienten`));
    await tp.locator('#access-log tr[data-action="consultation.read"]', { hasText: 'Patienten selv (via mødelinket)' }).first().waitFor();
    await tp.locator('#history').getByText('Oplysningerne er ikke blevet rettet.').waitFor();
    await expectAccessible(tp, 'patient page with access log');
    await screenshot(tp, 'app-patient-access-log');

    assert.deepEqual(errors.filter((e) => !/status of 4\d\d/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(tp, 'failure-privacy-therapist').catch(() => {});
    await screenshot(pp, 'failure-privacy-patient').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});
