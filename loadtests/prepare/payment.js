// The payment bench's holds, made in a k6 run of their own before the measured one: k6 counts
// setup() in the duration of every rate it judges, so holds made in the bench's own setup
// (20 s here) held its payments/s threshold to the setup's pace too. Admits USERS users, holds
// each one's own seat of the large seed and writes [{ pass, reservation }] to PREPARED, the
// file the bench's run of scenarios/payment.js pays for.
import { admit, authorized, BASE_URL, batched, openQueue, seatOf } from '../lib.js';

// Issue 6's bench: 10,000 payments.
const USERS = 10000;

export const options = {
  scenarios: { prepare: { executor: 'shared-iterations', vus: 1, iterations: 1 } },
  setupTimeout: '600s',
};

export function setup() {
  if (!__ENV.PREPARED) {
    throw new Error('PREPARED must name the file the holds are written to');
  }
  const passes = admit(openQueue('pay'), Array.from({ length: USERS }, (_, i) => i + 1));
  const reservations = batched(passes.map((pass, i) => {
    const { schedule, seat } = seatOf(i);
    return ['POST', `${BASE_URL}/api/reservations`, JSON.stringify({ scheduleId: schedule, seatIds: [seat] }),
      authorized(pass)];
  })).map((r) => {
    if (r.status !== 201) {
      throw new Error(`hold failed: ${r.status} ${r.body}`);
    }
    return r.json('reservationId');
  });
  return passes.map((pass, i) => ({ pass, reservation: reservations[i] }));
}

// The work is all in setup; k6 needs an iteration to run it.
export default function () {}

export function handleSummary(data) {
  return { [__ENV.PREPARED]: JSON.stringify(data.setup_data) };
}
