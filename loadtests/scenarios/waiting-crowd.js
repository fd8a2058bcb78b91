// Scenario 6, the waiting crowd (open model): fans arrive on the clock, whatever the app's
// answers take (`ramping-arrival-rate`: one iteration is one arrival), join, then poll when
// the server says (`pollAfterMs`, or `Retry-After` on a 429 or 503) until they are admitted
// or their patience runs out; then they leave. k6 cannot run 50,000 VUs here, so each VU
// keeps the fans it let in and, on each of its iterations, sends the polls that are due
// (http.batch). The crowd's size is read from the public head endpoint once a second.
//   smoke  up to 500 arrivals/s, then 100/s: about 9,000 fans in 35 s (100 VUs)
//   full   up to 800 arrivals/s: 56,000 fans in 75 s, then 100/s for 30 s, admitted at 50/s,
//          so the waiting crowd passes 50,000 (500 VUs; 2,500/s left k6 itself short of CPU
//          on two shared cores)
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Gauge, Trend } from 'k6/metrics';
import { Crowd, byProfile, configureQueue, getJson, measureActive, named, postJson, ready, uniqueUser, withCommonOptions } from '../lib.js';

const PROFILES = {
  smoke: {
    stages: [{ duration: '5s', target: 500 }, { duration: '10s', target: 500 }, { duration: '5s', target: 100 }, { duration: '15s', target: 100 }],
    ratePerSec: 50,
    patienceSeconds: 60,
    vus: 100,
  },
  full: {
    stages: [{ duration: '10s', target: 800 }, { duration: '65s', target: 800 }, { duration: '5s', target: 100 }, { duration: '30s', target: 100 }],
    ratePerSec: 50,
    patienceSeconds: 600,
    vus: 500,
  },
};
const { stages, ratePerSec, patienceSeconds, vus } = byProfile(PROFILES);
// Polls one VU sends at most per iteration: the rest wait for its next one.
const MAX_POLLS_PER_ITERATION = 100;

const waitingCrowd = new Gauge('waiting_crowd');
const admitted = new Counter('fans_admitted');
const gaveUp = new Counter('fans_gave_up');
const waitSeconds = new Trend('fan_wait_seconds');
const pollLateSeconds = new Trend('poll_late_seconds');

export const options = withCommonOptions({
  scenarios: {
    crowd: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      stages,
      preAllocatedVUs: vus,
      maxVUs: vus,
    },
  },
  thresholds: {
    // Issue 23: a poll costs almost nothing, however many wait.
    'http_req_duration{name:status}': ['p(95)<50'],
    'http_req_failed{name:status}': ['rate==0'],
    'http_req_failed{name:join}': ['rate==0'],
    'http_req_duration{name:join}': ['p(95)<500'],
    dropped_iterations: ['count==0'],
    checks: ['rate>0.999'],
  },
}, ['join', 'status', 'head']);

export function setup() {
  const queue = configureQueue(`crowd-${Date.now()}`, { open: true, ratePerSec, maxActive: 10000000 });
  return ready(queue);
}

const JOIN = named('join', 201);
const STATUS = named('status', 200);
const HEAD = named('head', 200);

/// This VU's fans still waiting.
const crowd = new Crowd(STATUS, MAX_POLLS_PER_ITERATION, (fan, res, status, answeredAt, sentAt) => {
  pollLateSeconds.add((sentAt - fan.dueAt) / 1000);
  check(res, { 'a waiting fan is answered WAITING or ACTIVE': () => status === 'WAITING' || status === 'ACTIVE' });
  if (status === 'ACTIVE') {
    admitted.add(1);
    waitSeconds.add((answeredAt - fan.arrivedAt) / 1000);
    return false;
  }
  return status === 'WAITING' || res.status === 429 || res.status === 503;
}, () => gaveUp.add(1));
let headReadAt = 0;

function arrive(queue, now) {
  const joined = postJson('/api/queue/tokens', { userId: uniqueUser(), queueId: queue.queueId }, JOIN);
  if (check(joined, { 'an arriving fan gets a place': (r) => r.status === 201 })) {
    crowd.add(joined.json('token'), now, patienceSeconds);
  }
}

/// The crowd's size, from the endpoint a CDN would serve (one VU reads it, once a second).
function readHead(queue, now) {
  if (exec.vu.idInTest !== 1 || now - headReadAt < 1000) {
    return;
  }
  headReadAt = now;
  const head = getJson(`/api/queue/head?queueId=${queue.queueId}`, HEAD);
  if (head.status === 200) {
    waitingCrowd.add(head.json('waiting'));
  }
}

export default function (queue) {
  measureActive(queue);
  const now = Date.now();
  arrive(queue, now);
  crowd.poll(now);
  readHead(queue, now);
}
