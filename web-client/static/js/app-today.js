// The day's consultations: time, patient, state, who is waiting.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { fmtLongDate, fmtTime, lang, t } from './i18n.js';
import { addDays, copenhagenDate } from './time.js';
import { onSubmit, pageHeading, statePill } from './ui.js';
import { dateField } from './fields.js';

// The day's states are pushed by the server (server-sent events, no
// patient data, not audited); the full list is reloaded when they change,
// and at least every minute. Where the stream cannot be opened the states
// are polled instead.
const POLL_MS = 2000;
const FULL_RELOAD_MS = 60000;
const SOUND_KEY = 'konsult.arrivalSound';
const SCOPE_KEY = 'konsult.todayScope';

/** A short, soft two-tone chime (Web Audio; no file, no third party). */
function chime() {
  try {
    const ctx = new AudioContext();
    [660, 880].forEach((freq, i) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, ctx.currentTime + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.2, ctx.currentTime + i * 0.25 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + i * 0.25 + 0.22);
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + i * 0.25);
      osc.stop(ctx.currentTime + i * 0.25 + 0.25);
    });
    setTimeout(() => ctx.close(), 1000);
  } catch {
    // No audio: the title and the notice still say it.
  }
}

/**
 * Someone arrived: the tab title counts who waits ("(1) venter – Konsult"),
 * a chime if the therapist turned it on, and a system notification where
 * the browser allows it.
 */
function arrivalSignals() {
  let base = document.title;
  let last = 0;
  return {
    setBase(title) {
      base = title;
    },
    update(waiting) {
      document.title = waiting ? `(${waiting}) ${t('today.waitingTitle')} – Konsult` : base;
      if (waiting > last) {
        if (localStorage.getItem(SOUND_KEY) === 'on') chime();
        if ('Notification' in window && Notification.permission === 'granted' && document.visibilityState !== 'visible') {
          try {
            new Notification('Konsult', { body: t('today.waitingNow', { n: waiting }), tag: 'konsult-waiting' });
          } catch {
            // Some browsers allow notifications only from a service worker.
          }
        }
      }
      last = waiting;
    },
    restore() {
      document.title = base;
    },
  };
}

/** On a demo server: the demo patient's join link, to open elsewhere. */
function demoNotice(me) {
  if (!me.demo_join_url) return null;
  const link = h('input', { type: 'text', readonly: true, id: 'demo-join-link', value: me.demo_join_url });
  return h(
    'section',
    { class: 'notice info', id: 'demo-notice', 'aria-labelledby': 'demo-h' },
    h('h2', { id: 'demo-h', text: t('demo.title') }),
    h('p', { text: t('demo.text') }),
    h('label', { for: link.id, text: t('demo.link') }),
    link,
    h('div', { class: 'actions' }, h('a', { class: 'button', href: me.demo_join_url, target: '_blank', rel: 'noopener', text: t('demo.open') })),
  );
}

