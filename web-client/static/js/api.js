// The HTTP API: JSON in and out, the session cookie, the CSRF header on
// every state-changing request, and RFC 9457 problems turned into errors
// that name every reason in the user's language.

import { has, lang, t } from './i18n.js';

let csrfToken = null;

/** Remembers the token from /api/login or /api/me. */
export function setCsrf(token) {
  csrfToken = token || null;
}

/** The text for a problem without its own: by status, in the current language. */
function statusText(status) {
  if (status >= 500) return t('problem.status.5xx');
  return has(`problem.status.${status}`) ? t(`problem.status.${status}`) : t('common.error');
}

/**
 * A refused or failed request. What it says to people (`reasons`,
 * `message`) is in the current language: the server's `errors[].da` or
 * `.en`, else the page's own text for the problem's code, else a text by
 * status. The English `detail` is shown only to an English reader, and
 * only when the problem has no item at all (a server or proxy that does
 * not speak Konsult's problem format).
 */
export class ApiError extends Error {
  constructor(status, problem) {
    super(`HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.message = this.reasons.join(' ');
  }

  /** The stable codes of every reason (errors[].code). */
  get codes() {
    return (this.problem.errors || []).map((e) => e.code);
  }

  /** The problem's stable code, from its type `urn:konsult:problem:<code>`. */
  get code() {
    const type = this.problem.type || '';
    return type.startsWith('urn:konsult:problem:') ? type.slice('urn:konsult:problem:'.length) : '';
  }

  /** Every reason as a sentence in the current language. */
  get reasons() {
    if (this.status === 0) return [t('common.network')];
    const english = lang() === 'en';
    const say = (code, text) => {
      if (text) return text;
      if (code && has(`problem.${code}`)) return t(`problem.${code}`);
      if (english && this.problem.detail) return this.problem.detail;
      return statusText(this.status);
    };
    const items = this.problem.errors || [];
    if (items.length) return items.map((e) => say(e.code, english ? e.en : e.da));
    return [say(this.code, null)];
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
