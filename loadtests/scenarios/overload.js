// Overload (issue 23): joins offered open-loop at about the machine's capacity, then at twice
// it, one after the other. `goodput{phase}` counts new places (201) per phase: with the host
// queueing before it sheds, goodput at twice the capacity stays near the peak instead of
// collapsing, and what is served keeps its latency bound (failures are 503s with
// Retry-After, never timeouts). Open-loop: arrivals do not wait for answers.
//   bench  CAPACITY joins/s (default 3,500, about this 2-core machine's peak with k6 on it)
//          for 20 s, then twice that for 20 s
import { Counter } from 'k6/metrics';
import { byProfile, measureActive, named, postJson, ready, uniqueUser, withCommonOptions } from '../lib.js';

const CAPACITY = Number(__ENV.CAPACITY || 3500);
const SECONDS = byProfile({ bench: 20 });
const goodput = new Counter('goodput');

function phase(name, rate, startSeconds) {
  return {
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration: `${SECONDS}s`,
    startTime: `${startSeconds}s`,
    preAllocatedVUs: 500,
    maxVUs: 3000,
    tags: { phase: name },
  };
}

export const options = withCommonOptions({
  scenarios: {
    capacity: phase('capacity', CAPACITY, 0),
    twice: phase('twice', 2 * CAPACITY, SECONDS + 5),
  },
  thresholds: {
    // Shedding is allowed; collapse is not: nearly every answer is a place or a clean 503.
    'http_req_failed{phase:capacity}': ['rate<0.01'],
    'http_req_duration{phase:twice,expected_response:true}': ['p(95)<5000'],
    'goodput{phase:capacity}': ['count>0'],
    'goodput{phase:twice}': ['count>0'],
  },
  discardResponseBodies: true,
}, ['join']);

export function setup() {
  return ready({});
}

const JOIN = named('join', 201);

export default function (data) {
  measureActive(data);
  const res = postJson('/api/queue/tokens', { userId: uniqueUser() }, JOIN);
  if (res.status === 201) {
    goodput.add(1);
  }
}
