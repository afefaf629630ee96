// The day's consultations: time, patient, state, who is waiting.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { fmtLongDate, fmtTime, t } from './i18n.js';
import { addDays, copenhagenDate } from './time.js';
import { field, pageHeading, statePill } from './ui.js';

const REFRESH_MS = 10000;

export async function todayView(ctx) {
  const params = new URLSearchParams(location.search);
  let day = /^\d{4}-\d{2}-\d{2}$/.test(params.get('day') || '') ? params.get('day') : copenhagenDate();

  const dayInput = h('input', { type: 'date', value: day, name: 'day' });
  const listSlot = h('div', { id: 'today-list' });
  const waitingSlot = h('div', { role: 'status', 'aria-live': 'polite', id: 'waiting-summary' });
  const heading = pageHeading(`${t('today.title')} – ${fmtLongDate(`${day}T12:00:00Z`)}`);

  const go = (d) => {
    day = d;
    dayInput.value = d;
    history.replaceState(null, '', d === copenhagenDate() ? '/app' : `/app?day=${d}`);
    heading.textContent = `${t('today.title')} – ${fmtLongDate(`${d}T12:00:00Z`)}`;
    load();
  };
  dayInput.addEventListener('change', () => {
    if (/^\d{4}-\d{2}-\d{2}$/.test(dayInput.value)) go(dayInput.value);
  });

  let lastWaiting = -1;
  async function load() {
    const list = await api.get(`/api/consultations?day=${day}`);
    list.sort((a, b) => new Date(a.start) - new Date(b.start));
    const waiting = list.filter((c) => c.state === 'waiting');
    if (waiting.length !== lastWaiting) {
      lastWaiting = waiting.length;
      replace(
        waitingSlot,
        waiting.length
          ? h('p', { class: 'notice warn', text: t('today.waitingNow', { n: waiting.length }) })
          : h('p', { class: 'muted', text: t('today.nobodyWaiting') }),
      );
    }
    if (!list.length) {
      replace(listSlot, h('p', { text: t('today.empty') }));
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
              h('th', { scope: 'col', text: t('today.state') }),
              h('th', { scope: 'col' }, h('span', { class: 'visually-hidden', text: t('today.open') })),
            ),
          ),
          h(
            'tbody',
            {},
            list.map((c) =>
              h(
                'tr',
                { dataset: { consultation: c.id, state: c.state } },
                h('td', { text: `${fmtTime(c.start)} (${c.length_minutes} min)` }),
                h('td', { text: c.patient_name || '' }),
                h('td', {}, statePill(c.state)),
                h(
                  'td',
                  {},
                  h('a', {
                    class: ['button', c.state === 'waiting' ? 'primary' : ''],
                    href: `/app/consultations/${c.id}`,
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
      { class: 'actions' },
      h('button', { type: 'button', text: t('today.prev'), on: { click: () => go(addDays(day, -1)) } }),
      h('button', { type: 'button', text: t('today.today'), on: { click: () => go(copenhagenDate()) } }),
      h('button', { type: 'button', text: t('today.next'), on: { click: () => go(addDays(day, 1)) } }),
      h('div', { class: 'inline-field' }, field(t('today.day'), dayInput)),
    ),
    waitingSlot,
    listSlot,
  );
  await load();
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}