export async function todayView(ctx) {
  const params = new URLSearchParams(location.search);
  let day = /^\d{4}-\d{2}-\d{2}$/.test(params.get('day') || '') ? params.get('day') : copenhagenDate();

  const dayInput = dateField(t('today.day'), { value: day, name: 'day' });
  const listSlot = h('div', { id: 'today-list' });
  const feeSlot = h('div', {});
  const waitingSlot = h('div', { role: 'status', 'aria-live': 'polite', id: 'waiting-summary' });
  const heading = pageHeading(`${t('today.title')} – ${fmtLongDate(`${day}T12:00:00Z`)}`);

  const go = (d) => {
    day = d;
    dayInput.value = d;
    history.replaceState(null, '', d === copenhagenDate() ? '/app' : `/app?day=${d}`);
    heading.textContent = `${t('today.title')} – ${fmtLongDate(`${d}T12:00:00Z`)}`;
    load();
  };
  // A day typed in the field is shown when the field is left or the form
  // sent (Enter, or the button); one that cannot be read says why.
  const dayForm = onSubmit(
    h('form', { class: 'day-form', id: 'day-form' }, h('div', { class: 'form-errors' }), dayInput.el, h('button', { type: 'submit', text: t('today.show') })),
    async () => {
      const d = dayInput.check();
      if (d !== day) go(d);
    },
  );
  dayInput.input.addEventListener('change', () => {
    if (dayInput.value && dayInput.value !== day) go(dayInput.value);
  });

  // Mine (the default) or the whole clinic's day.
  const me = ctx.me.therapist_id;
  // A secretary has no consultations of their own: the whole clinic's.
  const secretary = ctx.me.role === 'secretary';
  let scope = secretary || localStorage.getItem(SCOPE_KEY) === 'all' ? 'all' : 'mine';
  const scopeInputs = ['mine', 'all'].map((value) =>
    h('input', { type: 'radio', name: 'scope', id: `scope-${value}`, value, checked: scope === value }),
  );
  const scopePicker = h(
    'fieldset',
    { class: 'scope', id: 'today-scope' },
    h('legend', { text: t('today.scope') }),
    scopeInputs.map((input) => h('div', { class: 'check' }, input, h('label', { for: input.id, text: t(`today.scope.${input.value}`) }))),
  );
  for (const input of scopeInputs) {
    input.addEventListener('change', () => {
      scope = input.value;
      localStorage.setItem(SCOPE_KEY, scope);
      lastWaiting = -1;
      render();
    });
  }

  const signals = arrivalSignals();
  let lastWaiting = -1;
  let lastStates = '';
  let lastFull = 0;
  let list = [];
  async function load() {
    lastFull = Date.now();
    list = await api.get(`/api/consultations?day=${day}`);
    list.sort((a, b) => new Date(a.start) - new Date(b.start));
    lastStates = list.map((c) => `${c.id}:${c.state}`).join(',');
    render();
  }

  function render() {
    const shown = scope === 'all' ? list : list.filter((c) => c.therapist_id === me);
    const waiting = shown.filter((c) => c.state === 'waiting');
    signals.update(day === copenhagenDate() ? waiting.length : 0);
    if (waiting.length !== lastWaiting) {
      lastWaiting = waiting.length;
      replace(
        waitingSlot,
        waiting.length
          ? h('p', { class: 'notice warn', text: t(scope === 'all' ? 'today.waitingNow' : 'today.waitingMine', { n: waiting.length }) })
          : h('p', { class: 'muted', text: t('today.nobodyWaiting') }),
      );
    }
    if (!shown.length) {
      const others = list.length - shown.length;
      replace(
        listSlot,
        h('p', { text: t('today.empty') }),
        others ? h('p', { class: 'muted', id: 'today-others', text: t('today.othersHave', { n: others }) }) : null,
      );
      return;
    }
    replace(
      listSlot,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          {},
          h('caption', { class: 'visually-hidden', text: heading.textContent }),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', { scope: 'col', text: t('today.time') }),
              h('th', { scope: 'col', text: t('today.patient') }),
              scope === 'all' ? h('th', { scope: 'col', text: t('today.therapist') }) : null,
              h('th', { scope: 'col', text: t('today.state') }),
              h('th', { scope: 'col' }, h('span', { class: 'visually-hidden', text: t('today.open') })),
            ),
          ),
          h(
            'tbody',
            {},
            shown.map((c) =>
              h(
                'tr',
                { dataset: { consultation: c.id, state: c.state } },
                h('td', { text: `${fmtTime(c.start)} (${c.length_minutes} min)` }),
                h('td', { text: c.patient_name || '' }),
                scope === 'all' ? h('td', { class: 'therapist', text: c.therapist_id === me ? t('today.me') : c.therapist_name || '' }) : null,
                h('td', {}, statePill(c.state)),
                h(
                  'td',
                  {},
                  h('a', {
                    class: ['button', c.state === 'waiting' ? 'primary' : ''],
                    // A secretary runs no calls: the patient's page, to book or send the link.
                    href: secretary ? `/app/patients/${c.patient_id}` : `/app/consultations/${c.id}`,
                    'aria-label': `${t('today.open')}: ${c.patient_name || ''} ${fmtTime(c.start)}`,
                    text: t('today.open'),
                  }),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  replace(
    ctx.main,
    heading,
    h(
      'div',
      { class: 'actions day-nav' },
      h('button', { type: 'button', text: t('today.prev'), on: { click: () => go(addDays(day, -1)) } }),
      h('button', { type: 'button', text: t('today.today'), on: { click: () => go(copenhagenDate()) } }),
      h('button', { type: 'button', text: t('today.next'), on: { click: () => go(addDays(day, 1)) } }),
      dayForm,
    ),
    demoNotice(ctx.me),
    feeSlot,
    secretary ? null : scopePicker,
    waitingSlot,
    listSlot,
  );
  // The fee table out of date is everyone's business: lines are unconfirmed.
  api
    .get('/api/fees')
    .then((fees) => {
      if (fees.up_to_date) return;
      replace(
        feeSlot,
        h(
          'div',
          { class: 'notice warn', id: 'fees-out-of-date' },
          h('p', {}, h('strong', { text: t('fees.outOfDate') }), ' ', lang() === 'en' ? fees.warning_en : fees.warning_da),
          ctx.me.role === 'admin' ? h('p', {}, h('a', { href: '/app/admin#fees', text: t('fees.goToAdmin') })) : null,
        ),
      );
    })
    .catch(() => {});
  // Arrival signals: a chime (off until turned on here) and system notifications.
  const sound = h('input', { type: 'checkbox', id: 'arrival-sound', checked: localStorage.getItem(SOUND_KEY) === 'on' });
  sound.addEventListener('change', () => {
    localStorage.setItem(SOUND_KEY, sound.checked ? 'on' : 'off');
    if (sound.checked) chime();
  });
  const notifyButton =
    'Notification' in window && Notification.permission === 'default'
      ? h('button', {
          type: 'button',
          id: 'arrival-notify',
          text: t('today.notify'),
          on: {
            click: async (ev) => {
              await Notification.requestPermission().catch(() => {});
              ev.target.remove();
            },
          },
        })
      : null;
  waitingSlot.after(
    h(
      'div',
      { class: 'actions arrival-settings' },
      h('div', { class: 'check' }, sound, h('label', { for: sound.id, text: t('today.sound') })),
      notifyButton,
    ),
  );
  signals.setBase(document.title);

  await load();
  // The states, pushed; the audited full list only when they change.
  const onActivity = (activity) => {
    const states = activity.consultations.map((c) => `${c.id}:${c.state}`).join(',');
    if (states !== lastStates || Date.now() - lastFull > FULL_RELOAD_MS) load().catch(() => {});
  };
  let source = null;
  let streamDay = null;
  const listen = () => {
    if (typeof EventSource !== 'function') return;
    source?.close();
    streamDay = day;
    source = new EventSource(`/api/consultations/activity/events?day=${day}`);
    source.addEventListener('activity', (ev) => {
      document.body.dataset.activity = 'push';
      onActivity(JSON.parse(ev.data));
    });
    // EventSource reconnects by itself; meanwhile the poll below covers.
    source.addEventListener('error', () => {
      document.body.dataset.activity = 'poll';
    });
  };
  listen();
  // A slow safety net, and the fallback while the stream is down.
  const timer = setInterval(() => {
    if (streamDay !== day) listen();
    const pushed = source && source.readyState === EventSource.OPEN;
    if (pushed && Date.now() - lastFull < FULL_RELOAD_MS) return;
    api
      .get(`/api/consultations/activity?day=${day}`)
      .then(onActivity)
      .catch(() => {});
  }, POLL_MS);
  return () => {
    clearInterval(timer);
    source?.close();
    signals.restore();
  };
}
