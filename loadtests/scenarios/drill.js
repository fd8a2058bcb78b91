// Fault drills: a steady stream of buyers (token, pass, hold their own seat, pay) and of
// browsers (seat maps) while loadtests/run takes one dependency away (FAULT: redis, mysql,
// broker or bridge) for 20 s, FAULT_AT seconds after the start. A request that fails is
// expected to fail cleanly, as a JSON 503; anything else (a 500, a dropped connection) is
// `drill_unexpected`. `failed_at` holds each failure's wall-clock time, so the report can
// tell how long after the dependency came back the last one happened (the recovery time);
// the verifier afterwards proves the outage lost and duplicated nothing.
//   smoke  10 buyers/s and 50 reads/s for 50 s, the fault from second 10 to 30
//   full   20 buyers/s and 200 reads/s for 90 s, the fault from second 30 to 50
import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { authorized, BASE_URL, byProfile, getJson, hold, measureActive, named, openQueue, pay, postJson, ready, seatOf, SEED, withCommonOptions } from '../lib.js';

const { buyers, reads, seconds } = byProfile({
  smoke: { buyers: 10, reads: 50, seconds: 50 },
  full: { buyers: 20, reads: 200, seconds: 90 },
});

const failures = new Counter('drill_failures');
const failedAt = new Trend('failed_at');
const unexpected = new Counter('drill_unexpected');
const bought = new Counter('drill_purchases');

function steady(rate, execName) {
  return {
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration: `${seconds}s`,
    preAllocatedVUs: rate * 2,
    maxVUs: rate * 40,
    exec: execName,
  };
}

export const options = withCommonOptions({
  scenarios: { buyers: steady(buyers, 'buy'), browsers: steady(reads, 'browse') },
  thresholds: {
    drill_unexpected: ['count==0'],
    drill_purchases: ['count>0'],
  },
  // Failures are the point here, so the seeds' per-request error bars do not apply.
});

export function setup() {
  return ready({ queue: openQueue('drill'), run: Date.now() });
}

/// Whether `res` is one of `expected`; a failure is timed, and one that is not a clean 503
/// is counted as unexpected.
function outcome(res, expected) {
  if (res && expected.includes(res.status)) {
    return true;
  }
  failures.add(1);
  failedAt.add(Date.now() / 1000);
  if (!res || res.status !== 503) {
    unexpected.add(1, { status: String(res ? res.status : 0) });
  }
  return false;
}

export function buy(data) {
  measureActive(data);
  const i = exec.scenario.iterationInTest;
  const user = i + 1;
  const joined = postJson('/api/queue/tokens', { userId: user, queueId: data.queue }, named('join', 201));
  if (!outcome(joined, [201])) {
    return;
  }
  let pass = null;
  for (let poll = 0; poll < 20 && !pass; poll++) {
    const status = getJson('/api/queue/status', authorized(joined.json('token'), named('status', 200)));
    if (!outcome(status, [200])) {
      return;
    }
    pass = status.json('status') === 'ACTIVE' ? status.json('pass') : null;
    if (!pass) {
      sleep(0.2);
    }
  }
  if (!pass) {
    return;
  }
  const { schedule, seat } = seatOf(i);
  const held = hold(pass, schedule, [seat]);
  if (!outcome(held, [201])) {
    return;
  }
  const { res } = pay(pass, held.json('reservationId'), `drill-${data.run}-${i}`);
  if (outcome(res, [201])) {
    bought.add(1);
  }
}

export function browse() {
  const concert = Math.floor(Math.random() * SEED.concerts) + 1;
  const schedule = concert * 100 + Math.floor(Math.random() * SEED.schedulesPerConcert) + 1;
  outcome(http.get(`${BASE_URL}/api/schedules/${schedule}/seats`, named('seats', 200)), [200]);
}
