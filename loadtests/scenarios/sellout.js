// Scenario 8, a sale that sells out (open model): the queue sells concert 10 of the large
// seed, whose seats setup holds all but a few of (as if the sale had run for a while). Fans
// arrive, wait, and once admitted hold one free seat. The last seats go within seconds;
// the bridge counts the concert sold out, so the fans still waiting are answered SOLD_OUT
// and nobody more is admitted. Then some of setup's holders let their seats go (injected
// releases): the next count opens admission again, the fans first in line are admitted
// and take those seats, and the sale is sold out once more. The verifier then checks that
// no seat has two owners and no fan passed the concert's cap.
//   smoke  180 seats left, fans arrive at 60/s for 30 s, 32 seats released at 15 s
//   full   400 seats left, fans arrive at 200/s for 60 s, 100 seats released at 30 s
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import {
  BASE_URL, Crowd, SEED, admit, authorized, batched, byProfile, configureQueue, getJson, hold,
  measureActive, named, openQueue, postJson, ready, uniqueUser, withCommonOptions,
} from '../lib.js';

const PROFILES = {
  smoke: { seatsLeft: 180, arrivalRate: 60, arrivalSeconds: 30, released: 32, releaseAfter: 15, vus: 60 },
  full: { seatsLeft: 400, arrivalRate: 200, arrivalSeconds: 60, released: 100, releaseAfter: 30, vus: 200 },
};
const { seatsLeft, arrivalRate, arrivalSeconds, released, releaseAfter, vus } = byProfile(PROFILES);
const CONCERT = SEED.concerts;
const SCHEDULES = Array.from({ length: SEED.schedulesPerConcert }, (_, i) => CONCERT * 100 + i + 1);
// Setup holds a schedule's seats from the first, four at a time (a fan's cap); the last
// `seatsLeft / schedules` of each schedule stay free.
const HELD_PER_SCHEDULE = SEED.seatsPerSchedule - seatsLeft / SCHEDULES.length;
const SEATS_PER_HOLDER = 4;
const RATE_PER_SEC = 100;
const PATIENCE_SECONDS = 600;
const MAX_POLLS_PER_ITERATION = 100;

const seatsTaken = new Counter('seats_taken');
const emptyHanded = new Counter('fans_admitted_empty_handed');
const toldSoldOut = new Counter('fans_told_sold_out');
const admittedAfterSoldOut = new Counter('fans_admitted_after_sold_out');
const releasesInjected = new Counter('releases_injected');

export const options = withCommonOptions({
  scenarios: {
    sellout: {
      executor: 'constant-arrival-rate',
      rate: arrivalRate,
      timeUnit: '1s',
      duration: `${arrivalSeconds}s`,
      preAllocatedVUs: vus,
      maxVUs: vus,
    },
  },
  thresholds: {
    'http_req_failed{name:join}': ['rate==0'],
    'http_req_failed{name:status}': ['rate==0'],
    'http_req_failed{name:reserve}': ['rate==0'],
    'http_req_failed{name:release}': ['rate==0'],
    // Every seat left, and every seat released, went to a fan of the queue.
    seats_taken: [`count>=${seatsLeft + released}`],
    fans_told_sold_out: ['count>0'],
    // The releases opened admission again.
    fans_admitted_after_sold_out: ['count>0'],
    releases_injected: [`count==${released}`],
    checks: ['rate>0.999'],
  },
}, ['join', 'status', 'seats', 'reserve']);

