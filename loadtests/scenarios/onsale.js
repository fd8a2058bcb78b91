// Scenario 7, a scheduled on-sale (open model): the queue opens at a set time; fans who
// arrive before it gather as entrants of its draw and poll GATHERING at the server's pace,
// timed to land just after the opening; the first poll after it runs the draw, which puts
// every entrant in line ahead of the latecomers who keep arriving; then admission goes on
// as in any queue. Each VU keeps the fans it let in and sends the polls that are due
// (`Crowd` in lib.js). The draw itself is checked after the run, by the verifier
// (`draws_fair`) and by `draw-check` on the published draw (loadtests/run).
//   smoke  about 2,000 fans gather over 10 s, the queue opens 2 s later; latecomers 50/s
//          from a second after it, for 15 s
//   full   over 20,000 fans gather over 50 s, the queue opens 5 s later; latecomers 100/s
//          for 40 s
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { Crowd, byProfile, configureQueue, measureActive, named, postJson, ready, uniqueUser, withCommonOptions } from '../lib.js';

const PROFILES = {
  smoke: { gatherRate: 200, gatherSeconds: 10, quietSeconds: 2, lateRate: 50, lateSeconds: 15, ratePerSec: 500, vus: 100 },
  full: { gatherRate: 420, gatherSeconds: 50, quietSeconds: 5, lateRate: 100, lateSeconds: 40, ratePerSec: 1000, vus: 400 },
};
const { gatherRate, gatherSeconds, quietSeconds, lateRate, lateSeconds, ratePerSec, vus } = byProfile(PROFILES);
const PATIENCE_SECONDS = 600;
const MAX_POLLS_PER_ITERATION = 100;

const entered = new Counter('fans_entered');
const latecomers = new Counter('fans_late');
const admitted = new Counter('fans_admitted');
const gaveUp = new Counter('fans_gave_up');
// From the opening to an entrant's first answer with a place: how long the draw took to
// reach the gathered crowd.
const placedAfterOpening = new Trend('placed_after_opening_seconds');

export const options = withCommonOptions({
  scenarios: {
    onsale: {
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
    'http_req_duration{name:status}': ['p(95)<500'],
    fans_entered: [`count>=${gatherRate * (gatherSeconds - 2)}`],
    fans_late: ['count>0'],
    // Everyone who gathered is placed within a few seconds of the opening.
    placed_after_opening_seconds: ['p(95)<15'],
    checks: ['rate>0.999'],
  },
}, ['join', 'status']);

export function setup() {
  // The first arrivals come when setup ends; the opening is after the gathering and a
  // quiet spell, so no arrival races it.
  const opensAt = new Date(Date.now() + (gatherSeconds + quietSeconds) * 1000);
  const queue = configureQueue(`onsale-${Date.now()}`, {
    open: true,
    ratePerSec,
    maxActive: 10000000,
    opensAt: opensAt.toISOString(),
  });
  return ready({ queueId: queue.queueId, opensAt: opensAt.getTime(), commitment: queue.commitment });
}

const JOIN = named('join', 201);
const STATUS = named('status', 200);

let crowd = null;

function watch(data) {
  return new Crowd(STATUS, MAX_POLLS_PER_ITERATION, (fan, res, status, answeredAt) => {
    check(res, {
      'a fan is answered GATHERING, WAITING or ACTIVE': () => ['GATHERING', 'WAITING', 'ACTIVE'].includes(status),
      'a gathering fan is told the commitment made at creation': () => status !== 'GATHERING' || res.json('commitment') === data.commitment,
    });
    if (fan.entrant && !fan.placed && (status === 'WAITING' || status === 'ACTIVE')) {
      fan.placed = true;
      placedAfterOpening.add(Math.max(0, answeredAt - data.opensAt) / 1000);
    }
    if (status === 'ACTIVE') {
      admitted.add(1);
      return false;
    }
    return status === 'GATHERING' || status === 'WAITING' || res.status === 429 || res.status === 503;
  }, () => gaveUp.add(1));
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
  const joined = postJson('/api/queue/tokens', { userId: uniqueUser(), queueId: data.queueId }, JOIN);
  const entrant = now < data.opensAt;
  const ok = check(joined, {
    'a fan who comes early enters the draw, a latecomer gets a place behind it': (r) => r.status === 201
      && (entrant ? r.json('entry') > 0 && r.json('commitment') === data.commitment : r.json('position') > 0),
  });
  if (ok) {
    (entrant ? entered : latecomers).add(1);
    crowd.add(joined.json('token'), now, PATIENCE_SECONDS, { entrant, placed: false });
  }
}

export default function (data) {
  crowd = crowd || watch(data);
  measureActive(data);
  const now = Date.now();
  if (arrives(data, now)) {
    arrive(data, now);
  }
  crowd.poll(now);
}
