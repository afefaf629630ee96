// The therapist's dashboard, /app: the shell (login, navigation, language)
// and a small client-side router. Each view renders into <main> and may
// return a cleanup function (the call view closes its connection there).

import { api, ApiError, setCsrf } from './api.js';
import { $, focusOn, h, replace } from './dom.js';
import { applyI18n, onLangChange, t, wireLangButton } from './i18n.js';
import { errorBox, field, nextId, onSubmit, pageHeading, select } from './ui.js';
import { todayView } from './app-today.js';
import { patientsView, patientView } from './app-patients.js';
import { consultationView } from './app-consultation.js';
import { billingView } from './app-billing.js';
import { adminView } from './app-admin.js';
import { accountView, newPasswordInput } from './app-account.js';

const main = $('#main');

const session = {
  me: null,
  catalogue: null,
};

/** Shared by the views. */
export const ctx = {
  main,
  get me() {
    return session.me;
  },
  navigate,
  async catalogue() {
    if (!session.catalogue) session.catalogue = await api.get('/api/catalogue');
    return session.catalogue;
  },
};

const ROUTES = [
  [/^\/app\/?$/, todayView, 'today'],
  [/^\/app\/patients\/?$/, patientsView, 'patients'],
  [/^\/app\/patients\/([0-9a-fA-F-]{36})\/?$/, patientView, 'patients'],
  [/^\/app\/consultations\/([0-9a-fA-F-]{36})\/?$/, consultationView, 'today'],
  [/^\/app\/billing\/?$/, billingView, 'billing'],
  [/^\/app\/admin\/?$/, adminView, 'admin'],
  [/^\/app\/account\/?$/, (c) => accountView(c, { onLoggedOut: loggedOut }), 'account'],
];

let cleanup = null;
let current = null;
let renderSeq = 0;

/** Goes to a dashboard path without reloading the page. */
export function navigate(path, { replace: replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

async function runCleanup() {
  if (cleanup) {
    const fn = cleanup;
    cleanup = null;
    try {
      await fn();
    } catch {
      // A view's cleanup must not block the next view.
    }
  }
}

async function render({ focus = true } = {}) {
  const seq = ++renderSeq;
  await runCleanup();
  const path = location.pathname;
  if (path === '/app/setup' || path === '/app/setup/') {
    showShell(false);
    await setupView();
    return;
  }
  if (!session.me) {
    try {
      const me = await api.get('/api/me');
      setMe(me);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        showShell(false);
        loginView();
        return;
      }
      showShell(false);
      replace(main, pageHeading(t('app.title')), errorBox(err));
      return;
    }
  }
  if (seq !== renderSeq) return;
  showShell(true);
  const route = ROUTES.find(([re]) => re.test(path));
  markNav(route ? route[2] : null);
  if (!route) {
    replace(main, pageHeading(t('app.notFound')), h('p', {}, h('a', { href: '/app', text: t('app.nav.today') })));
    return;
  }
  const [re, view] = route;
  const params = path.match(re).slice(1);
  current = { view, params };
  replace(main, h('p', { role: 'status', text: t('common.loading') }));
  try {
    const result = await view(ctx, ...params);
    if (seq !== renderSeq) {
      if (typeof result === 'function') result();
      return;
    }
    cleanup = typeof result === 'function' ? result : null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      session.me = null;
      render();
      return;
    }
    replace(main, pageHeading(t('app.title')), errorBox(err));
  }
  if (focus) focusOn(main.querySelector('h1') || main);
}

function setMe(me) {
  session.me = me;
  setCsrf(me.csrf_token);
  $('#who').textContent = t('app.loggedInAs', { name: me.name, clinic: me.clinic_name });
  $('#nav-admin').hidden = me.role !== 'admin';
}

function showShell(loggedIn) {
  $('#nav').hidden = !loggedIn;
  $('#logout').hidden = !loggedIn;
  $('#who').hidden = !loggedIn;
}

function markNav(name) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Forgets the session on this side and shows the login. */
async function loggedOut() {
  session.me = null;
  setCsrf(null);
  navigate('/app');
}

// ---------- Login and first-run setup ----------

