// Form and page building blocks of the dashboard: labelled fields with
// hints, error boxes that name every reason, status pills, amounts.

import { ApiError } from './api.js';
import { announce, focusOn, h, replace } from './dom.js';
import { fmtOre, has, t } from './i18n.js';

let uid = 0;
/** A fresh element id. */
export function nextId(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/**
 * A labelled form field. `control` is an input/select/textarea element;
 * it gets an id when it has none, and the hint is tied to it by
 * aria-describedby.
 */
export function field(labelText, control, { hint, optional = false } = {}) {
  if (!control.id) control.id = nextId();
  const label = h('label', { for: control.id }, labelText, optional ? h('span', { class: 'muted', text: ` ${t('app.optional')}` }) : null);
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'hint', id: `${control.id}-hint`, text: hint });
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, label, hintEl, control);
}

/** A checkbox with its label to the right. */
export function checkbox(labelText, props = {}) {
  const input = h('input', { type: 'checkbox', id: props.id || nextId('c'), ...props });
  return { input, el: h('div', { class: 'check' }, input, h('label', { for: input.id, text: labelText })) };
}

/** A <select> from [{value, text}]. */
export function select(options, props = {}) {
  return h(
    'select',
    props,
    options.map((o) => h('option', { value: o.value, selected: o.value === props.value, text: o.text })),
  );
}

/**
 * What a thrown error says to people. An ApiError names its reasons in
 * the current language; a plain Error carries a text the page made with
 * t(); anything else (a TypeError, a DOMException) has the browser's
 * English, which is logged, not shown.
 */
function reasonsOf(err) {
  if (err instanceof ApiError) return err.reasons;
  if (err instanceof Error && err.constructor === Error && err.message) return [err.message];
  console.error(err);
  return [t('common.error')];
}

/** The reasons of a failed request, as a notice with a list (role alert). */
export function errorBox(err, introKey) {
  const reasons = reasonsOf(err);
  const codes = err instanceof ApiError ? err.codes : [];
  return h(
    'div',
    { class: 'notice bad', role: 'alert', dataset: { codes: codes.join(' ') } },
    introKey ? h('p', { text: t(introKey) }) : null,
    reasons.length === 1 && !introKey
      ? h('p', { text: reasons[0] })
      : h(
          'ul',
          {},
          reasons.map((r, i) => h('li', { dataset: { code: codes[i] || '' }, text: r })),
        ),
  );
}

/** A success notice, announced politely. */
export function okBox(text) {
  announce(text);
  return h('p', { class: 'notice ok', text });
}

/**
 * Wires a form: on submit, disables its submit button, runs `fn(form)`,
 * and shows a thrown error in `errorSlot` (the form's first .form-errors
 * when not given). Returns the form.
 */
export function onSubmit(form, fn, { errorSlot, introKey } = {}) {
  let slot = errorSlot || form.querySelector('.form-errors');
  if (!slot) {
    slot = h('div', { class: 'form-errors' });
    form.prepend(slot);
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    replace(slot);
    try {
      await fn(form);
    } catch (err) {
      replace(slot, errorBox(err, introKey));
      focusOn(slot.firstElementChild);
    } finally {
      if (button) button.disabled = false;
    }
  });
  return form;
}

/** A pill naming a consultation state. */
export function statePill(state) {
  const kind =
    state === 'waiting' ? 'warn' : state === 'in_call' || state === 'completed' ? 'ok' : state === 'ended' ? 'info' : ['cancelled', 'no_show', 'technical_failure'].includes(state) ? 'bad' : 'info';
  const key = `state.${state}`;
  return h('span', { class: `pill ${kind}`, dataset: { state }, text: has(key) ? t(key) : state });
}

/** A money amount from the API: "307,95 kr", {text}, {ore} or øre. */
export function amountText(a) {
  if (a === null || a === undefined) return '';
  if (typeof a === 'string') return a;
  if (typeof a === 'number') return fmtOre(a);
  if (a.text) return a.text;
  if (typeof a.ore === 'number') return fmtOre(a.ore);
  return '';
}

/** The page heading, also the document title; focused after navigation. */
export function pageHeading(text) {
  document.title = `${text} – Konsult`;
  return h('h1', { tabindex: '-1', text });
}
