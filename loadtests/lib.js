// Shared helpers of the k6 scenarios: profiles, common options, the app's address, JSON
// requests, admission through the waiting room, the large seed's layout and paying.
import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Gauge, Trend } from 'k6/metrics';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:3000';

/// `smoke` (CI, at most a minute), `full` (the seeds' shapes and durations), and for some
/// scenarios `bench` (the issues' throughput measurements: constant VUs, no think time).
export const PROFILE = __ENV.PROFILE || 'smoke';

/// The value of `choices` for the profile this run uses; an unknown profile stops the run.
export function byProfile(choices) {
  if (!(PROFILE in choices)) {
    throw new Error(`profile ${PROFILE} is not one of ${Object.keys(choices).join(', ')}`);
  }
  return choices[PROFILE];
}

/// Options every scenario shares: the percentiles the reports quote, fewer tags per sample
/// (k6's own bookkeeping shares the 2 cores with the app), and for each request name in
/// `requests` its count, latency and failure rate in the summary, held by default to the
/// seeds' global must-haves (P95 < 1 s, errors < 2 %) unless the scenario sets its own.
export function withCommonOptions(options, requests = []) {
  const defaults = {};
  for (const name of requests) {
    defaults[`http_reqs{name:${name}}`] = ['count>0'];
    defaults[`http_req_duration{name:${name}}`] = ['p(95)<1000'];
    defaults[`http_req_failed{name:${name}}`] = ['rate<0.02'];
  }
  return Object.assign({
    summaryTrendStats: ['avg', 'min', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'],
    systemTags: ['status', 'method', 'name', 'scenario', 'expected_response'],
    setupTimeout: '600s',
  }, options, { thresholds: Object.assign(defaults, options.thresholds || {}) });
}

const activeSeconds = new Gauge('active_seconds');

/// Setup data stamped with the moment setup ended, for `measureActive`.
export function ready(data) {
  return Object.assign(data, { readyAt: Date.now() });
}

/// Records how long the load has run since setup ended: the gauge's max is the active
/// time the report divides counts by (k6's own rates also count the setup's minutes).
export function measureActive(data) {
  activeSeconds.add((Date.now() - data.readyAt) / 1000);
}

export const JSON_HEADERS = { 'content-type': 'application/json' };

/// Request parameters with a bearer token, JSON content and extra fields (tags, callbacks).
export function authorized(token, extra = {}) {
  const headers = Object.assign({ authorization: `Bearer ${token}` }, JSON_HEADERS, extra.headers || {});
  return Object.assign({}, extra, { headers });
}

export function postJson(path, body, params = {}) {
  const headers = Object.assign({}, JSON_HEADERS, params.headers || {});
  return http.post(`${BASE_URL}${path}`, JSON.stringify(body), Object.assign({}, params, { headers }));
}

export function getJson(path, params = {}) {
  return http.get(`${BASE_URL}${path}`, params);
}

/// Which responses count as a failed request: everything but `statuses`. Business outcomes
/// (a 409 for a taken seat, a 422 for a declined card) are listed, so they stay checks.
export function named(name, ...statuses) {
  return { tags: { name }, responseCallback: http.expectedStatuses(...statuses) };
}

/// A user id no other VU or iteration of this run uses (for scenarios that never touch
/// MySQL with it, like the queue spike).
export function uniqueUser(base = 1) {
  return base + exec.vu.idInTest * 10000000 + exec.vu.iterationInScenario;
}

/// Creates (or reconfigures) a queue through the admin API; needs ADMIN_KEY.
export function configureQueue(queueId, settings) {
  const res = http.put(`${BASE_URL}/api/admin/queue?queueId=${queueId}`, JSON.stringify(settings),
    authorized(__ENV.ADMIN_KEY, { responseType: 'text' }));
  if (res.status !== 200) {
    throw new Error(`configuring queue ${queueId}: ${res.status} ${res.body}`);
  }
  return res.json();
}

/// A queue nobody waits in, for scenarios that start from users who already hold passes.
export function openQueue(prefix) {
  return configureQueue(`${prefix}-${Date.now()}`, { open: true, ratePerSec: 100000, maxActive: 10000000 }).queueId;
}

const BATCH = 200;

/// Seconds to wait before the next status poll, as a real client honours them: the
/// server's `pollAfterMs` on a WAITING (or, before a scheduled opening, GATHERING, or while
/// the sale is sold out, SOLD_OUT) answer, its `Retry-After` on a 429 or 503, else 2 s.
export function pollPause(res) {
  const status = res.status === 200 ? res.json('status') : null;
  if (status === 'WAITING' || status === 'GATHERING' || status === 'SOLD_OUT') {
    return res.json('pollAfterMs') / 1000;
  }
  const retryAfter = Number(res.headers['Retry-After']);
  return Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 2;
}

// How far off the wait estimate was, per admitted fan: the first WAITING answer's
// `etaSeconds` against the time from that answer to the ACTIVE one (which the poll pacing
// delays by up to one pause), in seconds.
const etaError = new Trend('eta_error_seconds');

/// One VU's share of an open-model crowd (k6 cannot run tens of thousands of VUs here):
/// the fans it let in, each with its token, when it arrived, when its next poll is due and
/// when it gives up (milliseconds). `poll(now)` sends the polls that are due, at most
/// `maxPolls` at once (http.batch), and hands each answer to
/// `answered(fan, res, status, answeredAt, sentAt)` (`status` is the answer's, null for
/// any but a 200),
/// which says whether the fan stays (still waiting) or leaves; a fan whose patience ran out
/// leaves through `gaveUp(fan)`. Every admitted fan's wait estimate is scored
/// (`eta_error_seconds`). The crowd polls the queue's status, or any `path` that answers a
/// token's holder with the same pacing (`pollAfterMs` or `Retry-After`).
export class Crowd {
  constructor(params, maxPolls, answered, gaveUp, path = '/api/queue/status') {
    this.fans = [];
    this.path = path;
    this.params = params;
    this.maxPolls = maxPolls;
    this.answered = answered;
    this.gaveUp = gaveUp;
  }

  /// A fan who joined at `now` with `token`, giving up after an exponentially distributed
  /// patience around `patienceSeconds` (fans give up at random).
  add(token, now, patienceSeconds, extra = {}) {
    const patience = -Math.log(1 - Math.random()) * patienceSeconds * 1000;
    this.fans.push(Object.assign({ token, arrivedAt: now, dueAt: now, givesUpAt: now + patience }, extra));
  }

  poll(now) {
    const due = [];
    const rest = [];
    for (const fan of this.fans) {
      if (fan.givesUpAt <= now) {
        this.gaveUp(fan);
      } else if (fan.dueAt <= now && due.length < this.maxPolls) {
        due.push(fan);
      } else {
        rest.push(fan);
      }
    }
    this.fans = rest;
    if (due.length === 0) {
      return;
    }
    const responses = http.batch(due.map((fan) => ['GET', `${BASE_URL}${this.path}`, null,
      Object.assign({ headers: { authorization: `Bearer ${fan.token}` } }, this.params)]));
    const answeredAt = Date.now();
    responses.forEach((res, i) => {
      const fan = due[i];
      const status = res.status === 200 ? res.json('status') : null;
      if (status === 'WAITING' && fan.eta === undefined) {
        fan.eta = res.json('etaSeconds');
        fan.etaFrom = answeredAt;
      } else if (status === 'ACTIVE' && fan.eta !== undefined) {
        etaError.add(Math.abs((answeredAt - fan.etaFrom) / 1000 - fan.eta));
      }
      if (this.answered(fan, res, status, answeredAt, now)) {
        fan.dueAt = answeredAt + pollPause(res) * 1000;
        this.fans.push(fan);
      }
    });
  }
}

/// Sends `requests` (http.batch form) 200 at a time, in order.
export function batched(requests) {
  const responses = [];
  for (let i = 0; i < requests.length; i += BATCH) {
    responses.push(...http.batch(requests.slice(i, i + BATCH)));
  }
  return responses;
}

/// Joins `users` to `queueId` and polls until each holds a pass (for setup code): the
/// passes in the order of `users`. Throws if someone is not admitted within a minute.
export function admit(queueId, users) {
  const tickets = batched(users.map((user) => ['POST', `${BASE_URL}/api/queue/tokens`,
    JSON.stringify({ userId: user, queueId }), { headers: JSON_HEADERS }]))
    .map((r, i) => {
      if (r.status !== 201 && r.status !== 200) {
        throw new Error(`user ${users[i]} could not join ${queueId}: ${r.status} ${r.body}`);
      }
      return r.json('token');
    });
  const passes = new Array(users.length).fill(null);
  const deadline = Date.now() + 60000;
  while (passes.includes(null)) {
    if (Date.now() > deadline) {
      throw new Error(`${passes.filter((p) => p === null).length} users were not admitted to ${queueId}`);
    }
    const waiting = passes.map((p, i) => (p === null ? i : -1)).filter((i) => i >= 0);
    batched(waiting.map((i) => ['GET', `${BASE_URL}/api/queue/status`, null,
      { headers: { authorization: `Bearer ${tickets[i]}` } }]))
      .forEach((r, k) => {
        if (r.status === 200 && r.json('status') === 'ACTIVE') {
          passes[waiting[k]] = r.json('pass');
        }
      });
    if (passes.includes(null)) {
      sleep(0.5);
    }
  }
  return passes;
}

/// The large seed's layout: concerts 1..10, schedules concert * 100 + 1..10, seats
/// schedule * 10000 + 1..500, users 1..100,000 with 500,000 KRW each, 50,000 KRW a seat.
export const SEED = { concerts: 10, schedulesPerConcert: 10, seatsPerSchedule: 500, users: 100000 };

/// The `index`-th seat of the large seed, schedule by schedule.
export function seatOf(index) {
  const perConcert = SEED.schedulesPerConcert * SEED.seatsPerSchedule;
  const concert = Math.floor(index / perConcert) % SEED.concerts + 1;
  const schedule = concert * 100 + Math.floor(index / SEED.seatsPerSchedule) % SEED.schedulesPerConcert + 1;
  return { schedule, seat: schedule * 10000 + (index % SEED.seatsPerSchedule) + 1 };
}

/// Holds `seatIds` of `scheduleId` with `pass`: the response (201, or 409 when taken).
export function hold(pass, scheduleId, seatIds) {
  return http.post(`${BASE_URL}/api/reservations`, JSON.stringify({ scheduleId, seatIds }),
    authorized(pass, named('reserve', 201, 409)));
}

/// Pays `reservationId` as a user would: a declined authorization (422) is retried under a
/// new Idempotency-Key while the hold lives. Returns the last response and the declines.
export function pay(pass, reservationId, keyPrefix) {
  const params = authorized(pass, named('pay', 201, 422));
  let declines = 0;
  let res;
  for (let attempt = 0; attempt < 10; attempt++) {
    params.headers['idempotency-key'] = `${keyPrefix}-${attempt}`;
    res = http.post(`${BASE_URL}/api/payments`, JSON.stringify({ reservationId }), params);
    if (res.status !== 422) {
      break;
    }
    declines += 1;
  }
  return { res, declines };
}
