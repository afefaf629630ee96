// Small DOM helpers: build elements without innerHTML (no markup injection,
// no inline style or handlers, so the CSP holds), and speak to screen
// readers through live regions.

/**
 * Creates an element. `props`: `class`, `text`, `on` ({event: fn}),
 * `dataset`, any attribute (booleans add or omit it). Children may be
 * strings, nodes, arrays, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'on') for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'value') el.value = value;
    else if (key === 'checked' || key === 'selected' || key === 'disabled' || key === 'hidden' || key === 'required') {
      el[key] = Boolean(value);
    } else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** `document.querySelector` with a clear failure. */
export function $(selector, root = document) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

let politeRegion;
let assertiveRegion;

function region(assertive) {
  const existing = assertive ? assertiveRegion : politeRegion;
  if (existing?.isConnected) return existing;
  const el = h('div', {
    class: 'visually-hidden',
    role: assertive ? 'alert' : 'status',
    'aria-live': assertive ? 'assertive' : 'polite',
    'aria-atomic': 'true',
  });
  document.body.append(el);
  if (assertive) assertiveRegion = el;
  else politeRegion = el;
  return el;
}

/** Tells screen-reader users something that happened (polite by default). */
export function announce(message, { assertive = false } = {}) {
  const el = region(assertive);
  el.textContent = '';
  // A fresh text node after a tick makes repeated messages announced again.
  setTimeout(() => {
    el.textContent = message;
  }, 50);
}

/** Moves focus to a heading or container (made focusable for the purpose). */
export function focusOn(el) {
  if (!el) return;
  if (!el.hasAttribute('tabindex')) el.setAttribute('tabindex', '-1');
  el.focus({ preventScroll: false });
}

/** Shows exactly one of `sections`, the one equal to `shown`. */
export function showOnly(sections, shown) {
  for (const s of sections) s.hidden = s !== shown;
}
