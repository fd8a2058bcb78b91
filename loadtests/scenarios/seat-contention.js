// Scenario 2, seat contention: 1,000 users take passes and each try a random seat of a 50-seat
// block every 1-3 s until they hold one, then pay for it (so no hold lapses and frees its
// seat mid-run). Then the popular-seat variant: 1,000 other users all want seats 1-5 of
// another schedule. Exactly 50 and 5 users win; every other attempt is a clean 409; the
// verifier proves no seat has two owners.
//   smoke  25 s each variant
//   full   the seeds' 10 min, then 5 min of the popular-seat variant
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { admit, byProfile, hold, measureActive, openQueue, pay, ready, withCommonOptions } from '../lib.js';

const USERS = 1000;
// Schedule 101's seats 1..50 (the seeds' 50-seat schedule) and schedule 102's seats 1..5.
const VARIANTS = {
  contention: { schedule: 101, seats: 50, firstUser: 1 },
  popular: { schedule: 102, seats: 5, firstUser: 1 + USERS },
};
const held = new Counter('seats_held');
const sold = new Counter('seats_sold');
const refused = new Counter('seats_refused');

// Seconds of each variant, and the pause between them.
const [CONTENTION, POPULAR, GAP] = byProfile({ smoke: [25, 25, 3], full: [600, 300, 10] });

function variant(name, seconds, startSeconds) {
  return {
    executor: 'constant-vus',
    vus: USERS,
    duration: `${seconds}s`,
    startTime: `${startSeconds}s`,
    gracefulStop: '10s',
    exec: 'attempt',
    env: { VARIANT: name },
  };
}

export const options = withCommonOptions({
  scenarios: {
    contention: variant('contention', CONTENTION, 0),
    popular: variant('popular', POPULAR, CONTENTION + GAP),
  },
  thresholds: {
    'seats_held{scenario:contention}': ['count==50'],
    'seats_sold{scenario:contention}': ['count==50'],
    'seats_held{scenario:popular}': ['count==5'],
    'seats_sold{scenario:popular}': ['count==5'],
    // The seeds: P95 < 2 s (fail > 5 s), > 300 reservations/s, never a 5xx.
    'http_req_duration{name:reserve}': ['p(95)<2000', 'p(99)<5000'],
    'http_req_failed{name:reserve}': ['rate==0'],
    'http_reqs{name:reserve}': ['rate>300'],
    'http_req_duration{name:pay}': ['p(95)<3000'],
    'http_req_failed{name:pay}': ['rate==0'],
    checks: ['rate==1'],
  },
}, ['reserve', 'pay']);

export function setup() {
  return ready({ queue: openQueue('seats'), run: Date.now() });
}

// Per VU and variant (k6 may run one VU in both): its user's pass, taken when the variant
// starts (a pass lives 10 minutes, longer than the wait for the second variant in `full`
// would allow), and whether the user holds a seat already; then it only waits out the run.
const passes = {};
const done = {};

export function attempt(data) {
  measureActive(data);
  const name = __ENV.VARIANT;
  const { schedule, seats, firstUser } = VARIANTS[name];
  const user = firstUser + (exec.vu.idInTest - 1) % USERS;
  // Users click on their own clocks: each arrives anywhere in the variant's first two
  // seconds (k6 would otherwise fire all 1,000 in the same instant) and takes a pass.
  if (!passes[name]) {
    sleep(Math.random() * 2);
    passes[name] = admit(data.queue, [user])[0];
  }
  if (!done[name]) {
    const pass = passes[name];
    const seat = schedule * 10000 + Math.floor(Math.random() * seats) + 1;
    const res = hold(pass, schedule, [seat]);
    check(res, { 'held or cleanly refused': (r) => r.status === 201 || r.status === 409 });
    if (res.status === 201) {
      held.add(1);
      done[name] = true;
      const paid = pay(pass, res.json('reservationId'), `contention-${data.run}-${user}`).res;
      if (check(paid, { 'the winner pays': (r) => r.status === 201 })) {
        sold.add(1);
      }
    } else if (res.status === 409) {
      refused.add(1);
    }
  }
  sleep(1 + Math.random() * 2);
}
