// Words on the screen, Danish first and English second.
//
// `t(key, vars)` looks a key up in the current language (falling back to
// Danish, then to the key itself so a missing text is visible, not blank).
// Static markup carries `data-i18n="key"` (text), `data-i18n-label`
// (aria-label) and `data-i18n-placeholder`; `applyI18n()` fills them.
// The choice is kept in localStorage; `?lang=en` in the address also works.

import { TZ } from './time.js';
import { DA, EN } from './messages.js';

const STORAGE_KEY = 'konsult.lang';
const MESSAGES = { da: DA, en: EN };
const listeners = new Set();

function initialLang() {
  const fromUrl = new URLSearchParams(location.search).get('lang');
  if (fromUrl && fromUrl in MESSAGES) return fromUrl;
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (stored && stored in MESSAGES) return stored;
  } catch {
    // Storage can be blocked; Danish is the default anyway.
  }
  return 'da';
}

let current = initialLang();

/** The current language code: "da" or "en". */
export function lang() {
  return current;
}

/** The BCP 47 locale for number and date formatting. */
export function locale() {
  return current === 'da' ? 'da-DK' : 'en-GB';
}

/** The text for `key` with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = MESSAGES[current][key] ?? DA[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] ?? '').toString());
}

/** Whether a key exists (for optional, code-keyed texts). */
export function has(key) {
  return key in DA;
}

/** Fills every data-i18n element under `root`. */
export function applyI18n(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) {
    el.setAttribute('placeholder', t(el.dataset.i18nPlaceholder));
  }
  if (document.body?.dataset.i18nTitle) document.title = t(document.body.dataset.i18nTitle);
}

/** Switches language, remembers it and tells every listener. */
export function setLang(code) {
  if (!(code in MESSAGES) || code === current) return;
  current = code;
  try {
    localStorage.setItem(STORAGE_KEY, code);
  } catch {
    // Not remembered; still switched for this page.
  }
  applyI18n();
  for (const fn of listeners) fn(code);
}

/** Calls `fn(code)` after every language switch; returns an unsubscribe. */
export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * Wires a button that switches to the other language. Its own text is in
 * the language it switches to, with a matching `lang` attribute, so a
 * screen reader pronounces "English" in English.
 */
export function wireLangButton(button) {
  const render = () => {
    const other = current === 'da' ? 'en' : 'da';
    button.textContent = other === 'en' ? 'English' : 'Dansk';
    button.lang = other;
    button.setAttribute(
      'aria-label',
      other === 'en' ? 'Show the page in English' : 'Vis siden på dansk',
    );
  };
  button.addEventListener('click', () => setLang(current === 'da' ? 'en' : 'da'));
  onLangChange(render);
  render();
}

function fmt(options) {
  return (iso) => {
    const d = iso instanceof Date ? iso : new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    return new Intl.DateTimeFormat(locale(), { timeZone: TZ, ...options }).format(d);
  };
}

/** "tirsdag den 3. juni 2025" style date, in Copenhagen. */
export const fmtLongDate = fmt({ weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
/** "03.06.2025" style date. */
export const fmtDate = fmt({ day: '2-digit', month: '2-digit', year: 'numeric' });
/** "14.30" / "14:30". */
export const fmtTime = fmt({ hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
/** Date and time together. */
export const fmtDateTime = fmt({
  day: '2-digit',
  month: '2-digit',
  year: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  hourCycle: 'h23',
});

/** A number in the current locale. */
export function fmtNumber(n, digits = 0) {
  return new Intl.NumberFormat(locale(), {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(n);
}

/** Øre as kroner, "307,95 kr" (used where the server sent only øre). */
export function fmtOre(ore) {
  return `${fmtNumber(ore / 100, 2)} kr`;
}
