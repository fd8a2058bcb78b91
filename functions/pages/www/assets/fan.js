// The fan's page: join the queue, wait, choose seats, hold them, pay; or, sold out, wait on
// the concert's waitlist for a seat offered back. One view at a time.
// What must survive a reload is in sessionStorage: the queue ticket, a live hold and the
// waitlist joined, per queue (polling again with the ticket gives the same pass or entry
// back), and each reservation's Idempotency-Key until its payment attempt has an outcome.
import { api, clock, newIdempotencyKey, onBusy, serverNow } from './api.js';

const MAX_SEATS = 4; // the API's default max_seats_per_reservation (it refuses more anyway)
const HEAD_EVERY_MS = 3000; // the head is cached 1 s and is only news: it never admits anyone
// While a fan chooses, the seat map is read again: a hold elsewhere clears its cache at
// once, so this bounds how stale the fan's view gets, at one cheap read per fan per 10 s.
const MAP_EVERY_MS = 10_000;
const SEATS_PER_ROW = 20; // rows for seat labels that do not name one ("A-07" does)
// The API names no venue time zone; every price is in won, so every venue is in Korea. A
// show's time is read where the show is, wherever the fan happens to be.
const VENUE_TIME_ZONE = 'Asia/Seoul';

const $ = (id) => document.getElementById(id);
const won = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'KRW' });
const count = new Intl.NumberFormat();
const showTime = new Intl.DateTimeFormat(undefined, {
  weekday: 'short', year: 'numeric', month: 'short', day: 'numeric', hour: 'numeric',
  minute: '2-digit', timeZone: VENUE_TIME_ZONE, timeZoneName: 'short',
});

const queueId = new URLSearchParams(location.search).get('queue') || 'default';
const saveKey = `fan:${queueId}`;
const VIEWS = ['join-view', 'waiting', 'waitlist', 'shop', 'checkout', 'result', 'ended'];

const fan = {
  view: 'join-view',
  userId: '',
  ticket: null, // { token, position }
  pass: null, // { token, expiresAt (epoch ms) }
  line: null, // the last WAITING status
  front: 0, // the head's firstWaitingPosition
  rate: 0, // the head's ratePerSec
  startAhead: null, // for the progress bar
  concertId: null,
  scheduleId: null,
  seats: new Map(), // seatId -> seat, every seat of the schedule seen so far
  free: new Set(), // seatIds the last seat map offered
  selected: new Set(),
  conflict: new Set(), // seatIds a 409 named: taken, whatever a cached map still says
  hold: null, // the reservation being paid for
  soldOut: null, // the concert a SOLD_OUT answer named, whose waitlist the fan may join
  waitlist: null, // the concert whose waitlist the fan is on: then a hold is its offer
  paying: false,
  busyUntil: 0,
};
const timers = { poll: 0, head: 0, map: 0, waitlist: 0 };

const ENDINGS = {
  ABANDONED: ['You lost your place',
    'The page stopped checking in for too long, so the place was given up.'],
  PASS_EXPIRED: ['Your turn has ended', 'The time to choose and pay ran out.'],
  CONSUMED: ['Your turn is complete', 'This turn was used for a completed payment.'],
};
const OFFER_ENDINGS = {
  EXPIRED: ['Your offer has lapsed', 'It was not paid in time and went to the next fan on the waitlist.'],
  CANCELLED: ['You let the seat go', 'It goes to the next fan on the waitlist.'],
};
const PASSED_OVER = ['You have all the seats you may buy',
  'When your turn on the waitlist came you already owned the most seats one fan may have for this concert.'];

// ---- small helpers ----------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/** Shows one view; an error shown for the last one goes with it. */
function show(view) {
  fan.view = view;
  for (const id of VIEWS) $(id).hidden = id !== view;
  clearError();
}

function showError(error) {
  $('error').textContent = typeof error === 'string' ? error : error.message;
  $('error').hidden = false;
}

function clearError() {
  $('error').hidden = true;
}

