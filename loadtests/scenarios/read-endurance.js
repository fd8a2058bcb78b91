// Scenario 5, read endurance and the cache: concert list, details, schedules and seat maps
// at a fixed arrival rate, with the read cache flushed mid-run by loadtests/run (FLUSH_AT
// seconds after the start). Requests are tagged `phase:cold` in the 15 s after the start
// (loadtests/run empties Redis before each scenario) and after the flush, `phase:steady`
// otherwise, so the report shows the cached latency and the miss penalty side by side.
//   smoke  1,000 reads/s for 50 s, flush at 25 s
//   full   the e-commerce seed's 1,000 -> 2,000 -> 5,000 reads/s over 5 min, flush at 4 min
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';
import { BASE_URL, byProfile, measureActive, ready, SEED, withCommonOptions } from '../lib.js';

const SHAPES = {
  smoke: { executor: 'constant-arrival-rate', rate: 1000, timeUnit: '1s', duration: '50s', preAllocatedVUs: 100, maxVUs: 500 },
  full: {
    executor: 'ramping-arrival-rate',
    startRate: 1000,
    timeUnit: '1s',
    stages: [
      { duration: '1m', target: 1000 }, { duration: '30s', target: 2000 }, { duration: '1m', target: 2000 },
      { duration: '30s', target: 5000 }, { duration: '2m', target: 5000 },
    ],
    preAllocatedVUs: 300,
    maxVUs: 2000,
  },
};

// From the seats component's x-cache header: hit, stale (past its time to live, answered
// while another reader rebuilds it), shared (another reader's rebuild, waited for) or miss
// (this request read MySQL). A stale answer is a hit: it came from the cache at once.
const cacheHit = new Rate('cache_hit');
const databaseReads = new Counter('cache_database_reads');

const FLUSH_AT = Number(__ENV.FLUSH_AT || -1000);
const COLD_SECONDS = 15;

export const options = withCommonOptions({
  scenarios: { reads: byProfile(SHAPES) },
  // Only statuses are checked; reading seat maps would spend the shared CPU on k6.
  discardResponseBodies: true,
  thresholds: {
    // The seeds: cached reads P95 < 50 ms and P99 < 100 ms, errors < 0.1 %, > 3,000 reads/s
    // at full load; the flush may cost, but not a second.
    'http_req_duration{phase:steady}': ['p(95)<50', 'p(99)<100'],
    'http_req_duration{phase:cold}': ['p(95)<1000'],
    http_req_failed: ['rate<0.001'],
    http_reqs: [byProfile({ smoke: 'rate>900', full: 'rate>3000' })],
    checks: ['rate>0.999'],
    'cache_hit{phase:steady}': ['rate>=0.95'],
    'cache_hit{phase:cold}': ['rate>0.5'],
  },
}, ['concerts', 'concert', 'schedules', 'seats']);

export function setup() {
  return ready({});
}

function anyConcert() {
  return Math.floor(Math.random() * SEED.concerts) + 1;
}

// What a browsing crowd asks for: mostly seat maps, then schedules, list and details.
function pick() {
  const roll = Math.random();
  const concert = anyConcert();
  if (roll < 0.1) {
    return ['concerts', '/api/concerts'];
  }
  if (roll < 0.2) {
    return ['concert', `/api/concerts/${concert}`];
  }
  if (roll < 0.4) {
    return ['schedules', `/api/concerts/${concert}/schedules`];
  }
  const schedule = concert * 100 + Math.floor(Math.random() * SEED.schedulesPerConcert) + 1;
  return ['seats', `/api/schedules/${schedule}/seats`];
}

export default function (data) {
  measureActive(data);
  const elapsed = (Date.now() - data.readyAt) / 1000;
  const cold = elapsed < COLD_SECONDS || (elapsed >= FLUSH_AT && elapsed < FLUSH_AT + COLD_SECONDS);
  const phase = cold ? 'cold' : 'steady';
  const [name, path] = pick();
  const res = http.get(`${BASE_URL}${path}`, { tags: { name, phase } });
  if (check(res, { 'read answered': (r) => r.status === 200 })) {
    const source = res.headers['X-Cache'];
    cacheHit.add(source === 'hit' || source === 'stale', { phase });
    if (source === 'miss') {
      databaseReads.add(1, { phase });
    }
  }
}
