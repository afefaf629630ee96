// Debian's Chromium through playwright-core (never a downloaded browser),
// with fake camera and microphone; helpers to read WebRTC statistics from
// a page, scan it with axe-core, and save screenshots.

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const SCREENSHOTS = path.resolve(here, '..', 'screenshots');

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

/**
 * Starts Chromium with CHROMIUM_FLAGS; `extraArgs` come after them (a later
 * switch of the same name wins, e.g.
 * `--use-fake-device-for-media-stream=device-count=2` for two cameras).
 */
export async function launch(extraArgs = []) {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_FLAGS, ...extraArgs], headless: true });
}

/**
 * Keeps every RTCPeerConnection a page makes in `window.__pcs`, so the
 * test can read getStats() the way the page's own code does. Runs before
 * the page's scripts; the page code is unchanged.
 */
const TRACK_PEER_CONNECTIONS = `(() => {
  const Original = window.RTCPeerConnection;
  if (!Original || window.__pcs) return;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
})();`;

/**
 * A browser context as a Danish user in Copenhagen, with camera and
 * microphone allowed. `ignoreHTTPSErrors` for a server with a test
 * certificate.
 */
export async function newContext(browser, { baseUrl, locale = 'da-DK', ignoreHTTPSErrors = false } = {}) {
  const context = await browser.newContext({
    baseURL: baseUrl,
    ignoreHTTPSErrors,
    locale,
    timezoneId: 'Europe/Copenhagen',
    viewport: { width: 1280, height: 900 },
    permissions: ['camera', 'microphone', 'clipboard-read', 'clipboard-write'],
    acceptDownloads: true,
  });
  await context.addInitScript(TRACK_PEER_CONNECTIONS);
  await context.addInitScript(RECORD_CSP_VIOLATIONS);
  return context;
}

/** Records Content-Security-Policy violations in `window.__csp`. */
const RECORD_CSP_VIOLATIONS = `(() => {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
  });
})();`;

/** The CSP violations the page has seen since it loaded. */
export async function cspViolations(page) {
  return page.evaluate(() => window.__csp || []);
}

/** Collects page errors and console errors, for the assertion messages. */
export function watchErrors(page, name) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${name} console: ${m.text()}`);
  });
  return errors;
}

/** Inbound media statistics of the page's live peer connection. */
export async function mediaStats(page) {
  return page.evaluate(async () => {
    const pc = [...(window.__pcs || [])].reverse().find((p) => p.connectionState !== 'closed');
    if (!pc) return null;
    const report = await pc.getStats();
    const out = {
      state: pc.connectionState,
      framesDecoded: 0,
      audioPackets: 0,
      audioEnergy: 0,
      localType: null,
      remoteType: null,
      ufrag: (/a=ice-ufrag:(\S+)/.exec(pc.localDescription?.sdp || '') || [])[1] || null,
    };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audioPackets += s.packetsReceived || 0;
        out.audioEnergy += s.totalAudioEnergy || 0;
      }
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        if (pair) {
          out.localType = report.get(pair.localCandidateId)?.candidateType || null;
          out.remoteType = report.get(pair.remoteCandidateId)?.candidateType || null;
        }
      }
    });
    return out;
  });
}

/** Waits until `fn()` returns a truthy value; returns it. */
export async function waitFor(fn, { timeout = 30000, interval = 250, message = 'condition' } = {}) {
  const until = Date.now() + timeout;
  let last;
  while (Date.now() < until) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
  throw new Error(`timed out waiting for ${message}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}

/**
 * Waits until the page decodes video and receives audio, with both
 * counters rising between two readings (media is flowing now, not only
 * earlier). Returns the last reading.
 */
export async function expectMediaFlowing(page, name, { timeout = 45000 } = {}) {
  const first = await waitFor(
    async () => {
      const s = await mediaStats(page);
      return s && s.state === 'connected' && s.framesDecoded > 0 && s.audioPackets > 0 ? s : null;
    },
    { timeout, message: `${name} to decode video and receive audio` },
  );
  return waitFor(
    async () => {
      const s = await mediaStats(page);
      return s && s.framesDecoded > first.framesDecoded + 5 && s.audioPackets > first.audioPackets + 5 && s.audioEnergy > 0 ? s : null;
    },
    { timeout, message: `${name}'s video and audio counters to rise` },
  );
}

/**
 * Waits until the server announced two-way media (`media_established`) on
 * the page: the evidence billing needs, after media flowed for the evidence
 * span (two seconds in tests).
 */
export async function expectEstablished(page, name, { timeout = 45000 } = {}) {
  await waitFor(async () => (await page.evaluate(() => document.body.dataset.media)) === 'established', {
    timeout,
    message: `${name}: media_established from the server`,
  });
}

/** Runs axe-core on the page; returns serious and critical violations. */
export async function axeSerious(page) {
  const hasAxe = await page.evaluate(() => typeof window.axe !== 'undefined');
  // Evaluated through the DevTools protocol: the page's CSP still forbids
  // inline script for the page itself.
  if (!hasAxe) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) }));
  });
}

/** Saves a full-page screenshot to tests/browser/screenshots/<name>.png. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/**
 * Puts the patient page's signaling socket under the test's control:
 * `drop()` takes the page offline and closes its socket (and the server's
 * side of it), and refuses new sockets until `restore()`.
 */
export async function controllableSignaling(page) {
  let offline = false;
  const open = new Set();
  // /ws, with or without ?room= (the join page and the dashboard add it).
  await page.routeWebSocket(/\/ws(\?[^/]*)?$/, (ws) => {
    if (offline) {
      ws.close({ code: 1001, reason: 'offline' });
      return;
    }
    const server = ws.connectToServer();
    const pair = { ws, server };
    open.add(pair);
    ws.onClose(() => open.delete(pair));
  });
  return {
    async drop() {
      offline = true;
      await page.context().setOffline(true);
      for (const { ws, server } of open) {
        await ws.close({ code: 1001, reason: 'network lost' });
        await server.close();
      }
      open.clear();
    },
    async restore() {
      offline = false;
      await page.context().setOffline(false);
    },
  };
}
