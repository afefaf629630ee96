// Billing lines of a period with totals, CSV and JSON export, corrections.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { fmtDate, fmtOre, t } from './i18n.js';
import { copenhagenDate } from './time.js';
import { field, okBox, onSubmit, pageHeading } from './ui.js';

function monthStart(day) {
  return `${day.slice(0, 8)}01`;
}

export async function billingView(ctx) {
  const params = new URLSearchParams(location.search);
  const valid = (d) => /^\d{4}-\d{2}-\d{2}$/.test(d || '');
  const today = copenhagenDate();
  const from = h('input', { type: 'date', name: 'from', required: true, value: valid(params.get('from')) ? params.get('from') : monthStart(today) });
  const to = h('input', { type: 'date', name: 'to', required: true, value: valid(params.get('to')) ? params.get('to') : today });
  const table = h('div', { id: 'billing-table' });
  const exports = h('div', { class: 'actions' });
  const form = h(
    'form',
    { class: 'card', id: 'billing-period' },
    h('div', { class: 'form-errors' }),
    h('div', { class: 'grid-2' }, field(t('billing.from'), from), field(t('billing.to'), to)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('billing.show') })),
  );

  async function load() {
    const q = `from=${from.value}&to=${to.value}`;
    history.replaceState(null, '', `/app/billing?${q}`);
    const page = await api.get(`/api/billing?${q}`);
    replace(
      exports,
      h('a', { class: 'button', href: `/api/billing/export.csv?${q}`, download: `afregning-${from.value}-${to.value}.csv`, text: t('billing.csv') }),
      h('a', { class: 'button', href: `/api/billing/export.json?${q}`, download: `afregning-${from.value}-${to.value}.json`, text: t('billing.json') }),
    );
    if (!page.lines.length) {
      replace(table, h('p', { text: t('billing.none') }));
      return;
    }
    const tot = page.totals;
    replace(
      table,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          {},
          h('caption', { class: 'visually-hidden', text: `${t('billing.title')} ${from.value} – ${to.value}` }),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['billing.day', 'billing.patientRef', 'billing.service', 'billing.speciale'].map((k) => h('th', { scope: 'col', text: t(k) })),
              ['billing.fee', 'billing.regionShare', 'billing.patientShare'].map((k) => h('th', { scope: 'col', class: 'num', text: t(k) })),
              h('th', { scope: 'col', text: t('billing.correction') }),
            ),
          ),
          h(
            'tbody',
            {},
            page.lines.map((l) => lineRow(l, load)),
          ),
          h(
            'tfoot',
            {},
            h(
              'tr',
              {},
              h('td', { colspan: '4', text: t('billing.total', { n: tot.lines }) }),
              h('td', { class: 'num', id: 'total-fee', text: tot.fee || fmtOre(tot.fee_ore) }),
              h('td', { class: 'num', id: 'total-region', text: tot.region_share || fmtOre(tot.region_share_ore) }),
              h('td', { class: 'num', id: 'total-patient', text: tot.patient_share || fmtOre(tot.patient_share_ore) }),
              h('td', {}),
            ),
          ),
        ),
      ),
    );
  }
  onSubmit(form, load);

  replace(ctx.main, pageHeading(t('billing.title')), form, exports, table);
  await load();
}

function lineRow(l, reload) {
  const speciale = typeof l.speciale === 'object' ? l.speciale.code ?? '' : l.speciale;
  const note = h('input', { type: 'text', required: true, maxlength: '500' });
  const slot = h('div', {});
  const correction = h(
    'details',
    {},
    h('summary', { class: 'button', text: t('billing.correct') }),
    h(
      'form',
      { class: 'stack' },
      field(t('billing.correctionNote'), note),
      h('button', { type: 'submit', class: 'primary', text: t('billing.correct') }),
    ),
    slot,
  );
  onSubmit(
    correction.querySelector('form'),
    async () => {
      await api.post(`/api/billing/${l.line_id}/correction`, { note: note.value.trim() });
      replace(slot, okBox(t('billing.correctionMade')));
      await reload();
    },
    { errorSlot: slot },
  );
  return h(
    'tr',
    { dataset: { line: l.line_id } },
    h('td', { text: fmtDate(`${l.calendar_day}T12:00:00Z`) }),
    h('td', { text: l.patient_ref }),
    h('td', { text: String(l.service_number) }),
    h('td', { text: String(speciale) }),
    h('td', { class: 'num', text: fmtOre(l.fee_ore) }),
    h('td', { class: 'num', text: fmtOre(l.region_share_ore) }),
    h('td', { class: 'num', text: fmtOre(l.patient_share_ore) }),
    h('td', {}, l.correction_of ? h('span', { class: 'pill info', text: t('billing.correction') }) : correction),
  );
}


