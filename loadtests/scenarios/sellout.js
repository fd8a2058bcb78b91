// Scenario 8, an on-sale from the opening to the waitlist (open model): the queue sells
// concert 10 of the large seed, whose seats setup holds all but a few of (as if the sale had
// run for a while), and opens at a set time.
//   1. Fans who arrive before the opening gather as entrants of the draw; the first poll
//      after it runs the draw (re-verified after the run by draw-check and the verifier).
//   2. Admitted fans hold one free seat each. The last seats go within seconds; the bridge
//      counts the concert sold out, so the fans still waiting are answered SOLD_OUT and
//      nobody more is admitted.
//   3. A share of the fans told SOLD_OUT join the concert's waitlist and poll it at its
//      pace instead of the queue.
//   4. Some of setup's holders let their seats go (injected releases): the bridge offers
//      each seat to the first fan on the list, who pays it with their queue ticket. The
//      line stays SOLD_OUT while the list has fans.
// The verifier then checks the draw, that no seat has two owners, no fan passed the
// concert's cap, and every offer was made in list order and announced and notified once.
// Fans are seed users (they pay offers from their balance), by iteration.
//   smoke  about 800 fans gather over 8 s, the queue opens 2 s later; latecomers 40/s for
//          20 s; 180 seats left, 32 released 10 s after the opening
//   full   20,000 fans gather over 50 s, the queue opens 5 s later; latecomers 100/s for
//          60 s; 400 seats left, 100 released 15 s after the opening
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  BASE_URL, Crowd, SEED, admit, authorized, batched, byProfile, configureQueue, getJson, hold,
  measureActive, named, openQueue, pay, postJson, ready, withCommonOptions,
} from '../lib.js';

const PROFILES = {
  smoke: {
    gatherRate: 100, gatherSeconds: 8, quietSeconds: 2, lateRate: 40, lateSeconds: 20,
    seatsLeft: 180, released: 32, releaseAfter: 10, waitlistShare: 0.3, vus: 80,
  },
  full: {
    gatherRate: 400, gatherSeconds: 50, quietSeconds: 5, lateRate: 100, lateSeconds: 60,
    seatsLeft: 400, released: 100, releaseAfter: 15, waitlistShare: 0.25, vus: 300,
  },
};
const {
  gatherRate, gatherSeconds, quietSeconds, lateRate, lateSeconds, seatsLeft, released, releaseAfter,
  waitlistShare, vus,
} = byProfile(PROFILES);
const CONCERT = SEED.concerts;
const SCHEDULES = Array.from({ length: SEED.schedulesPerConcert }, (_, i) => CONCERT * 100 + i + 1);
// Setup holds a schedule's seats from the first, four at a time (a fan's cap); the last
// `seatsLeft / schedules` of each schedule stay free.
const HELD_PER_SCHEDULE = SEED.seatsPerSchedule - seatsLeft / SCHEDULES.length;
const SEATS_PER_HOLDER = 4;
// Fans are seed users above setup's holders.
const FIRST_FAN = 5000;
const RATE_PER_SEC = 100;
const PATIENCE_SECONDS = 600;
// A fan on the waitlist is notified of an offer; polling is the page's fallback, so they
// rarely give up.
const WAITLIST_PATIENCE_SECONDS = 3600;
const MAX_POLLS_PER_ITERATION = 100;

const entered = new Counter('fans_entered');
const seatsTaken = new Counter('seats_taken');
const emptyHanded = new Counter('fans_admitted_empty_handed');
const toldSoldOut = new Counter('fans_told_sold_out');
// Fans told SOLD_OUT whom the line admitted after the releases: the released seats must go
// to the waitlist instead. (Before them, a count taken while admitted fans still choose
// may briefly reopen the line.)
const admittedAfterRelease = new Counter('fans_admitted_from_the_line_after_release');
const releasesInjected = new Counter('releases_injected');
const waitlisted = new Counter('fans_waitlisted');
const offersPaid = new Counter('waitlist_offers_paid');
const offersMissed = new Counter('waitlist_offers_missed');
// From a release to the payment of the offer its seat became.
const offerPaidAfterRelease = new Trend('offer_paid_after_release_seconds');

