// Billing lines of a period with totals, CSV and JSON export, corrections.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { fmtDate, fmtOre, t } from './i18n.js';
import { copenhagenDate } from './time.js';
import { errorBox, field, okBox, onSubmit, pageHeading, select } from './ui.js';
import { checkAll, dateField } from './fields.js';

function monthStart(day) {
  return `${day.slice(0, 8)}01`;
}

export async function billingView(ctx) {
  const params = new URLSearchParams(location.search);
  const valid = (d) => /^\d{4}-\d{2}-\d{2}$/.test(d || '');
  const today = copenhagenDate();
  const from = dateField(t('billing.from'), { name: 'from', value: valid(params.get('from')) ? params.get('from') : monthStart(today) });
  const to = dateField(t('billing.to'), { name: 'to', value: valid(params.get('to')) ? params.get('to') : today });
  const by = select(
    [
      { value: 'posting', text: t('billing.by.posting') },
      { value: 'service', text: t('billing.by.service') },
    ],
    { name: 'by', value: params.get('by') === 'service' ? 'service' : 'posting' },
  );
  const table = h('div', { id: 'billing-table' });
  const exports = h('div', { class: 'actions' });
  const form = h(
    'form',
    { class: 'card', id: 'billing-period' },
    h('div', { class: 'form-errors' }),
    h('div', { class: 'grid-2' }, from.el, to.el),
    field(t('billing.by'), by),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('billing.show') })),
  );

  async function load() {
    const [fromDay, toDay] = checkAll([from, to]);
    const q = `from=${fromDay}&to=${toDay}`;
    history.replaceState(null, '', `/app/billing?${q}&by=${by.value}`);
    const page = await api.get(`/api/billing?${q}&by=${by.value}`);
    // Exports are by posting day, of periods that are over: nothing can be
    // posted in them any more, so exporting again gives the same file.
    replace(
      exports,
      toDay < copenhagenDate()
        ? [
            h('a', { class: 'button', href: `/api/billing/export.csv?${q}`, download: `afregning-${fromDay}-${toDay}.csv`, text: t('billing.csv') }),
            h('a', { class: 'button', href: `/api/billing/export.json?${q}`, download: `afregning-${fromDay}-${toDay}.json`, text: t('billing.json') }),
          ]
        : h('p', { class: 'hint', id: 'export-when-closed', text: t('billing.exportWhenClosed') }),
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
          h('caption', { class: 'visually-hidden', text: `${t('billing.title')} ${fmtDate(`${fromDay}T12:00:00Z`)} – ${fmtDate(`${toDay}T12:00:00Z`)}` }),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['billing.day', 'billing.postingDay', 'billing.patientRef', 'billing.service', 'billing.speciale'].map((k) => h('th', { scope: 'col', text: t(k) })),
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
              h('td', { colspan: '5', text: t('billing.total', { n: tot.lines }) }),
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
      replace(slot, okBox(t('billing.correctionMade')), redecideButton(l.consultation_id, slot, reload));
    },
    { errorSlot: slot },
  );
  return h(
    'tr',
    { dataset: { line: l.line_id } },
    h('td', { text: fmtDate(`${l.calendar_day}T12:00:00Z`) }),
    h('td', { text: fmtDate(`${l.posting_day || l.calendar_day}T12:00:00Z`) }),
    h('td', { text: l.patient_ref }),
    h(
      'td',
      {},
      String(l.service_number),
      l.fee_unconfirmed ? [' ', h('span', { class: 'pill warn', title: t('billing.unconfirmed'), text: t('fees.unconfirmed') }), h('span', { class: 'visually-hidden', text: ` ${t('billing.unconfirmed')}` })] : null,
    ),
    h('td', { text: String(speciale) }),
    h('td', { class: 'num', text: fmtOre(l.fee_ore) }),
    h('td', { class: 'num', text: fmtOre(l.region_share_ore) }),
    h('td', { class: 'num', text: fmtOre(l.patient_share_ore) }),
    h('td', {}, l.correction_of ? h('span', { class: 'pill info', text: t('billing.correction') }) : correction),
  );
}

/** After a reversal: decide the consultation's billing again (e.g. with today's fee table). */
function redecideButton(consultationId, slot, reload) {
  const button = h('button', { type: 'button', class: 'button', text: t('billing.redecide') });
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await api.post(`/api/consultations/${consultationId}/decision`, {});
      replace(slot, okBox(t('billing.redecided')));
      await reload();
    } catch (err) {
      replace(slot, errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}
