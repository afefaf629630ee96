// Date and time fields in Danish form whatever language the browser has:
// a text input that shows dd.mm.åååå and tt:mm (24 hours), says so under
// its label, and takes what people type (3.12.2026, 03-12-2026, 03122026,
// 9.30, 0930). The code around it reads `.value` as ISO (YYYY-MM-DD,
// HH:MM), the format of the API, and calls `check()` on submit, which
// throws an error in the current language for the form's error box.
//
// A native <input type="date"> would follow the browser's locale instead
// (mm/dd/yyyy and AM/PM in an American browser).

import { ApiError } from './api.js';
import { h } from './dom.js';
import { t } from './i18n.js';
import { nextId } from './ui.js';

const pad = (n) => String(n).padStart(2, '0');

/** YYYY-MM-DD of a real calendar day, or null. */
function isoDay(year, month, day) {
  if (year < 1000 || year > 9999 || month < 1 || month > 12 || day < 1) return null;
  const x = new Date(Date.UTC(year, month - 1, day));
  if (x.getUTCFullYear() !== year || x.getUTCMonth() !== month - 1 || x.getUTCDate() !== day) return null;
  return `${year}-${pad(month)}-${pad(day)}`;
}

/**
 * A typed date as YYYY-MM-DD, or null. Takes day first (d.m.åååå,
 * dd-mm-åååå, dd/mm/åååå, a two-digit year as 20åå, or the digits alone:
 * ddmmåååå, ddmmåå, which is what a phone's number pad can type) and ISO
 * (åååå-mm-dd, what the API and older links use).
 */
export function parseDate(text) {
  const s = String(text ?? '').trim();
  let m = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(s);
  if (m) return isoDay(+m[1], +m[2], +m[3]);
  m = /^(\d{1,2})\s*[.\-/]\s*(\d{1,2})\s*[.\-/]\s*(\d{4}|\d{2})$/.exec(s);
  if (!m) m = /^(\d{2})(\d{2})(\d{4}|\d{2})$/.exec(s);
  if (!m) return null;
  const year = m[3].length === 2 ? 2000 + Number(m[3]) : Number(m[3]);
  return isoDay(year, +m[2], +m[1]);
}

/**
 * A typed time of day as HH:MM (24 hours), or null: 14:30, 14.30, 1430,
 * 9.30, 930, 9 and "kl. 9.30".
 */
export function parseTime(text) {
  const s = String(text ?? '')
    .trim()
    .replace(/^kl\.?\s*/i, '');
  const m = /^(\d{1,2})(?:[:.](\d{2}))?$/.exec(s) || /^(\d{1,2})(\d{2})$/.exec(s);
  if (!m) return null;
  const hour = Number(m[1]);
  const minute = m[2] === undefined ? 0 : Number(m[2]);
  if (hour > 23 || minute > 59) return null;
  return `${pad(hour)}:${pad(minute)}`;
}

/** YYYY-MM-DD as dd.mm.åååå ('' for anything else). */
export function formatDate(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || '');
  return m ? `${m[3]}.${m[2]}.${m[1]}` : '';
}

/** HH:MM as shown (the same; '' for anything else). */
export function formatTime(hhmm) {
  return /^\d{2}:\d{2}$/.test(hhmm || '') ? hhmm : '';
}

const KINDS = {
  date: { parse: parseDate, format: formatDate, hint: 'fields.date.hint', missing: 'fields.date.missing', invalid: 'fields.date.invalid' },
  time: { parse: parseTime, format: formatTime, hint: 'fields.time.hint', missing: 'fields.time.missing', invalid: 'fields.time.invalid' },
};

/**
 * What the user typed and the page cannot use, as the form error boxes
 * show a refusal: every reason listed (code `invalid_input`), in the
 * current language. Nothing was sent.
 */
export class InputError extends ApiError {
  constructor(messages) {
    super(400, { errors: messages.map((m) => ({ code: 'invalid_input', da: m, en: m })) });
    this.message = messages.join(' ');
  }
}

/**
 * A labelled date or time field. Returns {el, input, value, check()}:
 * `el` is the whole field (label, format hint, input, and room for its
 * error), `value` reads and sets ISO ('' when blank or not readable), and
 * `check()` returns the ISO value or marks the input invalid and throws
 * an InputError that names the field. An `optional` field may be blank
 * (it checks as '').
 */
function timeOrDateField(kind, labelText, { name, value = '', optional = false, id } = {}) {
  const spec = KINDS[kind];
  const input = h('input', {
    type: 'text',
    id: id || nextId(kind),
    name,
    value: spec.format(value),
    inputmode: 'numeric',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-required': optional ? null : 'true',
  });
  const hint = h('span', { class: 'hint', id: `${input.id}-hint`, text: t(spec.hint) });
  const error = h('span', { class: 'field-error', id: `${input.id}-error`, hidden: true });
  input.setAttribute('aria-describedby', hint.id);
  const label = h('label', { for: input.id }, labelText, optional ? h('span', { class: 'muted', text: ` ${t('app.optional')}` }) : null);
  const el = h('div', { class: ['field', `${kind}-field`] }, label, hint, input, error);

  const showError = (message) => {
    error.textContent = message;
    error.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', `${hint.id} ${error.id}`);
  };
  const clearError = () => {
    error.hidden = true;
    error.textContent = '';
    input.removeAttribute('aria-invalid');
    input.setAttribute('aria-describedby', hint.id);
  };
  const problem = () => {
    const typed = input.value.trim();
    if (!typed) return optional ? null : t(spec.missing, { label: labelText });
    return spec.parse(typed) ? null : t(spec.invalid, { label: labelText, typed });
  };

  input.addEventListener('input', () => {
    if (!error.hidden && !problem()) clearError();
  });
  // Leaving the field, what was typed is written the one way (3.12.2026
  // becomes 03.12.2026). What cannot be read is said on submit, not here:
  // a message appearing on blur moves the button the user is clicking.
  input.addEventListener('change', () => {
    const iso = spec.parse(input.value);
    if (iso) {
      input.value = spec.format(iso);
      clearError();
    }
  });

  return {
    el,
    input,
    get value() {
      return spec.parse(input.value) || '';
    },
    set value(iso) {
      input.value = spec.format(iso);
      clearError();
    },
    check() {
      const message = problem();
      if (message) {
        showError(message);
        throw new InputError([message]);
      }
      clearError();
      return spec.parse(input.value) || '';
    },
  };
}

/** A date field: dd.mm.åååå on screen, YYYY-MM-DD in `.value`. */
export function dateField(labelText, options = {}) {
  return timeOrDateField('date', labelText, options);
}

/** A time field: tt:mm (24 hours) on screen and in `.value`. */
export function timeField(labelText, options = {}) {
  return timeOrDateField('time', labelText, options);
}

/**
 * Checks several fields at once: every unreadable one is marked, and one
 * error names them all (so a form shows every reason, not the first).
 */
export function checkAll(fields) {
  const values = [];
  const problems = [];
  for (const f of fields) {
    try {
      values.push(f.check());
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      problems.push(...err.reasons);
      values.push('');
    }
  }
  if (problems.length) throw new InputError(problems);
  return values;
}
