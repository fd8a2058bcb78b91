// Many requests of one component instance using MySQL at once: 64 VUs without pause on
// GET /health (a MySQL and a Redis connection opened and closed per request), then 64 VUs
// holding random seats of the large seed with passes made in setup. Spin 4.1's outbound
// MySQL hangs an instance whose connection closes while another of its requests opens one,
// which the components avoid (README, "Under real Spin"). The conformance run (e2e/spin/run) runs this under Spin and checks that MySQL's
// connection count is back to where it was; any request that hangs fails its 15 s timeout.
import http from 'k6/http';
import { check } from 'k6';
import { admit, authorized, BASE_URL, byProfile, openQueue, seatOf, withCommonOptions } from '../lib.js';

const HOLDERS = byProfile({ smoke: 3000, full: 20000 });

export const options = withCommonOptions({
  scenarios: {
    health: { executor: 'constant-vus', exec: 'health', vus: 64, duration: byProfile({ smoke: '20s', full: '120s' }) },
    holds: {
      executor: 'shared-iterations', exec: 'holds', vus: 64, iterations: HOLDERS,
      startTime: byProfile({ smoke: '21s', full: '121s' }), maxDuration: '300s',
    },
  },
  thresholds: {
    checks: ['rate==1'],
    'http_req_duration{name:health}': ['max<15000'],
    'http_req_duration{name:hold}': ['max<15000'],
  },
}, ['health', 'hold']);

export function setup() {
  return admit(openQueue('concurrency'), Array.from({ length: HOLDERS }, (_, i) => i + 1));
}

export function health() {
  const response = http.get(`${BASE_URL}/health`, { timeout: '15s', tags: { name: 'health' } });
  check(response, { 'health answers 200': (r) => r.status === 200 });
}

export function holds(passes) {
  const holder = Math.floor(Math.random() * passes.length);
  const { schedule, seat } = seatOf(holder);
  const response = http.post(`${BASE_URL}/api/reservations`, JSON.stringify({ scheduleId: schedule, seatIds: [seat] }),
    authorized(passes[holder], { timeout: '15s', tags: { name: 'hold' }, responseCallback: http.expectedStatuses(201, 409) }));
  check(response, { 'a hold is made or refused cleanly': (r) => r.status === 201 || r.status === 409 });
}
