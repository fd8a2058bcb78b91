// The pages' one way to the API: JSON in and out, the API's error body as an ApiError,
// and the retry rules in one place, so no screen can get them subtly different.
//
// Retried here, after Retry-After (or 1-2 s) plus jitter, so that a crowd told "1 s"
// does not come back in the same millisecond:
//  - 429 and 503: refused before anything was written, so any request may repeat. Except a
//    payment's 503 that names a paymentId: that is the key's recorded outcome (FAILED, the
//    gateway was unavailable) and the same key would replay it forever; the caller must
//    start a new attempt under a new key.
//  - 409 idempotency_in_progress: the same key is still being worked on.
//  - no answer, 502 or 504: the request may or may not have taken effect, so only when
//    repeating it is harmless (GET, an Idempotency-Key, or `repeatable`).
// Everything else is the caller's to show. A fan is never left at a dead end: retries go
// on as long as the server asks for them, and `onBusy` lets the page say so.

const LONGEST_WAIT_MS = 30_000;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || (status
      ? `The server answered ${status}. Please try again.`
      : 'The server could not be reached. Check your connection and try again.'));
    this.status = status; // 0: no answer
    this.code = body?.error || (status ? `http_${status}` : 'network');
    this.details = body?.details || {};
  }
}

// ---- "busy, retrying in N s" ------------------------------------------------------------

let busyListener = () => {};
const retriesAt = new Map(); // request → when it is tried again (epoch ms)
let requests = 0;

/** `listener(epochMs)`: the latest pending retry, or 0 when none is waiting. */
export function onBusy(listener) {
  busyListener = listener;
}

function noteRetry(request, at) {
  if (at) retriesAt.set(request, at);
  else retriesAt.delete(request);
  busyListener(retriesAt.size ? Math.max(...retriesAt.values()) : 0);
}

// ---- the server's clock -----------------------------------------------------------------

// Deadlines (a hold's, a pass's) are the server's times; a fan's clock may be minutes off.
// The Date header has whole seconds, so the server's clock read in [date, date + 1 s): the
// estimate moves only when it is off by more than that, so countdowns do not jitter.
let skewMs = 0;

/** The server's time now, as well as the responses tell it (epoch ms). */
export function serverNow() {
  return Date.now() + skewMs;
}

function noteClock(response) {
  const date = Date.parse(response.headers.get('Date') || '');
  if (Number.isNaN(date)) return;
  const estimate = date + 500 - Date.now();
  if (Math.abs(estimate - skewMs) > 1000) skewMs = estimate;
}

// ---- requests ---------------------------------------------------------------------------

/**
 * `fetch` for the API. Resolves to the JSON body, rejects with an ApiError.
 * Options: method, body (sent as JSON), token (bearer), idempotencyKey, repeatable (the
 * request may be sent twice: GET and keyed requests are), retry (false: fail at once, for
 * pollers that try again anyway).
 */
export async function api(path, options = {}) {
  const { method = 'GET', body, token, idempotencyKey, retry = true } = options;
  const repeatable = options.repeatable ?? (method === 'GET' || Boolean(idempotencyKey));
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  const request = ++requests;
  try {
    for (let attempt = 1; ; attempt++) {
      let response;
      let data;
      try {
        response = await fetch(path, init);
        data = await readJson(response);
      } catch {
        if (!retry || !repeatable) throw new ApiError(0);
        await wait(request, backoff(attempt));
        continue;
      }
      noteClock(response);
      if (response.ok) return data;
      const error = new ApiError(response.status, data);
      if (!retry || !retryable(error, repeatable)) throw error;
      await wait(request, retryAfter(response) ?? backoff(attempt));
    }
  } finally {
    noteRetry(request, 0);
  }
}

function retryable(error, repeatable) {
  switch (error.status) {
    case 429:
      return true;
    case 503:
      return error.details.paymentId === undefined;
    case 409:
      return error.code === 'idempotency_in_progress';
    case 502:
    case 504:
      return repeatable;
    default:
      return false;
  }
}

/** A body that is not JSON (a proxy's error page) reads as null, not as a failure. */
async function readJson(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** Retry-After in ms plus up to 25 % jitter, or null without a usable header. */
function retryAfter(response) {
  const seconds = Number(response.headers.get('Retry-After') ?? NaN);
  if (!Number.isFinite(seconds) || seconds < 0) return null;
  return Math.min(seconds * 1000 * (1 + Math.random() / 4), LONGEST_WAIT_MS);
}

/** 1-2 s on the first retry, doubling to at most 30 s. */
function backoff(attempt) {
  const base = Math.min(1000 * 2 ** (attempt - 1), LONGEST_WAIT_MS / 2);
  return base + Math.random() * base;
}

function wait(request, ms) {
  noteRetry(request, Date.now() + ms);
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A fresh Idempotency-Key (a UUID v4). crypto.randomUUID exists only in secure contexts;
 * getRandomValues everywhere.
 */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)]
    .join('-');
}

/** Seconds as "4:05" (or "1:02:03"), for countdowns. */
export function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const mm = String(Math.floor(s / 60) % 60);
  const ss = String(s % 60).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm.padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}
