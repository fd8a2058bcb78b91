// The operator's console: every queue (open or close it, change its rate and cap while it
// runs), each schedule's seats and sales, and the event pipeline, refreshed every few
// seconds. The admin key is typed in and kept in this tab's sessionStorage, never in the
// page; a refused key stops the refreshing and asks for it again.
import { api, clock } from './api.js';

const REFRESH_MS = 2500;
const KEY_NAME = 'adminKey';
// As on the fan's page: the venues are in Korea and a show's time is read there.
const VENUE_TIME_ZONE = 'Asia/Seoul';

const $ = (id) => document.getElementById(id);
const count = new Intl.NumberFormat();
const won = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'KRW' });
const showTime = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium', timeStyle: 'short', timeZone: VENUE_TIME_ZONE,
});

let adminKey = sessionStorage.getItem(KEY_NAME) || '';
let timer = 0;
// Bumped by every change sent: a refresh read before a change must not paint over it.
let changes = 0;
// The last sample of each queue's admittedTotal, for admissions per second between two.
const samples = new Map(); // queueId -> { at (ms), admitted }

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const cell = (text, className = '') => el('td', { textContent: text, className });
const num = (value) => (value == null ? '–' : count.format(value));

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = !text;
}

/**
 * Admin calls fail at once rather than retry: the console polls again in a moment, and
 * an operator's click is better answered with the error than with a spinner.
 */
function admin(path, options = {}) {
  return api(path, { ...options, token: adminKey, retry: false });
}

// ---- the key ----------------------------------------------------------------------------

function connect(event) {
  event.preventDefault();
  adminKey = $('admin-key').value.trim();
  $('admin-key').value = '';
  sessionStorage.setItem(KEY_NAME, adminKey);
  start();
}

function start() {
  showError('');
  $('key-form').hidden = true;
  $('connected').hidden = $('dashboard').hidden = false;
  refresh();
}

function stop(message) {
  clearTimeout(timer);
  adminKey = '';
  sessionStorage.removeItem(KEY_NAME);
  samples.clear();
  $('queues').tBodies[0].replaceChildren();
  $('key-form').hidden = false;
  $('connected').hidden = $('dashboard').hidden = true;
  $('refreshed').textContent = '';
  showError(message);
  $('admin-key').focus();
}

const refused = (error) => error.status === 401 || error.status === 403;

function refuse(error) {
  stop(`The admin key was refused (${error.status} ${error.code}): ${error.message}`);
}

// ---- refreshing -------------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  const key = adminKey;
  const changesBefore = changes;
  const results = await Promise.allSettled([
    admin('/api/admin/queues'), admin('/api/admin/schedules'), admin('/api/admin/pipeline'),
  ]);
  if (key !== adminKey) return; // forgotten or replaced meanwhile
  const refusal = results.find((r) => r.status === 'rejected' && refused(r.reason));
  if (refusal) return refuse(refusal.reason);
  const [queues, schedules, pipeline] = results;
  if (changes === changesBefore) section('queues', queues, renderQueues);
  section('schedules', schedules, renderSchedules);
  section('pipeline', pipeline, renderPipeline);
  $('refreshed').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  timer = setTimeout(refresh, REFRESH_MS);
}

/** Renders a section, or keeps its last numbers greyed out under the error. */
function section(name, result, render) {
  const error = $(`${name}-error`);
  let problem = result.reason && `${result.reason.message} (${result.reason.code})`;
  if (!problem) {
    try {
      render(result.value);
    } catch (unexpected) {
      problem = `Unexpected answer: ${unexpected.message}`;
    }
  }
  $(name).classList.toggle('stale', Boolean(problem));
  error.textContent = problem ? `${problem}; retrying.` : '';
  error.hidden = !problem;
}

// ---- queues -----------------------------------------------------------------------------

function renderQueues({ queues }) {
  const body = $('queues').tBodies[0];
  const now = performance.now();
  const listed = new Set();
  for (const queue of queues) {
    listed.add(queue.queueId);
    const row = rowOf(queue.queueId) ?? addQueueRow(queue.queueId);
    fillQueue(row, queue);
    noteAdmitted(row, queue, now);
  }
  for (const row of [...body.rows]) if (!listed.has(row.dataset.queueId)) row.remove();
}

function rowOf(queueId) {
  return [...$('queues').tBodies[0].rows].find((row) => row.dataset.queueId === queueId);
}

/** Rows are updated in place, so an operator's half-typed rate survives a refresh. */
function addQueueRow(queueId) {
  const input = (className, max, label) => {
    const field = el('input', { type: 'number', min: 1, max, step: 1, className });
    field.dataset.server = '';
    field.setAttribute('aria-label', `${label} of ${queueId}`);
    return field;
  };
  const row = el('tr', {},
    cell(queueId),
    el('td', {}, el('span', { className: 'state' }), ' ',
      el('button', { type: 'button', className: 'toggle secondary' })),
    el('td', {}, input('rate', 100000, 'Admissions per second')),
    el('td', {}, input('cap', 10000000, 'Most live passes')),
    cell('', 'waiting'), cell('', 'active'), cell('–', 'admitted-rate'), cell('', 'abandoned'),
    cell('', 'share'),
    el('td', {}, el('button', { type: 'button', className: 'apply', textContent: 'Apply' })));
  row.dataset.queueId = queueId;
  const body = $('queues').tBodies[0];
  body.insertBefore(row, [...body.rows].find((other) => other.dataset.queueId > queueId) ?? null);
  return row;
}

