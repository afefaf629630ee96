// axe on every screen at the three sizes the clinic's people use: a phone
// with its browser bars (390×664), a small phone (320×568) and a desktop
// (1440×900). Zero serious or critical findings on each. (The call itself
// at these sizes is in incall.test.js and phone.test.js.)

import { after, before, test } from 'node:test';
import { launch, newContext } from './helpers/browser.js';
import {
  eligiblePatient,
  expectAccessibleAtEverySize,
  patientToWaitingRoom,
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

test('every screen has no serious or critical axe finding at 1440×900, 390×664 and 320×568', { timeout: 300000 }, async () => {
  const tc = await newContext(browser, { baseUrl: server.baseUrl });
  const pc = await newContext(browser, { baseUrl: server.baseUrl });
  try {
    const tp = await tc.newPage();
    // The dashboard.
    await tp.goto(server.setupLink);
    await tp.getByRole('heading', { name: 'Opret klinikken' }).waitFor();
    await expectAccessibleAtEverySize(tp, 'setup');
    await setupClinic(tp, server.setupLink);
    await expectAccessibleAtEverySize(tp, 'day view');
    await eligiblePatient(tp, 'Alma Axe');
    const booked = await schedule(tp, { relayOnly: false });
    await expectAccessibleAtEverySize(tp, 'patient page with a booking');
    await tp.getByRole('navigation').getByRole('link', { name: 'Patienter' }).click();
    await tp.getByRole('heading', { name: 'Patienter', level: 1 }).waitFor();
    await expectAccessibleAtEverySize(tp, 'patient list');
    await tp.getByRole('navigation').getByRole('link', { name: 'Afregning' }).click();
    await tp.getByRole('heading', { name: /Afregning/, level: 1 }).waitFor();
    await expectAccessibleAtEverySize(tp, 'billing');
    await tp.getByRole('navigation').getByRole('link', { name: 'Administration' }).click();
    await tp.getByRole('heading', { name: 'Administration', level: 1 }).waitFor();
    await tp.locator('#fee-form').waitFor();
    await expectAccessibleAtEverySize(tp, 'administration');
    await tp.getByRole('navigation').getByRole('link', { name: 'Min konto' }).click();
    await tp.getByRole('heading', { name: 'Min konto', level: 1 }).waitFor();
    await expectAccessibleAtEverySize(tp, 'my account');
    await therapistOpens(tp, booked.consultationId);
    await expectAccessibleAtEverySize(tp, 'consultation page, nobody waiting');

    // The patient.
    const pp = await pc.newPage();
    await pp.goto(booked.joinUrl);
    await pp.getByRole('heading', { name: 'Din videokonsultation' }).waitFor();
    await expectAccessibleAtEverySize(pp, 'patient first screen');
    await pp.getByRole('button', { name: 'Start' }).click();
    await pp.getByRole('heading', { name: 'Tjek af kamera og lyd' }).waitFor();
    await pp.locator('#camera-status.ok').waitFor({ timeout: 20000 });
    await expectAccessibleAtEverySize(pp, 'patient device check');
    await patientToWaitingRoom(pp, booked.joinUrl);
    await expectAccessibleAtEverySize(pp, 'patient waiting room');
    await tp.locator('#waiting-status').getByText('Patienten venter i venteværelset').waitFor({ timeout: 30000 });
    await expectAccessibleAtEverySize(tp, 'consultation page, patient waiting');
    await pp.goto('/join/no-such-link');
    await pp.getByRole('heading', { name: /Linket/ }).first().waitFor();
    await expectAccessibleAtEverySize(pp, 'unknown link');
    await pp.goto('/proeve');
    await pp.getByRole('button', { name: /Start/ }).first().waitFor();
    await expectAccessibleAtEverySize(pp, 'rehearsal');
    await tp.goto('/app');
    await tp.getByRole('button', { name: 'Log ud' }).click();
    await tp.getByRole('heading', { name: 'Log ind' }).waitFor();
    await expectAccessibleAtEverySize(tp, 'login');
  } catch (err) {
    err.message += `\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});
