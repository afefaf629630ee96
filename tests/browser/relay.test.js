// The consultation in relay-only mode: the selected candidate pair is of
// type relay on both sides (TURN through the embedded relay), the
// dashboard says "Via relay", media flows both ways; the patient leaves
// (after a confirmation) and could come back, the therapist ends the
// consultation, and it is billed after the journal note on evidence the
// relay observed.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { expectEstablished, expectMediaFlowing, launch, newContext, screenshot, waitFor, watchErrors } from './helpers/browser.js';
import {
  admit,
  confirmSafety,
  copenhagenDate,
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
  writeJournal,
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

test('a relay-only consultation uses the relay on both sides', { timeout: 180000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  const tp = await tc.newPage();
  const pp = await pc.newPage();
  const errors = [...watchErrors(tp, 'therapist'), ...watchErrors(pp, 'patient')];
  try {
    await setupClinic(tp, server.setupLink);
    await createPatient(tp, { name: 'Birthe Relay' });
    await recordVisit(tp);
    await openCourse(tp);
    await recordAssessment(tp);
    const { joinUrl, consultationId } = await schedule(tp, { relayOnly: true });
    await therapistOpens(tp, consultationId);
    await patientToWaitingRoom(pp, joinUrl);
    await admit(tp);
    await confirmSafety(tp);
    const [t, p] = await Promise.all([expectMediaFlowing(tp, 'therapist'), expectMediaFlowing(pp, 'patient')]);
    await Promise.all([expectEstablished(tp, 'therapist'), expectEstablished(pp, 'patient')]);
    assert.equal(t.localType, 'relay', 'therapist: local candidate of the selected pair');
    assert.equal(p.localType, 'relay', 'patient: local candidate of the selected pair');
    assert.equal(t.remoteType, 'relay', 'therapist: remote candidate of the selected pair');
    assert.equal(p.remoteType, 'relay', 'patient: remote candidate of the selected pair');
    await waitFor(async () => (await tp.locator('#q-path').getAttribute('data-path')) === 'relay', { message: '"Via relay" on the dashboard' });
    assert.equal(await tp.locator('#q-path').innerText(), 'Via relay');
    await screenshot(tp, 'app-call-relay');

    // The patient leaves: a confirmation first ("no" keeps the call); the
    // consultation goes on (the patient could come back), and the therapist
    // ends it.
    await pp.getByRole('button', { name: 'Forlad samtalen' }).click();
    await pp.getByRole('button', { name: 'Nej, bliv' }).click();
    await pp.locator('#leave-confirm').waitFor({ state: 'hidden' });
    await expectMediaFlowing(pp, 'patient (stayed)');
    await pp.getByRole('button', { name: 'Forlad samtalen' }).click();
    await expectAccessibleAtEverySize(pp, 'leave confirmation');
    await screenshot(pp, 'patient-leave-confirm');
    await pp.getByRole('button', { name: 'Ja, forlad' }).click();
    await pp.getByRole('heading', { name: 'Du har forladt samtalen' }).waitFor();
    assert.equal(await pp.getByRole('button', { name: 'Gå tilbage til samtalen' }).count(), 1, 'a way back while the consultation goes on');
    await expectAccessibleAtEverySize(pp, 'patient left the call');
    await tp.locator('#patient-left:not([hidden])').waitFor();
    await expectAccessibleAtEverySize(tp, 'therapist: the patient left');
    await screenshot(tp, 'app-patient-left');
    await tp.getByRole('button', { name: 'Afslut konsultationen' }).click();
    const result = await writeJournal(tp);
    assert.equal(await result.getAttribute('data-billable'), 'true');
    assert.equal(await tp.locator('#bill-fee').innerText(), '319,83 kr');
    // The line rests on media the relay observed.
    const day = copenhagenDate();
    const page = await tp.evaluate(async (d) => (await fetch(`/api/billing?from=${d}&to=${d}`)).json(), day);
    assert.equal(page.lines[0].evidence, 'relay_observed', JSON.stringify(page));
    assert.deepEqual(errors.filter((e) => !/net::/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(tp, 'failure-relay-therapist').catch(() => {});
    await screenshot(pp, 'failure-relay-patient').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});
