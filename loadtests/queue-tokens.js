// Token issue throughput (issue 4): constant VUs, no sleep, every iteration a new user
// joining one fresh queue. Run with loadtests/bench-queue.
import http from 'k6/http';
import { postJson, uniqueUser, configureQueue, getJson, bearer } from './lib.js';


export const options = {
  scenarios: {
    tokens: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 64),
      duration: __ENV.DURATION || '30s',
    },
  },
  thresholds: {
    'http_req_duration{name:join}': ['p(95)<50'],
    'http_req_failed{name:join}': ['rate<0.01'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
  // Only statuses are checked; reading bodies would spend the shared CPU on k6.
  discardResponseBodies: true,
  // Fewer tags per sample: k6's own bookkeeping shares the 2 cores with the app.
  systemTags: ['status', 'method', 'name', 'scenario', 'expected_response'],
};

// One fresh queue per run; the init code runs once per VU, so its id comes from setup.
export function setup() {
  return configureQueue(`bench-${Date.now()}`, { open: true, ratePerSec: 100, maxActive: 1000 });
}

// Anything but a new place (201) counts as a failed request: every user here is new.
const JOIN = { tags: { name: 'join' }, responseCallback: http.expectedStatuses(201) };

export default function (queue) {
  postJson('/api/queue/tokens', { userId: uniqueUser(), queueId: queue.queueId }, JOIN);
}

export function teardown(queue) {
  const res = getJson(`/api/admin/queue?queueId=${queue.queueId}`,
    Object.assign(bearer(__ENV.ADMIN_KEY), { responseType: 'text' }));
  console.log(`queue ${queue.queueId}: ${res.body}`);
}
