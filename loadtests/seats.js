// Seats (issue 5), two measurements chosen by SCENARIO:
//   contention: the seeds' scenario 2: 1,000 users with passes each try a random seat of a
//               50-seat schedule every 1-3 s until they hold one; reserve latency under
//               contention, exactly 50 holds, every other attempt a clean 409.
//   seatmap:    constant VUs, no sleep, reading one schedule's seat map from the cache.
// Run with loadtests/bench-seats (it resets the demo data first).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';
import { BASE_URL, configureQueue, getJson, postJson, bearer } from './lib.js';

const SCHEDULE = Number(__ENV.SCHEDULE || 101);
const USERS = 1000;
const held = new Counter('seats_held');
const refused = new Counter('seats_refused');

const scenarios = {
  contention: {
    executor: 'constant-vus',
    vus: USERS,
    duration: __ENV.DURATION || '30s',
    exec: 'reserve',
  },
  seatmap: {
    executor: 'constant-vus',
    vus: Number(__ENV.VUS || 32),
    duration: __ENV.DURATION || '20s',
    exec: 'seatMap',
  },
};

export const options = {
  scenarios: { [__ENV.SCENARIO || 'seatmap']: scenarios[__ENV.SCENARIO || 'seatmap'] },
  setupTimeout: '120s',
  thresholds: {
    'http_req_duration{name:reserve}': ['p(95)<100'],
    'http_req_duration{name:seatmap}': ['p(95)<20'],
    'http_req_failed{name:seatmap}': ['rate<0.01'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
  systemTags: ['status', 'method', 'name', 'scenario', 'expected_response'],
};

// Passes for the contention run: every user through a wide-open queue.
export function setup() {
  if ((__ENV.SCENARIO || 'seatmap') !== 'contention') {
    return {};
  }
  const queue = configureQueue(`seats-${Date.now()}`, { ratePerSec: 100000, maxActive: 10000000 }).queueId;
  const passes = [];
  for (let user = 1; user <= USERS; user++) {
    const joined = postJson('/api/queue/tokens', { userId: 500000 + user, queueId: queue });
    const ticket = bearer(joined.json('token'));
    let pass = null;
    for (let poll = 0; poll < 50 && !pass; poll++) {
      const status = getJson('/api/queue/status', ticket).json();
      if (status.status === 'ACTIVE') {
        pass = status.pass;
      }
    }
    if (!pass) {
      throw new Error(`user ${user} was not admitted`);
    }
    passes.push(pass);
  }
  return { passes };
}

// 409 is the expected answer for most users: a business outcome, not a failed request.
const RESERVE = { tags: { name: 'reserve' }, responseCallback: http.expectedStatuses(201, 409) };

// Whether this VU's user holds a seat already; then it only waits out the run.
let holding = false;
let started = false;

export function reserve(data) {
  // Users click on their own clocks: the first attempt falls anywhere in the first
  // seconds, like every later one (k6 would otherwise fire all 1,000 in the same instant).
  if (!started) {
    started = true;
    sleep(Math.random() * 2);
  }
  if (!holding) {
    const index = exec.vu.idInTest - 1;
    const seat = SCHEDULE * 10000 + Math.floor(Math.random() * 50) + 1;
    const res = postJson('/api/reservations', { scheduleId: SCHEDULE, seatIds: [seat] },
      Object.assign({}, RESERVE, bearer(data.passes[index])));
    if (res.status === 201) {
      held.add(1);
      holding = true;
    } else if (res.status === 409) {
      refused.add(1);
    }
    check(res, { 'held or cleanly refused': (r) => r.status === 201 || r.status === 409 });
  }
  sleep(1 + Math.random() * 2);
}

const SEAT_MAP = { tags: { name: 'seatmap' }, responseCallback: http.expectedStatuses(200) };

export function seatMap() {
  http.get(`${BASE_URL}/api/schedules/${SCHEDULE}/seats`, SEAT_MAP);
}