export const options = withCommonOptions({
  scenarios: {
    sellout: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      // One iteration per tick whatever the phase, so every VU keeps polling its fans;
      // whether a tick brings an arrival depends on the phase (`arrives`).
      stages: [
        { duration: '2s', target: gatherRate },
        { duration: `${gatherSeconds + quietSeconds + lateSeconds - 2}s`, target: gatherRate },
      ],
      preAllocatedVUs: vus,
      maxVUs: vus,
    },
  },
  thresholds: {
    'http_req_failed{name:join}': ['rate==0'],
    'http_req_failed{name:status}': ['rate==0'],
    'http_req_failed{name:reserve}': ['rate==0'],
    'http_req_failed{name:release}': ['rate==0'],
    'http_req_failed{name:waitlist-join}': ['rate==0'],
    'http_req_failed{name:waitlist}': ['rate==0'],
    'http_req_failed{name:pay}': ['rate==0'],
    fans_entered: [`count>=${gatherRate * (gatherSeconds - 2)}`],
    // Every seat left went to a fan of the queue, every seat released to the waitlist.
    seats_taken: [`count>=${seatsLeft}`],
    fans_told_sold_out: ['count>0'],
    fans_waitlisted: [`count>${released}`],
    releases_injected: [`count==${released}`],
    waitlist_offers_paid: [`count>=${Math.floor(released * 0.9)}`],
    // The line stays sold out while the list has fans.
    fans_admitted_from_the_line_after_release: ['count==0'],
    checks: ['rate>0.999'],
  },
}, ['join', 'status', 'seats', 'reserve', 'waitlist-join', 'waitlist', 'pay']);

