// Shared helpers of the k6 scripts: the app's address, JSON requests, unique users.
import http from 'k6/http';
import exec from 'k6/execution';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:3000';

const JSON_HEADERS = { 'content-type': 'application/json' };

export function postJson(path, body, params = {}) {
  const headers = Object.assign({}, JSON_HEADERS, params.headers || {});
  return http.post(`${BASE_URL}${path}`, JSON.stringify(body), Object.assign({}, params, { headers }));
}

export function putJson(path, body, params = {}) {
  const headers = Object.assign({}, JSON_HEADERS, params.headers || {});
  return http.put(`${BASE_URL}${path}`, JSON.stringify(body), Object.assign({}, params, { headers }));
}

export function getJson(path, params = {}) {
  return http.get(`${BASE_URL}${path}`, params);
}

export function bearer(token) {
  return { headers: { authorization: `Bearer ${token}` } };
}

/// A user id no other VU or iteration of this run uses.
export function uniqueUser(base = 1) {
  return base + exec.vu.idInTest * 10000000 + exec.vu.iterationInScenario;
}

/// Creates (or reconfigures) a queue through the admin API; needs ADMIN_KEY.
export function configureQueue(queueId, settings) {
  const res = putJson(`/api/admin/queue?queueId=${queueId}`, settings,
    Object.assign(bearer(__ENV.ADMIN_KEY), { responseType: 'text' }));
  if (res.status !== 200) {
    throw new Error(`configuring queue ${queueId}: ${res.status} ${res.body}`);
  }
  return res.json();
}
