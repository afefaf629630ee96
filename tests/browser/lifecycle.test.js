// Leaving, dropping and ending as people expect, in two browser contexts
// against a server with short grace periods (3 s): both pages show the
// truth at each step.
//
// 1. The patient leaves by mistake and goes back from the same link; the
//    therapist sees "patient left" with the choice to wait, and admits the
//    patient again.
// 2. The patient's page dies (longer than the grace period): the
//    therapist's page stops saying "both ways" and shows a banner within
//    3 s, then "patient left"; the patient opens the link again and is
//    admitted again.
// 3. The therapist ends the consultation while the patient is
//    reconnecting: the patient's page says the consultation is over.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  controllableSignaling,
  expectEstablished,
  expectMediaFlowing,
  launch,
  newContext,
  screenshot,
  waitFor,
  watchErrors,
} from './helpers/browser.js';
import {
  admit,
  confirmSafety,
  createPatient,
  expectAccessible,
  expectAccessibleAtEverySize,
  openCourse,
  patientToWaitingRoom,
  recordAssessment,
  recordVisit,
  schedule,
  setupClinic,
  therapistOpens,
} from './helpers/flows.js';
import { startServer } from './helpers/server.js';

let server;
let browser;
let clinicReady = false;

before(async () => {
  server = await startServer({
    env: {
      KONSULT_SIGNALING__RESUME_GRACE_SECONDS: '3',
      KONSULT_SIGNALING__HEARTBEAT_TIMEOUT_SECONDS: '4',
    },
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const bodyData = (page, key) => page.evaluate((k) => document.body.dataset[k] || '', key);

/**
 * A therapist and a patient in a call with media both ways. `control`: the
 * patient's signaling socket can be dropped (`signaling`).
 */
async function inCall(name, { control = false } = {}) {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  const pp = await pc.newPage();
  const errors = [...watchErrors(tp, 'therapist'), ...watchErrors(pp, 'patient')];
  if (!clinicReady) {
    await setupClinic(tp, server.setupLink);
    clinicReady = true;
  } else {
    await tp.goto('/app');
    await tp.getByLabel('E-mail').fill('mette@klinik.example');
    await tp.getByLabel('Adgangskode').fill('korrekt-hest-batteri');
    await tp.getByRole('button', { name: 'Log ind' }).click();
    await tp.getByRole('heading', { name: /^Konsultationer/ }).waitFor();
  }
  await createPatient(tp, { name });
  await recordVisit(tp);
  await openCourse(tp);
  await recordAssessment(tp);
  const { joinUrl, consultationId } = await schedule(tp, { relayOnly: false });
  await therapistOpens(tp, consultationId);
  const signaling = control ? await controllableSignaling(pp) : null;
  await patientToWaitingRoom(pp, joinUrl);
  await admit(tp);
  await confirmSafety(tp);
  await Promise.all([expectMediaFlowing(tp, 'therapist'), expectMediaFlowing(pp, 'patient')]);
  await Promise.all([expectEstablished(tp, 'therapist'), expectEstablished(pp, 'patient')]);
  return { tc, pc, tp, pp, errors, joinUrl, consultationId, signaling };
}

async function fail(err, { tp, pp, errors }, name) {
  await screenshot(tp, `failure-${name}-therapist`).catch(() => {});
  await screenshot(pp, `failure-${name}-patient`).catch(() => {});
  err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
  throw err;
}

test('a patient who leaves by mistake goes back from the same link', { timeout: 180000 }, async () => {
  const s = await inCall('Karen Tilbage');
  const { tc, pc, tp, pp } = s;
  try {
    await pp.getByRole('button', { name: 'Forlad samtalen' }).click();
    await pp.getByRole('button', { name: 'Ja, forlad' }).click();
    await pp.getByRole('heading', { name: 'Du har forladt samtalen' }).waitFor();
    // The therapist is told and may wait or end.
    await tp.locator('#patient-left:not([hidden])').waitFor();
    assert.equal(await tp.locator('#btn-end').isDisabled(), false, 'the consultation can be ended');
    await expectAccessibleAtEverySize(tp, 'therapist: patient left');
    await tp.getByRole('button', { name: 'Vent på patienten' }).click();
    await tp.locator('#waiting-status').filter({ hasText: 'Venter på, at patienten kommer tilbage' }).waitFor();
    // Back from the same link, into the waiting room, admitted again.
    await pp.getByRole('button', { name: 'Gå tilbage til samtalen' }).click();
    await pp.getByRole('heading', { name: 'Du er i venteværelset' }).waitFor();
    await tp.getByRole('button', { name: 'Luk patienten ind' }).click({ timeout: 30000 });
    await Promise.all([expectMediaFlowing(tp, 'therapist (again)'), expectMediaFlowing(pp, 'patient (again)')]);
    await screenshot(pp, 'patient-back-in-call');
    // The therapist ends: the patient hears it.
    await tp.locator('#btn-end').click();
    await tp.locator('#end-yes').click();
    await pp.getByRole('heading', { name: 'Samtalen er slut' }).waitFor({ timeout: 20000 });
    await tp.locator('#journal-form').waitFor({ timeout: 20000 });
  } catch (err) {
    await fail(err, s, 'rejoin');
  } finally {
    await tc.close();
    await pc.close();
  }
});

test('a drop longer than the grace period: the therapist sees the truth, the patient comes back', { timeout: 180000 }, async () => {
  const s = await inCall('Jens Tabt');
  const { tc, pc, tp, joinUrl } = s;
  let { pp } = s;
  try {
    assert.equal(await bodyData(tp, 'mediaFlowing'), 'true');
    await tp.locator('#quality .status.ok, section .status.ok').first().waitFor();
    // The patient's page dies: no close frame from a leave, media stops.
    const dropped = Date.now();
    await pp.close({ runBeforeUnload: false });
    await waitFor(async () => (await bodyData(tp, 'mediaFlowing')) === 'false', { timeout: 3000, message: '"both ways" to go within 3 s' });
    await tp.locator('#call-banner:not([hidden])').waitFor({ timeout: 3000 - (Date.now() - dropped) });
    const bannerAfter = Date.now() - dropped;
    console.log(`# therapist's banner ${bannerAfter} ms after the patient's page died`);
    assert.ok(bannerAfter <= 3000, `banner after ${bannerAfter} ms`);
    assert.equal(await tp.locator('text=Lyd og billede går begge veje.').isVisible(), false, 'no green "both ways" without media');
    await screenshot(tp, 'app-patient-dropped');
    // Past the grace period: "patient left", with the choice.
    await tp.locator('#patient-left:not([hidden])').waitFor({ timeout: 20000 });
    // The patient opens the link again and is admitted again.
    pp = await pc.newPage();
    await patientToWaitingRoom(pp, joinUrl);
    await tp.getByRole('button', { name: 'Luk patienten ind' }).click({ timeout: 30000 });
    await Promise.all([expectMediaFlowing(tp, 'therapist (back)'), expectMediaFlowing(pp, 'patient (back)')]);
    await waitFor(async () => (await bodyData(tp, 'mediaFlowing')) === 'true', { message: 'media flowing again' });
    await tp.locator('#btn-end').click();
    await tp.locator('#end-yes').click();
    await pp.getByRole('heading', { name: 'Samtalen er slut' }).waitFor({ timeout: 20000 });
  } catch (err) {
    await fail(err, { ...s, pp }, 'drop');
  } finally {
    await tc.close();
    await pc.close();
  }
});

test('the therapist ends the consultation while the patient is reconnecting', { timeout: 180000 }, async () => {
  const s = await inCall('Ole Genforbind', { control: true });
  const { tc, pc, tp, pp, signaling } = s;
  try {
    await signaling.drop();
    await waitFor(async () => (await bodyData(pp, 'reconnecting')) === 'true', { message: 'the patient reconnecting' });
    await tp.locator('#btn-end').click();
    await tp.locator('#end-yes').click();
    await tp.locator('#journal-form').waitFor({ timeout: 20000 });
    await signaling.restore();
    await pp.getByRole('heading', { name: 'Samtalen er slut' }).waitFor({ timeout: 30000 });
    // The clinic has set no phone number: the end page still names it.
    assert.equal(await pp.locator('#ask-clinic').innerText(), 'Har du spørgsmål, så kontakt Fysioklinikken Aarhus.');
    await expectAccessibleAtEverySize(pp, 'patient: ended while reconnecting');
    await screenshot(pp, 'patient-ended-while-reconnecting');
  } catch (err) {
    await fail(err, s, 'end-reconnecting');
  } finally {
    await tc.close();
    await pc.close();
  }
});