export function setup() {
  // One holder (a user of the seed) per hold of at most four seats: the concert's cap.
  const holds = [];
  for (const schedule of SCHEDULES) {
    for (let first = 1; first <= HELD_PER_SCHEDULE; first += SEATS_PER_HOLDER) {
      const count = Math.min(SEATS_PER_HOLDER, HELD_PER_SCHEDULE - first + 1);
      holds.push({ schedule, seatIds: Array.from({ length: count }, (_, k) => schedule * 10000 + first + k) });
    }
  }
  if (holds.length >= FIRST_FAN) {
    throw new Error(`${holds.length} holders overlap the fans from user ${FIRST_FAN}`);
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
  // The first arrivals come when setup ends; the opening is after the gathering and a
  // quiet spell, so no arrival races it.
  const opensAt = Date.now() + (gatherSeconds + quietSeconds) * 1000;
  const queue = configureQueue(`sellout-${Date.now()}`, {
    open: true,
    ratePerSec: RATE_PER_SEC,
    maxActive: 10000000,
    concertId: CONCERT,
    opensAt: new Date(opensAt).toISOString(),
  });
  return ready({
    queueId: queue.queueId, commitment: queue.commitment, opensAt, releasing,
    releaseAt: opensAt + releaseAfter * 1000,
  });
}

const JOIN = named('join', 201);
const STATUS = named('status', 200);
const SEATS = named('seats', 200);
// 409: the line admits again (a release reached it first), so the fan stays in the line.
const WAITLIST_JOIN = named('waitlist-join', 200, 201, 409);
const WAITLIST = named('waitlist', 200);
const WAITLIST_PATH = `/api/concerts/${CONCERT}/waitlist`;

let crowd = null;
let waitlist = null;
let releasedAt = null;

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

/// A fan told SOLD_OUT puts their name on the waitlist; false if the line admits again.
function joinWaitlist(fan, now) {
  const res = http.post(`${BASE_URL}${WAITLIST_PATH}`, null, authorized(fan.token, WAITLIST_JOIN));
  check(res, {
    'a fan told SOLD_OUT joins the waitlist (or the line admits again)': (r) =>
      (r.status === 201 && r.json('state') === 'WAITING') || r.status === 409,
  });
  if (res.status !== 201) {
    return false;
  }
  waitlisted.add(1);
  // As the page does: the join's answer is the entry, so the first look is at its pace.
  waitlist.add(fan.token, now, WAITLIST_PATIENCE_SECONDS, { dueAt: now + (res.json('pollAfterMs') ?? 0) });
  return true;
}

function watchQueue(data) {
  return new Crowd(STATUS, MAX_POLLS_PER_ITERATION, (fan, res, status, answeredAt) => {
    check(res, {
      'a fan is answered GATHERING, WAITING, SOLD_OUT or ACTIVE': () =>
        ['GATHERING', 'WAITING', 'SOLD_OUT', 'ACTIVE'].includes(status),
      'a gathering fan is told the commitment made at creation': () =>
        status !== 'GATHERING' || res.json('commitment') === data.commitment,
    });
    if (status === 'SOLD_OUT' && !fan.toldSoldOut) {
      fan.toldSoldOut = true;
      toldSoldOut.add(1);
      if (Math.random() < waitlistShare && joinWaitlist(fan, answeredAt)) {
        return false;
      }
    }
    if (status === 'ACTIVE') {
      if (fan.toldSoldOut && releasedAt !== null && answeredAt > releasedAt) {
        admittedAfterRelease.add(1);
      }
      buy(res.json('pass'));
      return false;
    }
    return ['GATHERING', 'WAITING', 'SOLD_OUT'].includes(status) || res.status === 429 || res.status === 503;
  }, () => {});
}

function watchWaitlist() {
  return new Crowd(WAITLIST, MAX_POLLS_PER_ITERATION, (fan, res) => {
    const state = res.status === 200 ? res.json('state') : null;
    check(res, { 'a waitlisted fan is answered WAITING or OFFERED': () => ['WAITING', 'OFFERED'].includes(state) });
    if (state !== 'OFFERED') {
      return state === 'WAITING' || res.status === 503;
    }
    const offer = res.json('offer');
    if (offer.status !== 'HELD') {
      offersMissed.add(1);
      return false;
    }
    const paid = pay(fan.token, offer.reservationId, `offer-${offer.reservationId}`).res;
    if (check(paid, { 'a fan pays the seat offered with their ticket': (r) => r.status === 201 })) {
      offersPaid.add(1);
      seatsTaken.add(1);
      if (releasedAt !== null) {
        offerPaidAfterRelease.add((Date.now() - releasedAt) / 1000);
      }
    }
    return false;
  }, () => {}, WAITLIST_PATH);
}

/// The injected releases: one VU cancels setup's holds once, at `releaseAt`; every VU
/// learns when, to time the offers it sees paid.
function injectReleases(data, now) {
  if (now < data.releaseAt || releasedAt !== null) {
    return;
  }
  releasedAt = data.releaseAt;
  if (exec.vu.idInTest !== 1) {
    return;
  }
  for (const held of data.releasing) {
    const res = http.del(`${BASE_URL}/api/reservations/${held.reservationId}`, null,
      authorized(held.pass, named('release', 200)));
    if (check(res, { 'an injected release frees its seats': (r) => r.status === 200 })) {
      releasesInjected.add(held.seats);
    }
  }
}

/// Whether this tick brings a fan: every tick while the crowd gathers, none in the quiet
/// spell around the opening, then latecomers at `lateRate`.
function arrives(data, now) {
  if (now < data.opensAt - quietSeconds * 1000) {
    return true;
  }
  return now >= data.opensAt + 1000 && Math.random() < lateRate / gatherRate;
}

function arrive(data, now) {
  const userId = FIRST_FAN + exec.scenario.iterationInTest;
  const joined = postJson('/api/queue/tokens', { userId, queueId: data.queueId }, JOIN);
  const entrant = now < data.opensAt;
  const ok = check(joined, {
    'a fan who comes early enters the draw, a latecomer gets a place behind it': (r) => r.status === 201
      && (entrant ? r.json('entry') > 0 && r.json('commitment') === data.commitment : r.json('position') > 0),
  });
  if (ok) {
    if (entrant) {
      entered.add(1);
    }
    crowd.add(joined.json('token'), now, PATIENCE_SECONDS);
  }
}

export default function (data) {
  crowd = crowd || watchQueue(data);
  waitlist = waitlist || watchWaitlist();
  measureActive(data);
  const now = Date.now();
  injectReleases(data, now);
  if (arrives(data, now)) {
    arrive(data, now);
  }
  crowd.poll(now);
  waitlist.poll(now);
}
