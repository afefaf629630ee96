// TURN over TLS on the HTTPS port (issue 13): the server serves HTTPS with
// a certificate that also covers the relay's name (`turn.tls_host` =
// turn.localhost, which Chromium resolves to loopback), and its embedded
// relay serves no UDP. The patient's network lets only HTTPS out (an init
// script keeps only the `turns:` URL, as a firewall that lets nothing but
// port 443 through would): the connection check says the relay works over
// TLS only, the relay-only call connects, and the patient's selected pair
// is a relay candidate allocated over TLS; the therapist, free to use TCP,
// is relayed too.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { expectMediaFlowing, launch, newContext, screenshot, watchErrors } from './helpers/browser.js';
import {
  admit,
  confirmSafety,
  createPatient,
  openCourse,
  patientToWaitingRoom,
  recordAssessment,
  recordVisit,
  schedule,
  setupClinic,
  therapistOpens,
} from './helpers/flows.js';
import { startServer } from './helpers/server.js';

const RELAY_HOST = 'turn.localhost';

let server;
let browser;
let certDir;

/** A self-signed certificate for the dashboard (127.0.0.1, localhost) and the relay's name. */
function makeCertificate(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const made = spawnSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
      '-addext', `subjectAltName=DNS:localhost,DNS:${RELAY_HOST},IP:127.0.0.1`,
    ],
    { encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(`openssl could not make a test certificate: ${made.stderr || made.error}`);
  return { cert, key };
}

/** Keeps only `turns:` URLs in every peer connection the page makes: a network that lets only HTTPS out. */
const ONLY_HTTPS_OUT = `(() => {
  const Inner = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Inner {
    constructor(config = {}, ...rest) {
      const iceServers = (config.iceServers || [])
        .map((s) => ({ ...s, urls: [].concat(s.urls).filter((u) => u.startsWith('turns:')) }))
        .filter((s) => s.urls.length);
      super({ ...config, iceServers }, ...rest);
    }
  };
})();`;

/** The selected pair's local candidate of the page's live peer connection: type and relay protocol. */
async function selectedLocal(page) {
  return page.evaluate(async () => {
    const pc = [...(window.__pcs || [])].reverse().find((p) => p.connectionState === 'connected');
    if (!pc) return null;
    const report = await pc.getStats();
    for (const s of report.values()) {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
      const pair = report.get(s.selectedCandidatePairId);
      const local = pair && report.get(pair.localCandidateId);
      if (local) return { type: local.candidateType, relayProtocol: local.relayProtocol ?? null };
    }
    return null;
  });
}

before(async () => {
  certDir = mkdtempSync(path.join(tmpdir(), 'konsult-turn-tls-'));
  const { cert, key } = makeCertificate(certDir);
  server = await startServer({
    env: {
      KONSULT_TLS__CERT: cert,
      KONSULT_TLS__KEY: key,
      KONSULT_TURN__TLS_HOST: RELAY_HOST,
      KONSULT_TURN__UDP: 'false',
    },
  });
  // The test certificate is trusted by nobody: pages and TURN over TLS
  // alike accept it.
  browser = await launch(['--ignore-certificate-errors']);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

test('a patient whose network lets only HTTPS out is relayed over TURN/TLS on the HTTPS port', { timeout: 180000 }, async () => {
  assert.ok(server.baseUrl.startsWith('https://'), server.baseUrl);
  const tc = await newContext(browser, { baseUrl: server.baseUrl, ignoreHTTPSErrors: true });
  const pc = await newContext(browser, { baseUrl: server.baseUrl, ignoreHTTPSErrors: true });
  await pc.addInitScript(ONLY_HTTPS_OUT);
  const tp = await tc.newPage();
  const pp = await pc.newPage();
  const errors = [...watchErrors(tp, 'therapist'), ...watchErrors(pp, 'patient')];
  try {
    await setupClinic(tp, server.setupLink);
    await createPatient(tp, { name: 'Tove Firewall' });
    await recordVisit(tp);
    await openCourse(tp);
    await recordAssessment(tp);
    const { joinUrl, consultationId } = await schedule(tp, { relayOnly: true });

    // What the server hands out: no UDP, TCP on the relay's port, TLS on
    // the HTTPS port under the relay's name.
    const token = new URL(joinUrl).pathname.split('/').pop();
    const ice = await (await pp.request.get(`${server.baseUrl}/api/join/${token}/ice-servers`)).json();
    const urls = ice.ice_servers.flatMap((s) => s.urls);
    const httpsPort = new URL(server.baseUrl).port;
    assert.equal(urls.length, 2, JSON.stringify(urls));
    assert.match(urls[0], /^turn:127\.0\.0\.1:\d+\?transport=tcp$/);
    assert.equal(urls[1], `turns:${RELAY_HOST}:${httpsPort}?transport=tcp`);

    await therapistOpens(tp, consultationId);
    await patientToWaitingRoom(pp, joinUrl);
    // The connection check told the patient it works, over TLS, and that
    // the faster way is blocked.
    const net = pp.locator('#net-status');
    assert.equal(await net.getAttribute('data-transports'), 'tls');
    assert.equal(
      (await net.textContent()).replace(/^✓\s*/, ''),
      'Forbindelsen til videoserveren virker. Den virker over TLS (samme vej som sikre hjemmesider).',
    );
    assert.match(await pp.locator('#net-help').textContent(), /spærrer den hurtigste vej \(UDP\)/);

    await admit(tp);
    await confirmSafety(tp);
    const [t, p] = await Promise.all([expectMediaFlowing(tp, 'therapist'), expectMediaFlowing(pp, 'patient')]);
    assert.equal(p.localType, 'relay', 'patient: local candidate of the selected pair');
    assert.equal(p.remoteType, 'relay', 'patient: remote candidate of the selected pair');
    assert.equal(t.localType, 'relay', 'therapist: local candidate of the selected pair');
    const patient = await selectedLocal(pp);
    assert.deepEqual(patient, { type: 'relay', relayProtocol: 'tls' }, 'patient relayed over TURN/TLS');
    const therapist = await selectedLocal(tp);
    assert.equal(therapist.type, 'relay');
    assert.ok(['tcp', 'tls'].includes(therapist.relayProtocol), `therapist over ${therapist.relayProtocol}, never UDP`);
    await screenshot(tp, 'app-call-turn-tls');
    assert.deepEqual(errors.filter((e) => !/net::/.test(e)), [], 'no script errors');
  } catch (err) {
    await screenshot(tp, 'failure-turn-tls-therapist').catch(() => {});
    await screenshot(pp, 'failure-turn-tls-patient').catch(() => {});
    err.message += `\n\npage errors:\n${errors.join('\n')}\n\nserver log (tail):\n${server.logs().slice(-3000)}`;
    throw err;
  } finally {
    await tc.close();
    await pc.close();
  }
});
