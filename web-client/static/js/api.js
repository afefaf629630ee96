// The HTTP API: JSON in and out, the session cookie, the CSRF header on
// every state-changing request, and RFC 9457 problems turned into errors
// that name every reason in the user's language.

import { lang, t } from './i18n.js';

let csrfToken = null;

/** Remembers the token from /api/login or /api/me. */
export function setCsrf(token) {
  csrfToken = token || null;
}

/** A refused or failed request. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  /** The stable codes of every reason (errors[].code). */
  get codes() {
    return (this.problem.errors || []).map((e) => e.code);
  }

  /** Every reason as a sentence in the current language. */
  get reasons() {
    const items = this.problem.errors || [];
    if (items.length) return items.map((e) => (lang() === 'en' ? e.en : e.da) || e.da || e.en || e.code);
    if (this.status === 0) return [t('common.network')];
    if (this.problem.detail) return [this.problem.detail];
    if (this.problem.title) return [this.problem.title];
    return [t('common.error')];
  }
}

async function request(method, path, { body, contentType, raw = false } = {}) {
  const headers = { accept: 'application/json, application/problem+json' };
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['x-csrf-token'] = csrfToken;
  let payload;
  if (body !== undefined) {
    if (contentType) {
      headers['content-type'] = contentType;
      payload = body;
    } else {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, null);
  }
  if (!res.ok) {
    let problem = null;
    try {
      problem = await res.json();
    } catch {
      // A body that is not JSON: keep the status only.
    }
    throw new ApiError(res.status, problem);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const api = {
  get: (path) => request('GET', path),
  getText: async (path) => (await request('GET', path, { raw: true })).text(),
  post: (path, body) => request('POST', path, { body: body ?? {} }),
  put: (path, body) => request('PUT', path, { body }),
  putText: (path, text, contentType) => request('PUT', path, { body: text, contentType }),
  del: (path) => request('DELETE', path),
};