function save() {
  const { userId, ticket, hold, waitlist } = fan;
  sessionStorage.setItem(saveKey, JSON.stringify({ userId, ticket, hold, waitlist }));
}

function restore() {
  try {
    return JSON.parse(sessionStorage.getItem(saveKey)) || {};
  } catch {
    return {};
  }
}

function duration(seconds) {
  if (seconds < 60) return 'under a minute';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  return `about ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function labels(seatIds) {
  return seatIds.map((id) => fan.seats.get(id)).filter(Boolean)
    .sort((a, b) => a.seatNo - b.seatNo).map((seat) => seat.label).join(', ');
}

function stopTimers() {
  for (const name of Object.keys(timers)) clearTimeout(timers[name]);
}

/** Ends the turn: only a new join helps now. */
function end(title, text) {
  stopTimers();
  Object.assign(fan, { ticket: null, pass: null, hold: null, waitlist: null });
  save();
  $('ended-title').textContent = title;
  $('ended-text').textContent = text;
  show('ended');
}

// ---- joining and waiting ----------------------------------------------------------------

async function join(event) {
  event?.preventDefault();
  const userId = $('user-id').value.trim();
  if (!/^[1-9][0-9]{0,17}$/.test(userId)) {
    show('join-view');
    return showError('Enter your user id: digits only, not starting with 0.');
  }
  clearError();
  $('join').disabled = $('rejoin').disabled = $('again').disabled = true;
  try {
    // The id stays a string: a JSON number loses digits past 2^53. Joining again while the
    // place lives answers the same place, so a join may safely be sent twice.
    const ticket = await api('/api/queue/tokens', {
      method: 'POST', body: { userId, queueId }, repeatable: true,
    });
    const { token, position } = ticket;
    Object.assign(fan, { userId, ticket: { token, position }, hold: null, waitlist: null });
    save();
    enterLine();
  } catch (error) {
    show('join-view');
    showError(error);
  } finally {
    $('join').disabled = $('rejoin').disabled = $('again').disabled = false;
  }
}

function enterLine() {
  Object.assign(fan, { line: null, front: 0, startAhead: null });
  // Before a scheduled sale opens a join is an entry in its draw, without a number yet.
  $('position').textContent = fan.ticket.position ? count.format(fan.ticket.position) : '–';
  $('ahead').textContent = $('eta').textContent = '–';
  show('waiting');
  poll();
  pollHead();
}

/** Polls the place at the pace the server sets: each poll is also the fan's sign of life. */
async function poll() {
  clearTimeout(timers.poll);
  let status;
  try {
    status = await api('/api/queue/status', { token: fan.ticket.token });
  } catch (error) {
    // 401 (ticket expired), 404 (the place is gone) and the like: only a new join helps.
    if (fan.view === 'waiting') end('Your place could not be found', error.message);
    return;
  }
  if (fan.view !== 'waiting') return;
  if (status.status === 'WAITING' || status.status === 'SOLD_OUT') {
    fan.line = status;
    fan.soldOut = status.status === 'SOLD_OUT' ? status.concertId ?? null : null;
    $('gathering').hidden = true;
    $('sold-out').hidden = status.status !== 'SOLD_OUT';
    $('waitlist-offer').hidden = !fan.soldOut;
    renderLine();
    timers.poll = setTimeout(poll, status.pollAfterMs);
  } else if (status.status === 'GATHERING') {
    renderGathering(status);
    timers.poll = setTimeout(poll, status.pollAfterMs);
  } else if (status.status === 'ACTIVE') {
    admitted(status);
  } else {
    end(...(ENDINGS[status.reason] ?? ['Your turn has ended', status.reason]));
  }
}

/** The line's front and pace, the same for every fan (a CDN may serve it). */
async function pollHead() {
  clearTimeout(timers.head);
  try {
    const path = `/api/queue/head?queueId=${encodeURIComponent(queueId)}`;
    const head = await api(path, { retry: false });
    fan.front = head.firstWaitingPosition;
    fan.rate = head.ratePerSec ?? 0;
    renderLine();
  } catch {
    // Only news: the next read will do.
  }
  if (fan.view === 'waiting') timers.head = setTimeout(pollHead, HEAD_EVERY_MS);
}

/** Before the opening: when it is, and how many gathered for the draw. */
function renderGathering(status) {
  $('opens-at').textContent = new Date(status.opensAt).toLocaleTimeString();
  $('entry').textContent = count.format(status.entry);
  $('entrants').textContent = count.format(status.entrants);
  $('gathering').hidden = false;
  $('pace').hidden = true;
}

function renderLine() {
  $('rate').textContent = count.format(fan.rate);
  // Nobody is let in while the sale gathers for its draw, or while it is sold out.
  const soldOut = !$('sold-out').hidden;
  $('pace').hidden = !fan.rate || !$('gathering').hidden || soldOut;
  const line = fan.line;
  if (!line) return;
  // Far back, status polls come up to 30 s apart and the head is fresher. For a given
  // place the count ahead only falls, so the smaller one is the newer.
  const fromHead = fan.front ? Math.max(0, line.position - fan.front) : Infinity;
  const ahead = Math.min(line.ahead, fromHead);
  // The server's estimate, core::queue eta_secs, recomputed when the head moved it on.
  const eta = ahead < line.ahead && fan.rate ? Math.ceil((ahead + 1) / fan.rate) : line.etaSeconds;
  fan.startAhead ??= ahead;
  $('position').textContent = count.format(line.position);
  $('ahead').textContent = count.format(ahead);
  if (soldOut) $('eta').textContent = 'When seats come back';
  else $('eta').textContent = ahead === 0 ? "You're next" : duration(eta);
  $('progress').value = fan.startAhead ? 1 - ahead / fan.startAhead : 1;
}

// ---- the waitlist ----------------------------------------------------------------------

/** Sold out: the fan trades their place in the line for one on the concert's waitlist. */
async function joinWaitlist() {
  const concertId = fan.soldOut;
  $('waitlist-join').disabled = true;
  clearError();
  try {
    // Joining again answers the place already taken, so it may be sent twice.
    const entry = await api(`/api/concerts/${concertId}/waitlist`, {
      method: 'POST', token: fan.ticket.token, repeatable: true,
    });
    fan.waitlist = concertId;
    save();
    stopTimers();
    show('waitlist');
    renderWaitlist(entry);
  } catch (error) {
    // 409: seats came back and the line admits again, so the fan stays in it.
    showError(error);
  } finally {
    $('waitlist-join').disabled = false;
  }
}

function enterWaitlist() {
  $('waitlist-ahead').textContent = '–';
  show('waitlist');
  pollWaitlist();
}

/** The entry at the pace the server sets, until a seat is offered or the entry ends. */
async function pollWaitlist() {
  clearTimeout(timers.waitlist);
  try {
    const path = `/api/concerts/${fan.waitlist}/waitlist`;
    renderWaitlist(await api(path, { token: fan.ticket.token }));
  } catch (error) {
    if (fan.view === 'waitlist') end('Your waitlist place could not be found', error.message);
  }
}

function renderWaitlist(entry) {
  if (fan.view !== 'waitlist') return;
  if (entry.state === 'WAITING') {
    $('waitlist-ahead').textContent = count.format(entry.ahead);
    timers.waitlist = setTimeout(pollWaitlist, entry.pollAfterMs);
  } else if (entry.state === 'PASSED_OVER') {
    end(...PASSED_OVER);
  } else if (entry.offer.status === 'HELD') {
    fan.hold = entry.offer;
    save();
    showCheckout();
    loadBalance();
  } else if (entry.offer.status === 'CONFIRMED') {
    end('Your seat is paid', 'The seat offered to you from the waitlist is yours.');
  } else {
    end(...(OFFER_ENDINGS[entry.offer.status] ?? OFFER_ENDINGS.EXPIRED));
  }
}

/** What pays for or lets go of the hold: the pass, or for a waitlist offer the ticket. */
function holdToken() {
  return fan.waitlist ? fan.ticket.token : fan.pass.token;
}

// ---- choosing seats ---------------------------------------------------------------------

function admitted(status) {
  stopTimers();
  fan.pass = { token: status.pass, expiresAt: Date.parse(status.expiresAt) };
  show('shop');
  tick();
  loadBalance();
  loadConcerts();
  if (fan.hold) resumeHold();
}

/** After a reload: a hold that still lives goes straight to paying. */
async function resumeHold() {
  try {
    const path = `/api/reservations/${fan.hold.reservationId}`;
    const hold = await api(path, { token: fan.pass.token });
    if (hold.status === 'HELD') {
      fan.hold = hold;
      return showCheckout();
    }
  } catch {
    // Gone or unreadable: choose again.
  }
  fan.hold = null;
  save();
}

async function loadBalance() {
  const token = fan.pass?.token ?? fan.ticket?.token;
  if (!token) return;
  try {
    const { balance } = await api(`/api/users/${fan.userId}/balance`, { token, retry: false });
    $('balance-amount').textContent = won.format(balance);
    $('balance').hidden = false;
  } catch {
    // The balance is shown when known; paying reports a short one anyway.
  }
}

function choice(data, title, detail) {
  const button = el('button', { type: 'button', className: 'choice' },
    el('strong', { textContent: title }), el('span', { textContent: detail }));
  Object.assign(button.dataset, data);
  button.setAttribute('aria-pressed', 'false');
  return button;
}

function pick(list, chosen) {
  for (const button of list.children) {
    button.setAttribute('aria-pressed', String(button === chosen));
  }
}

async function loadConcerts() {
  try {
    const { concerts } = await api('/api/concerts');
    $('concerts').replaceChildren(...concerts.map((c) =>
      choice({ concertId: c.concertId }, c.title, `${c.artist} · ${c.venue}`)));
  } catch (error) {
    showError(error);
  }
}

async function chooseConcert(concertId) {
  Object.assign(fan, { concertId, scheduleId: null });
  clearTimeout(timers.map);
  $('schedule-step').hidden = $('seat-step').hidden = true;
  try {
    const { schedules } = await api(`/api/concerts/${concertId}/schedules`);
    if (fan.concertId !== concertId) return;
    // Sold-out dates stay clickable: this list is cached for minutes, and a lapsed hold
    // may have put seats back on sale since.
    $('schedules').replaceChildren(...schedules.map((s) => choice(
      { scheduleId: s.scheduleId, free: s.availableSeats },
      showTime.format(new Date(s.startsAt)),
      s.availableSeats
        ? `${count.format(s.availableSeats)} of ${count.format(s.totalSeats)} seats open`
        : 'Sold out',
    )));
    $('schedules').dataset.concertId = concertId;
    $('schedule-step').hidden = false;
  } catch (error) {
    showError(error);
  }
}

function chooseSchedule(scheduleId) {
  Object.assign(fan, { scheduleId, seats: new Map(), free: new Set() });
  fan.selected.clear();
  fan.conflict.clear();
  $('seat-map').replaceChildren();
  delete $('seat-map').dataset.scheduleId;
  $('seat-step').hidden = false;
  renderSelection();
  loadSeatMap();
}

/** Reads the seat map, and again every few seconds while the fan chooses. */
async function loadSeatMap() {
  clearTimeout(timers.map);
  const scheduleId = fan.scheduleId;
  if (!document.hidden) {
    try {
      const map = await api(`/api/schedules/${scheduleId}/seats`);
      if (fan.scheduleId !== scheduleId) return;
      const known = fan.seats.size;
      for (const seat of [...map.seats, ...(map.takenSeats ?? [])]) {
        fan.seats.set(seat.seatId, seat);
      }
      fan.free = new Set(map.seats.map((seat) => seat.seatId));
      const lost = [...fan.selected].filter((id) => !fan.free.has(id));
      for (const id of lost) {
        fan.selected.delete(id);
        fan.conflict.add(id);
      }
      if (fan.seats.size !== known) drawSeats();
      if (!known) $('seat-step').scrollIntoView({ block: 'start' });
      paintSeats();
      renderSelection();
      if (lost.length) showError(`Someone else just took ${labels(lost)}. Choose another seat.`);
    } catch (error) {
      showError(error);
    }
  }
  clearTimeout(timers.map);
  if (fan.view === 'shop' && fan.scheduleId === scheduleId) {
    timers.map = setTimeout(loadSeatMap, MAP_EVERY_MS);
  }
}

/** One button per seat, in rows as the labels name them ("A-07": row A, seat 07). */
function drawSeats() {
  const rows = new Map();
  for (const seat of [...fan.seats.values()].sort((a, b) => a.seatNo - b.seatNo)) {
    const [, row, number] = /^(.+?)-(.+)$/.exec(seat.label) ?? [];
    const name = row ?? String(Math.floor((seat.seatNo - 1) / SEATS_PER_ROW) + 1);
    const button = el('button', {
      type: 'button', className: 'seat', textContent: number ?? seat.seatNo,
      title: `${seat.label} · ${won.format(seat.price)}`,
    });
    button.dataset.seatId = seat.seatId;
    button.setAttribute('aria-label', `${seat.label}, ${won.format(seat.price)}`);
    if (!rows.has(name)) rows.set(name, [el('span', { className: 'row-name', textContent: name })]);
    rows.get(name).push(button);
  }
  const lines = [...rows.values()].map((row) => el('div', { className: 'row' }, ...row));
  $('seat-map').replaceChildren(...lines);
  $('seat-map').dataset.scheduleId = fan.scheduleId;
}

function paintSeats() {
  for (const button of $('seat-map').querySelectorAll('[data-seat-id]')) {
    const id = Number(button.dataset.seatId);
    const conflict = fan.conflict.has(id);
    const free = fan.free.has(id) && !conflict;
    const state = fan.selected.has(id) ? 'selected' : free ? 'free' : 'taken';
    button.className = `seat ${state}${conflict ? ' conflict' : ''}`;
    button.disabled = state === 'taken';
    button.setAttribute('aria-pressed', String(state === 'selected'));
  }
}

function toggleSeat(id) {
  if (fan.selected.has(id)) {
    fan.selected.delete(id);
  } else if (fan.selected.size < MAX_SEATS) {
    fan.selected.add(id);
  } else {
    return renderSelection(`You can hold up to ${MAX_SEATS} seats at a time.`);
  }
  paintSeats();
  renderSelection();
}

function renderSelection(hint) {
  const ids = [...fan.selected];
  const total = ids.reduce((sum, id) => sum + fan.seats.get(id).price, 0);
  $('selection').textContent = hint
    ?? (ids.length ? `${labels(ids)} · ${won.format(total)}` : `Choose up to ${MAX_SEATS} seats.`);
  $('hold').disabled = ids.length === 0;
  $('hold').textContent = ids.length > 1 ? `Hold ${ids.length} seats` : 'Hold seat';
}

async function hold() {
  const seatIds = [...fan.selected];
  clearError();
  $('hold').disabled = true;
  try {
    fan.hold = await api('/api/reservations', {
      method: 'POST', token: fan.pass.token, body: { scheduleId: fan.scheduleId, seatIds },
    });
    fan.selected.clear();
    save();
    showCheckout();
  } catch (error) {
    if (error.status === 401) return end('Your turn has ended', error.message);
    if (error.code !== 'seats_unavailable') {
      renderSelection();
      return showError(error);
    }
    // All or none: nothing was held. Mark the seats named, keep the rest chosen, and say
    // it in the API's words with the seats' labels.
    const taken = error.details.seatIds ?? [];
    for (const id of taken) {
      fan.conflict.add(id);
      fan.selected.delete(id);
    }
    paintSeats();
    renderSelection();
    loadSeatMap();
    const named = labels(taken);
    showError(named ? `${error.message} (${named})` : error);
  }
}

// ---- paying -----------------------------------------------------------------------------

function showCheckout() {
  clearTimeout(timers.map);
  const { seats, amount } = fan.hold;
  const names = seats.map((seat) => seat.label).join(', ');
  const offer = Boolean(fan.waitlist);
  $('checkout-title').textContent = offer ? 'A seat came back for you' : 'Your seats are held';
  $('hold-fate').textContent = offer
    ? 'it goes to the next fan on the waitlist' : 'the seats go back on sale';
  $('release').textContent = offer ? 'Decline the seat' : 'Release seats';
  $('hold-summary').textContent = `${names} · ${won.format(amount)}`;
  $('pay').hidden = false;
  $('pay').disabled = $('release').disabled = false;
  show('checkout');
  tick();
}

/** Back to the seat map of the hold's date (after a reload, the only one known). A waitlist
 * offer has no seat map: its entry is read again in a second and tells how the offer ended
 * (in a second, so that a server a moment behind the fan's clock is not asked in a loop). */
function backToSeats(message) {
  if (fan.waitlist) {
    fan.hold = null;
    save();
    show('waitlist');
    if (message) showError(message);
    timers.waitlist = setTimeout(pollWaitlist, 1000);
    return;
  }
  const scheduleId = fan.hold?.scheduleId;
  fan.hold = null;
  save();
  show('shop');
  if (message) showError(message);
  if (fan.scheduleId) loadSeatMap();
  else if (scheduleId) chooseSchedule(scheduleId);
}

async function pay() {
  const hold = fan.hold;
  // One key per payment attempt, kept across reloads: repeating an attempt whose outcome
  // is unknown (no answer, 5xx) under its key can never pay twice.
  const keyName = `pay-key:${hold.reservationId}`;
  const key = sessionStorage.getItem(keyName) ?? newIdempotencyKey();
  sessionStorage.setItem(keyName, key);
  clearError();
  $('result').hidden = true;
  $('pay').disabled = $('retry').disabled = $('release').disabled = true;
  fan.paying = true;
  try {
    const payment = await api('/api/payments', {
      method: 'POST',
      token: holdToken(),
      idempotencyKey: key,
      body: { reservationId: hold.reservationId },
    });
    sessionStorage.removeItem(keyName);
    paid(hold, payment);
  } catch (error) {
    // A definite answer (declined, short balance, a payment failed at the gateway) is
    // this key's outcome for good; the next attempt needs a new key.
    const unknown = error.status === 0
      || (error.status >= 500 && error.details.paymentId === undefined);
    if (!unknown) sessionStorage.removeItem(keyName);
    payFailed(error);
  } finally {
    fan.paying = false;
    $('retry').disabled = false;
  }
}

function paid(hold, payment) {
  Object.assign(fan, { hold: null, ticket: null, waitlist: null }); // the pass is used up now
  save();
  show('result');
  $('result').className = 'card paid';
  $('result').dataset.paymentId = payment.paymentId;
  $('result-title').textContent = 'Paid. Enjoy the show!';
  $('result-text').textContent = `${hold.seats.map((seat) => seat.label).join(', ')} · `
    + `${won.format(payment.amount)} · payment no. ${payment.paymentId}`;
  $('retry').hidden = true;
  $('again').hidden = false;
  loadBalance();
}

function payFailed(error) {
  if (error.status === 401) return end('Your turn has ended', error.message);
  if (error.status === 410) return backToSeats(error.message); // the hold lapsed
  // The hold still lives: say why, and offer another attempt unless it cannot help.
  $('pay').hidden = true;
  $('release').disabled = false;
  $('result').className = 'card failed';
  $('result-title').textContent = 'Payment failed';
  $('result-text').textContent = error.message;
  $('retry').hidden = error.code === 'insufficient_balance';
  $('again').hidden = true;
  $('result').hidden = false;
}

async function release() {
  $('pay').disabled = $('release').disabled = true;
  try {
    await api(`/api/reservations/${fan.hold.reservationId}`, {
      method: 'DELETE', token: holdToken(), repeatable: true,
    });
    if (fan.waitlist) return end(...OFFER_ENDINGS.CANCELLED);
    backToSeats();
  } catch (error) {
    if (error.status === 401) return end('Your turn has ended', error.message);
    // 409/410: paid, lapsed or released already; the hold is not ours to pay any more.
    if (error.status === 409 || error.status === 410) return backToSeats(error.message);
    $('pay').disabled = $('release').disabled = false;
    showError(error);
  }
}

// ---- the clock --------------------------------------------------------------------------

/** Once a second: the busy note and the deadlines, in the server's time. */
function tick() {
  const busy = Math.ceil((fan.busyUntil - Date.now()) / 1000);
  const when = busy > 0 ? `in ${busy} s` : 'now';
  $('notice').textContent = `The service is busy; trying again ${when}.`;
  $('notice').hidden = !fan.busyUntil;
  if (!['shop', 'checkout'].includes(fan.view)) return;
  const now = serverNow();
  // A waitlist offer is paid with the ticket: only the hold's own deadline counts.
  const passEnds = fan.waitlist ? Infinity : fan.pass.expiresAt;
  const passLeft = (passEnds - now) / 1000;
  if (passLeft <= 0 && !fan.paying) return end(...ENDINGS.PASS_EXPIRED);
  if (!fan.waitlist) $('pass-left').textContent = `You have ${clock(passLeft)} to choose and pay.`;
  if (fan.view === 'checkout') {
    // Paying needs both the hold and the pass alive.
    const left = (Math.min(Date.parse(fan.hold.expiresAt), passEnds) - now) / 1000;
    if (left <= 0 && !fan.paying) {
      return backToSeats(fan.waitlist ? '' : 'Your hold lapsed and the seats went back on sale.');
    }
    $('hold-countdown').textContent = clock(left);
  }
}

// ---- wiring -----------------------------------------------------------------------------

function start() {
  if (!/^[a-z0-9_-]{1,48}$/.test(queueId)) {
    $('join').disabled = true;
    return showError(`There is no queue called "${queueId}".`);
  }
  const saved = restore();
  Object.assign(fan, {
    userId: saved.userId ?? '', hold: saved.hold ?? null, waitlist: saved.waitlist ?? null,
  });
  $('user-id').value = fan.userId;
  $('join-form').addEventListener('submit', join);
  $('rejoin').addEventListener('click', join);
  $('again').addEventListener('click', join);
  $('concerts').addEventListener('click', (event) => {
    const button = event.target.closest('[data-concert-id]');
    if (!button) return;
    pick($('concerts'), button);
    chooseConcert(Number(button.dataset.concertId));
  });
  $('schedules').addEventListener('click', (event) => {
    const button = event.target.closest('[data-schedule-id]');
    if (!button) return;
    pick($('schedules'), button);
    chooseSchedule(Number(button.dataset.scheduleId));
  });
  $('seat-map').addEventListener('click', (event) => {
    const button = event.target.closest('[data-seat-id]');
    if (button && !button.disabled) toggleSeat(Number(button.dataset.seatId));
  });
  $('hold').addEventListener('click', hold);
  $('pay').addEventListener('click', pay);
  $('retry').addEventListener('click', pay);
  $('release').addEventListener('click', release);
  $('waitlist-join').addEventListener('click', joinWaitlist);
  onBusy((until) => {
    fan.busyUntil = until;
    tick();
  });
  setInterval(tick, 1000);
  if (saved.ticket) {
    fan.ticket = saved.ticket;
    if (fan.waitlist) enterWaitlist();
    else enterLine();
  } else {
    show('join-view');
  }
}

start();
