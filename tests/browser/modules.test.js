// The web client's pure modules, in Node without a browser: Danish wall
// clock to RFC 3339 across daylight-saving changes, the Danish and English
// texts having the same keys and placeholders, and the reading of WebRTC
// statistics that the server's two-way media check depends on.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addDays, copenhagenDate, copenhagenTime, copenhagenToRfc3339 } from '../../web-client/static/js/time.js';
import { DA, EN } from '../../web-client/static/js/messages.js';
import { summarize } from '../../web-client/static/js/call.js';

test('Copenhagen wall-clock times become instants with the right offset', () => {
  assert.equal(copenhagenToRfc3339('2025-01-15', '10:00'), '2025-01-15T10:00:00+01:00');
  assert.equal(copenhagenToRfc3339('2025-07-01', '10:00'), '2025-07-01T10:00:00+02:00');
  // Spring forward (30 March 2025, 02:00 → 03:00) and fall back (26 October 2025).
  assert.equal(copenhagenToRfc3339('2025-03-30', '01:30'), '2025-03-30T01:30:00+01:00');
  assert.equal(copenhagenToRfc3339('2025-03-30', '03:30'), '2025-03-30T03:30:00+02:00');
  assert.equal(copenhagenToRfc3339('2025-10-26', '01:30'), '2025-10-26T01:30:00+02:00');
  assert.equal(copenhagenToRfc3339('2025-10-26', '04:00'), '2025-10-26T04:00:00+01:00');
  // Every instant maps back to the wall clock it came from.
  for (const [d, tm] of [['2025-03-29', '23:59'], ['2025-12-31', '23:30'], ['2026-06-15', '00:05']]) {
    const instant = new Date(copenhagenToRfc3339(d, tm));
    assert.equal(copenhagenDate(instant), d);
    assert.equal(copenhagenTime(instant), tm);
  }
  assert.equal(copenhagenToRfc3339('15-01-2025', '10:00'), null);
  assert.equal(copenhagenToRfc3339('2025-01-15', ''), null);
});

test('the Danish day follows Copenhagen, not UTC', () => {
  // 23:30 UTC on 31 December is already 1 January in Copenhagen.
  assert.equal(copenhagenDate(new Date('2025-12-31T23:30:00Z')), '2026-01-01');
  assert.equal(addDays('2025-03-31', 1), '2025-04-01');
  assert.equal(addDays('2024-03-01', -1), '2024-02-29');
});

test('Danish and English texts have the same keys and placeholders', () => {
  assert.deepEqual(Object.keys(EN).sort(), Object.keys(DA).sort());
  const holes = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
  for (const key of Object.keys(DA)) {
    assert.deepEqual(holes(EN[key]), holes(DA[key]), `placeholders of ${key}`);
    assert.ok(DA[key].trim() && EN[key].trim(), `${key} is not empty`);
  }
});

test('statistics: received bytes, frames and audio packets, and the selected local candidate type', () => {
  const report = new Map(
    [
      { id: 'v', type: 'inbound-rtp', kind: 'video', bytesReceived: 1000, packetsReceived: 10, packetsLost: 1, framesReceived: 30, framesDecoded: 29 },
      { id: 'a', type: 'inbound-rtp', kind: 'audio', bytesReceived: 500, packetsReceived: 50, packetsLost: 0 },
      { id: 't', type: 'transport', selectedCandidatePairId: 'p2' },
      { id: 'p1', type: 'candidate-pair', localCandidateId: 'l1', nominated: true, state: 'succeeded', currentRoundTripTime: 0.5 },
      { id: 'p2', type: 'candidate-pair', localCandidateId: 'l2', currentRoundTripTime: 0.012 },
      { id: 'l1', type: 'local-candidate', candidateType: 'host' },
      { id: 'l2', type: 'local-candidate', candidateType: 'relay' },
    ].map((s) => [s.id, s]),
  );
  const s = summarize(report);
  assert.equal(s.bytesReceived, 1500);
  assert.equal(s.framesReceived, 30);
  assert.equal(s.framesDecoded, 29);
  assert.equal(s.audioPacketsReceived, 50);
  assert.equal(s.packetsLost, 1);
  assert.equal(s.candidateType, 'relay', 'the transport names the selected pair');
  assert.equal(Math.round(s.rttMs), 12);
  // Without a transport entry, the nominated succeeded pair is used.
  report.delete('t');
  assert.equal(summarize(report).candidateType, 'host');
  assert.equal(summarize(new Map()).candidateType, null);
});

test('minutes to Copenhagen midnight follow the Danish day, not UTC', async () => {
  const { minutesToCopenhagenMidnight } = await import('./helpers/flows.js');
  // 22:50 UTC in winter is 23:50 in Copenhagen: 10 minutes left.
  assert.equal(minutesToCopenhagenMidnight(new Date('2026-11-25T22:50:00Z')), 10);
  // 21:50 UTC in summer is 23:50 in Copenhagen too.
  assert.equal(minutesToCopenhagenMidnight(new Date('2026-07-01T21:50:00Z')), 10);
  // Just after midnight a whole day is left.
  assert.equal(minutesToCopenhagenMidnight(new Date('2026-11-25T23:00:00Z')), 1440);
});
