// Scenario 4, the end-to-end journey: users arrive, take a queue token, wait for their pass,
// browse concerts, schedules and a seat map, hold a free seat (another one if someone was
// faster), and pay. `journey_step{step}` records, per user who reached a step, whether they
// got through it: its rate is the step's completion and 1 - rate its drop-off.
//   smoke  1,000 users arriving over 10 s, at most 100 passes live, 30 s patience
//   full   the seeds' 10,000 users arriving over a minute, at most 1,000 passes live,
//          two minutes of patience in the queue. The operator's rate, 200/s, is above the
//          arrival rate (167/s): the queue holds no fan back while the seat and payment path
//          can serve, and the admission share backs off if that path shows strain.
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Rate, Trend } from 'k6/metrics';
import { authorized, byProfile, configureQueue, getJson, hold, measureActive, named, pay, pollPause, postJson, ready, withCommonOptions } from '../lib.js';

const { users, maxActive, ratePerSec, arrivalSeconds, patienceSeconds, thinkSeconds, maxDuration } = byProfile({
  smoke: { users: 1000, maxActive: 100, ratePerSec: 20, arrivalSeconds: 10, patienceSeconds: 30, thinkSeconds: 0.5, maxDuration: '55s' },
  full: { users: 10000, maxActive: 1000, ratePerSec: 200, arrivalSeconds: 60, patienceSeconds: 120, thinkSeconds: 1, maxDuration: '6m' },
});
// The concerts everybody wants: the first three of the seed.
const HOT_CONCERTS = 3;

const step = new Rate('journey_step');
const journeyTime = new Trend('journey_seconds');

const REQUESTS = ['join', 'status', 'concerts', 'schedules', 'seats', 'reserve', 'pay'];

export const options = withCommonOptions({
  scenarios: {
    journey: { executor: 'per-vu-iterations', vus: users, iterations: 1, maxDuration, gracefulStop: '5s' },
  },
  thresholds: Object.assign(
    {
      // The seeds: >= 80 % of admitted users who got a seat finish paying; no step errs
      // on more than 5 % of its requests.
      'journey_step{step:pay}': ['rate>=0.8'],
      'journey_step{step:join}': ['rate>0.99'],
      'journey_step{step:admitted}': ['rate>0.05'],
      'journey_step{step:browse}': ['rate>0.95'],
      'journey_step{step:hold}': ['rate>0.9'],
      journey_seconds: ['p(95)<60'],
    },
    Object.fromEntries(REQUESTS.map((name) => [`http_req_failed{name:${name}}`, ['rate<0.05']])),
  ),
}, REQUESTS);

export function setup() {
  const queue = configureQueue(`journey-${Date.now()}`, { open: true, ratePerSec, maxActive }).queueId;
  return ready({ queue, run: Date.now() });
}

/// Records the outcome of `name` for this user and passes it on.
function through(name, ok) {
  step.add(ok, { step: name });
  return ok;
}

function think() {
  sleep(thinkSeconds * (0.5 + Math.random()));
}

/// Polls as a well-behaved waiting-room page does: when the server says (`pollAfterMs`,
/// or `Retry-After` on a 429 or 503), which paces the whole line within its poll budget.
function waitForPass(ticket) {
  const deadline = Date.now() + patienceSeconds * 1000;
  while (Date.now() < deadline) {
    const res = getJson('/api/queue/status', authorized(ticket, named('status', 200)));
    const status = res.status === 200 ? res.json('status') : null;
    if (status === 'ACTIVE') {
      return res.json('pass');
    }
    if (status === 'EXPIRED') {
      return null;
    }
    sleep(pollPause(res));
  }
  return null;
}

/// Concert list, a hot concert's schedules, and the seat map of a schedule with free seats:
/// the schedule and its free seat ids, or null.
function browse() {
  const concerts = getJson('/api/concerts', named('concerts', 200));
  if (concerts.status !== 200) {
    return null;
  }
  think();
  const concert = Math.floor(Math.random() * HOT_CONCERTS) + 1;
  const schedules = getJson(`/api/concerts/${concert}/schedules`, named('schedules', 200));
  if (schedules.status !== 200) {
    return null;
  }
  const open = schedules.json('schedules').filter((s) => s.availableSeats > 0);
  if (open.length === 0) {
    return null;
  }
  think();
  return seatMap(open[Math.floor(Math.random() * open.length)].scheduleId);
}

function seatMap(schedule) {
  const res = getJson(`/api/schedules/${schedule}/seats`, named('seats', 200));
  if (res.status !== 200) {
    return null;
  }
  return { schedule, free: res.json('seats').map((s) => s.seatId) };
}

/// Tries up to three free seats, reloading the map after a 409: the reservation id or null.
function holdOne(pass, choice) {
  let { schedule, free } = choice;
  for (let attempt = 0; attempt < 3 && free.length > 0; attempt++) {
    const seat = free[Math.floor(Math.random() * free.length)];
    const res = hold(pass, schedule, [seat]);
    if (res.status === 201) {
      return res.json('reservationId');
    }
    const reloaded = seatMap(schedule);
    free = reloaded ? reloaded.free : [];
  }
  return null;
}

export default function (data) {
  sleep(Math.random() * arrivalSeconds);
  journey(data);
  measureActive(data);
}

function journey(data) {
  const user = exec.vu.idInTest;
  const started = Date.now();
  const joined = postJson('/api/queue/tokens', { userId: user, queueId: data.queue }, named('join', 201));
  if (!through('join', check(joined, { 'a token is issued': (r) => r.status === 201 }))) {
    return;
  }
  const pass = waitForPass(joined.json('token'));
  if (!through('admitted', pass !== null)) {
    return;
  }
  const choice = browse();
  if (!through('browse', choice !== null && choice.free.length > 0)) {
    return;
  }
  think();
  const reservation = holdOne(pass, choice);
  if (!through('hold', reservation !== null)) {
    return;
  }
  think();
  const { res } = pay(pass, reservation, `journey-${data.run}-${user}`);
  if (through('pay', check(res, { 'the payment completes': (r) => r.status === 201 }))) {
    journeyTime.add((Date.now() - started) / 1000);
  }
}