/** `applied`: the change just sent, whose fields now show the server's values. */
function fillQueue(row, queue, applied = {}) {
  const q = (selector) => row.querySelector(selector);
  row.dataset.open = String(queue.open);
  q('.state').textContent = queue.open ? 'open' : 'closed';
  q('.state').className = `state ${queue.open ? 'open' : 'closed'}`;
  q('.toggle').textContent = queue.open ? 'Close' : 'Open';
  setField(q('.rate'), queue.ratePerSec, 'ratePerSec' in applied);
  setField(q('.cap'), queue.maxActive, 'maxActive' in applied);
  q('.waiting').textContent = num(queue.waiting);
  q('.active').textContent = num(queue.active);
  q('.abandoned').textContent = num(queue.abandonedTotal);
  q('.share').textContent = num(queue.admissionSharePermille);
  const strained = queue.admissionSharePermille < 1000;
  q('.share').title = strained ? 'Admission slowed: MySQL is strained' : '';
}

/** Shows the server's value unless the operator is editing the field. */
function setField(input, value, sent) {
  const untouched = input.value === input.dataset.server && document.activeElement !== input;
  if (sent || untouched) input.value = value;
  input.dataset.server = String(value);
}

/** Admissions per second between this sample and the last (the console's clock). */
function noteAdmitted(row, queue, now) {
  const last = samples.get(queue.queueId);
  if (queue.admittedTotal == null) return;
  samples.set(queue.queueId, { at: now, admitted: queue.admittedTotal });
  if (!last || queue.admittedTotal < last.admitted) return; // first sample, or the queue was reset
  const perSecond = (queue.admittedTotal - last.admitted) / ((now - last.at) / 1000);
  row.querySelector('.admitted-rate').textContent = perSecond.toFixed(1);
}

/** Sends the fields the operator changed; the answer is the queue as it now is. */
async function change(row, patch) {
  const queueId = row.dataset.queueId;
  if (!Object.keys(patch).length) return;
  const buttons = row.querySelectorAll('button');
  for (const button of buttons) button.disabled = true;
  changes++;
  try {
    const queue = await admin(`/api/admin/queue?queueId=${encodeURIComponent(queueId)}`, {
      method: 'PUT', body: patch,
    });
    fillQueue(row, queue, patch);
    showError('');
  } catch (error) {
    if (refused(error)) return refuse(error);
    showError(`Queue ${queueId}: ${error.message}`);
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

function edits(row) {
  const patch = {};
  for (const [className, field] of [['rate', 'ratePerSec'], ['cap', 'maxActive']]) {
    const input = row.querySelector(`.${className}`);
    const edited = input.value !== input.dataset.server && input.value !== '';
    if (edited) patch[field] = Number(input.value);
  }
  return patch;
}

async function createQueue(event) {
  event.preventDefault();
  const queueId = $('new-queue-id').value.trim();
  changes++;
  // PUT creates a missing queue, open, with the default policy; for an existing queue an
  // empty change changes nothing.
  try {
    const queue = await admin(`/api/admin/queue?queueId=${encodeURIComponent(queueId)}`, {
      method: 'PUT', body: {},
    });
    fillQueue(rowOf(queueId) ?? addQueueRow(queueId), queue);
    $('new-queue-id').value = '';
    showError('');
  } catch (error) {
    if (refused(error)) return refuse(error);
    showError(`Queue ${queueId}: ${error.message}`);
  }
}

// ---- schedules and pipeline -------------------------------------------------------------

function renderSchedules({ schedules }) {
  const total = { free: 0, held: 0, sold: 0, salesWon: 0 };
  const rows = [...schedules].sort((a, b) => a.scheduleId - b.scheduleId).map((s) => {
    for (const key of Object.keys(total)) total[key] += s[key];
    return el('tr', {}, cell(s.scheduleId), cell(s.title),
      cell(showTime.format(new Date(s.startsAt))), cell(num(s.free)), cell(num(s.held)),
      cell(num(s.sold)), cell(won.format(s.salesWon)));
  });
  $('schedules').tBodies[0].replaceChildren(...rows);
  $('schedules').tFoot.replaceChildren(el('tr', {}, cell('All'), cell(''), cell(''),
    cell(num(total.free)), cell(num(total.held)), cell(num(total.sold)),
    cell(won.format(total.salesWon))));
}

function renderPipeline({ outboxBacklog, outboxOldestAgeSeconds, consumerLag, asOf }) {
  $('outbox-backlog').textContent = num(outboxBacklog);
  $('outbox-age').textContent = outboxBacklog ? clock(outboxOldestAgeSeconds ?? 0) : '–';
  $('pipeline-as-of').textContent = asOf ? `as of ${new Date(asOf).toLocaleTimeString()}` : '';
  const lag = [...consumerLag].sort((a, b) =>
    a.group.localeCompare(b.group) || a.topic.localeCompare(b.topic) || a.partition - b.partition);
  const rows = lag.map((p) =>
    el('tr', {}, cell(p.group), cell(p.topic), cell(p.partition), cell(num(p.lag))));
  if (!rows.length) {
    rows.push(el('tr', {}, el('td', { colSpan: 4, textContent: 'No consumer groups reported.' })));
  }
  $('lag').tBodies[0].replaceChildren(...rows);
}

// ---- wiring -----------------------------------------------------------------------------

$('key-form').addEventListener('submit', connect);
$('forget').addEventListener('click', () => stop(''));
$('create-form').addEventListener('submit', createQueue);
$('queues').addEventListener('click', (event) => {
  const button = event.target.closest('button');
  const row = button?.closest('tr');
  if (!row) return;
  if (button.classList.contains('toggle')) change(row, { open: row.dataset.open !== 'true' });
  if (button.classList.contains('apply')) change(row, edits(row));
});
$('queues').addEventListener('keydown', (event) => {
  const row = event.target.closest('tr');
  if (event.key === 'Enter' && event.target.matches('input')) change(row, edits(row));
});
if (adminKey) start();
