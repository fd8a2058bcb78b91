// Scenario 3, payment load: users with passes (admitted in setup) hold a seat of their own
// and pay for it against the gateway simulator, which declines 5 % of authorizations; a
// declined user retries under a new Idempotency-Key, as a user would. The bench's users come
// with their pass and hold. The verifier then proves every balance equals its ledger and
// every sold seat its payment.
//   smoke  2,000 users, 50 VUs, at most 45 s
//   full   the seeds' 5-minute soak: 50,000 users (every seat of the large seed), 100 VUs
//   bench  issue 6's measurement: 64 VUs only paying, for the 10,000 holds that
//          loadtests/prepare/payment.js made in a run before this one (PREPARED names them)
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';
import { Counter, Rate } from 'k6/metrics';
import { admit, byProfile, hold, measureActive, openQueue, pay, PROFILE, ready, seatOf, withCommonOptions } from '../lib.js';

// The bench measures the payment alone, so its holds exist before its clock starts; one
// copy serves every VU.
const HOLDS = PROFILE === 'bench' ? new SharedArray('holds', () => {
  if (!__ENV.PREPARED) {
    throw new Error('the bench pays for the holds of loadtests/prepare/payment.js: PREPARED must name its file (loadtests/run does both)');
  }
  return JSON.parse(open(__ENV.PREPARED));
}) : null;

const { users, vus, maxDuration } = byProfile({
  smoke: { users: 2000, vus: 50, maxDuration: '45s' },
  full: { users: 50000, vus: 100, maxDuration: '5m' },
  bench: { users: HOLDS && HOLDS.length, vus: 64, maxDuration: '5m' },
});

const succeeded = new Counter('payments_succeeded');
const declined = new Rate('payment_attempt_declined');
const completed = new Rate('payment_completed');

// The seeds: P95 < 3 s, P99 < 10 s, > 95 % of users paid, > 500 payments/s (full);
// issue 6's bar for the bench: >= 1,000 payments/s with P95 < 100 ms.
const THRESHOLDS = {
  smoke: { 'http_req_duration{name:pay}': ['p(95)<3000', 'p(99)<10000'] },
  full: { 'http_req_duration{name:pay}': ['p(95)<3000', 'p(99)<10000'], payments_succeeded: ['rate>500'] },
  bench: { 'http_req_duration{name:pay}': ['p(95)<100'], payments_succeeded: ['rate>=1000'] },
};

export const options = withCommonOptions({
  scenarios: {
    pay: { executor: 'shared-iterations', vus, iterations: users, maxDuration },
  },
  thresholds: Object.assign({
    'http_req_failed{name:pay}': ['rate<0.01'],
    payment_completed: ['rate>0.95'],
    // The simulator declines 5 %; many more means payments fail for another reason.
    payment_attempt_declined: ['rate<0.1'],
    checks: ['rate>0.99'],
  }, byProfile(THRESHOLDS)),
}, HOLDS ? ['pay'] : ['reserve', 'pay']);

export function setup() {
  const passes = HOLDS ? null : admit(openQueue('pay'), Array.from({ length: users }, (_, i) => i + 1));
  return ready({ passes, run: Date.now() });
}

export default function (data) {
  measureActive(data);
  const i = exec.scenario.iterationInTest;
  const prepared = HOLDS && HOLDS[i];
  const pass = prepared ? prepared.pass : data.passes[i];
  let reservation = prepared && prepared.reservation;
  if (!reservation) {
    const { schedule, seat } = seatOf(i);
    const held = hold(pass, schedule, [seat]);
    if (!check(held, { 'the own seat is held': (r) => r.status === 201 })) {
      completed.add(false);
      return;
    }
    reservation = held.json('reservationId');
  }
  const { res, declines } = pay(pass, reservation, `load-${data.run}-${i}`);
  for (let d = 0; d < declines; d++) {
    declined.add(true);
  }
  const paid = check(res, { 'the payment completes': (r) => r.status === 201 });
  if (paid) {
    declined.add(false);
    succeeded.add(1);
  }
  completed.add(paid);
}