export function setup() {
  // One holder (a user of the seed) per hold of at most four seats: the concert's cap.
  const holds = [];
  for (const schedule of SCHEDULES) {
    for (let first = 1; first <= HELD_PER_SCHEDULE; first += SEATS_PER_HOLDER) {
      const count = Math.min(SEATS_PER_HOLDER, HELD_PER_SCHEDULE - first + 1);
      holds.push({ schedule, seatIds: Array.from({ length: count }, (_, k) => schedule * 10000 + first + k) });
    }
  }
  const passes = admit(openQueue('sellout-setup'), holds.map((_, i) => i + 1));
  holds.forEach((h, i) => { h.pass = passes[i]; });
  const reservations = batched(holds.map((h) => ['POST', `${BASE_URL}/api/reservations`,
    JSON.stringify({ scheduleId: h.schedule, seatIds: h.seatIds }), authorized(h.pass)]))
    .map((r, i) => {
      if (r.status !== 201) {
        throw new Error(`setup hold ${holds[i].seatIds}: ${r.status} ${r.body}`);
      }
      return { pass: holds[i].pass, reservationId: r.json('reservationId'), seats: holds[i].seatIds.length };
    });
  // The releases give back `released` seats: whole holds of four.
  const releasing = [];
  for (let seats = 0; seats < released; seats += reservations[releasing.length].seats) {
    releasing.push(reservations[releasing.length]);
  }
  const queue = configureQueue(`sellout-${Date.now()}`, {
    open: true, ratePerSec: RATE_PER_SEC, maxActive: 10000000, concertId: CONCERT,
  });
  return ready({ queueId: queue.queueId, releasing, releaseAt: Date.now() + releaseAfter * 1000 });
}

const JOIN = named('join', 201);
const STATUS = named('status', 200);
const SEATS = named('seats', 200);

let crowd = null;
let releasedAlready = false;

/// An admitted fan holds one free seat of a random schedule, trying up to three.
function buy(pass) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const schedule = SCHEDULES[Math.floor(Math.random() * SCHEDULES.length)];
    const map = getJson(`/api/schedules/${schedule}/seats`, SEATS);
    const free = map.status === 200 ? map.json('seats').map((s) => s.seatId) : [];
    if (free.length === 0) {
      continue;
    }
    const res = hold(pass, schedule, [free[Math.floor(Math.random() * free.length)]]);
    if (res.status === 201) {
      seatsTaken.add(1);
      return;
    }
  }
  emptyHanded.add(1);
}

function watch() {
  return new Crowd(STATUS, MAX_POLLS_PER_ITERATION, (fan, res, status) => {
    check(res, {
      'a fan is answered WAITING, SOLD_OUT or ACTIVE': () => ['WAITING', 'SOLD_OUT', 'ACTIVE'].includes(status),
    });
    if (status === 'SOLD_OUT' && !fan.toldSoldOut) {
      fan.toldSoldOut = true;
      toldSoldOut.add(1);
    }
    if (status === 'ACTIVE') {
      if (fan.toldSoldOut) {
        admittedAfterSoldOut.add(1);
      }
      buy(res.json('pass'));
      return false;
    }
    return status === 'WAITING' || status === 'SOLD_OUT' || res.status === 429 || res.status === 503;
  }, () => {});
}

/// The injected releases: one VU cancels setup's holds once, at `releaseAt`.
function injectReleases(data, now) {
  if (releasedAlready || exec.vu.idInTest !== 1 || now < data.releaseAt) {
    return;
  }
  releasedAlready = true;
  for (const hold of data.releasing) {
    const res = http.del(`${BASE_URL}/api/reservations/${hold.reservationId}`, null,
      authorized(hold.pass, named('release', 200)));
    if (check(res, { 'an injected release frees its seats': (r) => r.status === 200 })) {
      releasesInjected.add(hold.seats);
    }
  }
}

export default function (data) {
  crowd = crowd || watch();
  measureActive(data);
  const now = Date.now();
  injectReleases(data, now);
  const joined = postJson('/api/queue/tokens', { userId: uniqueUser(), queueId: data.queueId }, JOIN);
  if (check(joined, { 'a fan gets a place': (r) => r.status === 201 })) {
    crowd.add(joined.json('token'), now, PATIENCE_SECONDS);
  }
  crowd.poll(now);
}
