// Payment throughput (issue 6): PAYMENTS users of the large seed each get a pass, hold one
// seat (prepared in setup, in parallel batches), then VUs pay for them as fast as they can
// against the gateway simulator (5 % declines); a declined payment is retried with a new
// Idempotency-Key, as a user would. Run with loadtests/bench-payment.
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { BASE_URL, configureQueue } from './lib.js';

const PAYMENTS = Number(__ENV.PAYMENTS || 10000);
const BATCH = 200;
const declined = new Counter('payments_declined');
const paid = new Counter('payments_succeeded');

export const options = {
  scenarios: {
    pay: {
      executor: 'shared-iterations',
      vus: Number(__ENV.VUS || 64),
      iterations: PAYMENTS,
      maxDuration: '5m',
    },
  },
  setupTimeout: '600s',
  thresholds: {
    'http_req_duration{name:pay}': ['p(95)<100'],
    'http_req_failed{name:pay}': ['rate<0.01'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
  systemTags: ['status', 'method', 'name', 'scenario', 'expected_response'],
};

const JSON_HEADERS = { 'content-type': 'application/json' };

function batched(requests) {
  const responses = [];
  for (let i = 0; i < requests.length; i += BATCH) {
    responses.push(...http.batch(requests.slice(i, i + BATCH)));
  }
  return responses;
}

// Seats of the large seed in order: 10 concerts x 10 schedules x 500 seats.
function seatOf(index) {
  const schedule = (Math.floor(index / 5000) + 1) * 100 + (Math.floor(index / 500) % 10) + 1;
  return { schedule, seat: schedule * 10000 + (index % 500) + 1 };
}

export function setup() {
  const queue = configureQueue(`pay-${Date.now()}`, { ratePerSec: 100000, maxActive: 10000000 }).queueId;
  const users = Array.from({ length: PAYMENTS }, (_, i) => i + 1);
  const tickets = batched(users.map((user) => ['POST', `${BASE_URL}/api/queue/tokens`,
    JSON.stringify({ userId: user, queueId: queue }), { headers: JSON_HEADERS }]))
    .map((r) => r.json('token'));
  const passes = new Array(PAYMENTS).fill(null);
  for (let round = 0; round < 20 && passes.some((p) => p === null); round++) {
    const waiting = passes.map((p, i) => (p === null ? i : -1)).filter((i) => i >= 0);
    const statuses = batched(waiting.map((i) => ['GET', `${BASE_URL}/api/queue/status`, null,
      { headers: { authorization: `Bearer ${tickets[i]}` } }]));
    statuses.forEach((r, k) => {
      if (r.json('status') === 'ACTIVE') {
        passes[waiting[k]] = r.json('pass');
      }
    });
  }
  if (passes.some((p) => p === null)) {
    throw new Error('not every user was admitted');
  }
  const holds = batched(passes.map((pass, i) => {
    const { schedule, seat } = seatOf(i);
    return ['POST', `${BASE_URL}/api/reservations`, JSON.stringify({ scheduleId: schedule, seatIds: [seat] }),
      { headers: Object.assign({ authorization: `Bearer ${pass}` }, JSON_HEADERS) }];
  }));
  const reservations = holds.map((r) => {
    if (r.status !== 201) {
      throw new Error(`hold failed: ${r.status} ${r.body}`);
    }
    return r.json('reservationId');
  });
  return { passes, reservations, run: Date.now() };
}

// A decline is a business outcome (422), not a failed request.
const PAY = { tags: { name: 'pay' }, responseCallback: http.expectedStatuses(201, 422) };

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const params = Object.assign({}, PAY, {
    headers: Object.assign({ authorization: `Bearer ${data.passes[i]}` }, JSON_HEADERS),
  });
  for (let attempt = 0; attempt < 10; attempt++) {
    params.headers['idempotency-key'] = `bench-${data.run}-${i}-${attempt}`;
    const res = http.post(`${BASE_URL}/api/payments`, JSON.stringify({ reservationId: data.reservations[i] }), params);
    if (res.status === 201) {
      paid.add(1);
      return;
    }
    if (res.status !== 422) {
      return;
    }
    declined.add(1);
  }
}