function loginView() {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  // Shown when the e-mail and password fit accounts in several clinics.
  const clinicSlot = h('div', {});
  let clinic = null;
  const form = h(
    'form',
    { class: 'stack card', novalidate: false },
    h('div', { class: 'form-errors' }),
    field(t('login.email'), email),
    field(t('login.password'), password),
    clinicSlot,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('login.submit') })),
  );
  onSubmit(form, async () => {
    try {
      const body = { email: email.value.trim(), password: password.value };
      if (clinic) body.clinic_id = clinic.value;
      const me = await api.post('/api/login', body);
      setMe(me);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) throw new Error(t('login.failed'));
      if (err instanceof ApiError && err.status === 429) throw new Error(t('login.tooMany'));
      if (err instanceof ApiError && err.code === 'choose_clinic') {
        clinic = select(
          (err.problem.clinics || []).map((c) => ({ value: c.id, text: c.name })),
          { id: 'login-clinic', required: true },
        );
        replace(clinicSlot, h('p', { class: 'notice info', role: 'status', text: t('login.chooseClinic') }), field(t('login.clinic'), clinic));
        clinic.focus();
        return;
      }
      throw err;
    }
    const target = location.pathname.startsWith('/app/setup') ? '/app' : location.pathname;
    navigate(target, { replace: true });
  });
  replace(main, h('div', { class: 'narrow' }, pageHeading(t('login.title')), form));
  focusOn(main.querySelector('h1'));
}

async function setupView() {
  const token = decodeURIComponent(location.hash.replace(/^#/, ''));
  if (!token) {
    replace(main, pageHeading(t('setup.title')), h('p', { class: 'notice bad', text: t('setup.noToken') }));
    return;
  }
  // What the link sets up: the first clinic, or an added clinic's admin.
  let status;
  try {
    status = await api.post('/api/setup/status', { setup_token: token });
  } catch (err) {
    const text = err instanceof ApiError && err.status === 404 ? t('setup.notFound') : null;
    replace(main, pageHeading(t('setup.title')), text ? h('p', { class: 'notice bad', role: 'alert', text }) : errorBox(err));
    focusOn(main.querySelector('h1'));
    return;
  }
  const forClinic = status.purpose === 'clinic_admin';
  const clinicName = h('input', { type: 'text', required: true, autocomplete: 'organization' });
  const ydernummer = h('input', { type: 'text', required: true, inputmode: 'numeric', pattern: '[0-9]{6}', maxlength: '6' });
  const sp51 = h('input', { type: 'checkbox', id: nextId('sp'), checked: true, value: '51' });
  const sp62 = h('input', { type: 'checkbox', id: nextId('sp'), value: '62' });
  const name = h('input', { type: 'text', required: true, autocomplete: 'name' });
  const email = h('input', { type: 'email', required: true, autocomplete: 'username' });
  const password = newPasswordInput();
  const clinicFields = forClinic
    ? null
    : [
        field(t('setup.clinicName'), clinicName),
        field(t('setup.ydernummer'), ydernummer, { hint: t('setup.ydernummer.hint') }),
        h(
          'fieldset',
          {},
          h('legend', { text: t('setup.specialer') }),
          h('div', { class: 'check' }, sp51, h('label', { for: sp51.id, text: t('speciale.51') })),
          h('div', { class: 'check' }, sp62, h('label', { for: sp62.id, text: t('speciale.62') })),
        ),
      ];
  const form = h(
    'form',
    { class: 'stack card' },
    h('div', { class: 'form-errors' }),
    clinicFields,
    field(t('setup.adminName'), name),
    field(t('setup.adminEmail'), email),
    field(t('setup.adminPassword'), password, { hint: t('setup.adminPassword.hint') }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('setup.submit') })),
  );
  onSubmit(form, async () => {
    const body = {
      setup_token: token,
      admin_name: name.value.trim(),
      admin_email: email.value.trim(),
      admin_password: password.value,
    };
    if (!forClinic) {
      body.clinic_name = clinicName.value.trim();
      body.ydernummer = ydernummer.value.trim();
      body.specialer = [sp51, sp62].filter((c) => c.checked).map((c) => Number(c.value));
    }
    await api.post('/api/setup', body);
    const me = await api.post('/api/login', { email: email.value.trim(), password: password.value });
    setMe(me);
    // Drop the used token from the address and history.
    navigate('/app', { replace: true });
  });
  const title = forClinic ? t('setup.clinicAdmin.title', { clinic: status.clinic_name }) : t('setup.title');
  const intro = forClinic ? t('setup.clinicAdmin.intro') : t('setup.intro');
  replace(main, pageHeading(title), h('p', { text: intro }), form);
  focusOn(main.querySelector('h1'));
}

// ---------- Start ----------

function init() {
  applyI18n();
  wireLangButton($('#lang'));
  onLangChange(() => {
    if (session.me) setMe(session.me);
    if (current?.view?.keepOnLang) return;
    render({ focus: false });
  });
  $('#logout').addEventListener('click', async () => {
    await runCleanup();
    try {
      await api.post('/api/logout');
    } catch {
      // Logged out on this side anyway.
    }
    await loggedOut();
  });
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const href = a.getAttribute('href');
    if (!href || !href.startsWith('/app') || a.hasAttribute('download') || a.target) return;
    ev.preventDefault();
    navigate(href);
  });
  window.addEventListener('popstate', () => render());
  render();
}

init();
