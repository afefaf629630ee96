// Clinic administration: clinic settings and retention, therapists, the
// fee table, and the audit log.

import { api } from './api.js';
import { announce, focusOn, h, replace } from './dom.js';
import { fmtDate, fmtDateTime, has, lang, t } from './i18n.js';
import { addDays } from './time.js';
import { checkbox, errorBox, field, okBox, onSubmit, pageHeading, select } from './ui.js';
import { InputError, dateField, formatDate } from './fields.js';
import { newPasswordInput } from './app-account.js';
import { privacyNoticeCard, recordsCard } from './app-privacy.js';

export async function adminView(ctx) {
  if (ctx.me.role !== 'admin') {
    replace(ctx.main, pageHeading(t('admin.title')), h('p', { class: 'notice warn', text: t('admin.onlyAdmins') }));
    return;
  }
  const [clinic, therapists, feeText, fees, audit, privacy, records] = await Promise.all([
    api.get('/api/clinic'),
    api.get('/api/therapists'),
    api.getText('/api/clinic/fee-table').catch(() => ''),
    api.get('/api/fees'),
    newestAudit(AUDIT_SHOWN).catch(() => null),
    privacyNoticeCard(),
    recordsCard(),
  ]);
  const reload = () => adminView(ctx);
  let steps = feeStepsCard(fees, clinic, reload);
  // A saved fee table changes the fees in force: the card above shows them.
  const refreshFees = async () => {
    const fresh = feeStepsCard(await api.get('/api/fees'), clinic, reload);
    steps.replaceWith(fresh);
    steps = fresh;
  };
  replace(
    ctx.main,
    pageHeading(t('admin.title')),
    h('div', { class: 'cards' }, clinicCard(clinic), therapistsCard(therapists, ctx.me)),
    h('div', { class: 'cards' }, privacy, records),
    steps,
    feeCard(feeText, refreshFees),
    audit ? auditCard(audit, therapists) : null,
  );
}

function clinicCard(clinic) {
  const name = h('input', { type: 'text', value: clinic.name, required: true });
  const yder = h('input', { type: 'text', value: clinic.ydernummer, required: true, inputmode: 'numeric', maxlength: '6' });
  const sp = [51, 62].map((code) => ({ code, ...checkbox(t(`speciale.${code}`), { checked: clinic.specialer.includes(code) }) }));
  const phone = h('input', { type: 'tel', value: clinic.phone || '', autocomplete: 'off', inputmode: 'tel', maxlength: '20' });
  const relay = checkbox(t('admin.relayDefault'), { checked: clinic.relay_only_default });
  const retention = clinic.retention || {};
  const retentionInputs = Object.keys(retention).map((key) => ({
    key,
    input: h('input', { type: 'number', min: '0', value: String(retention[key]) }),
  }));
  const result = h('div', {});
  const form = h(
    'form',
    { class: 'stack' },
    h('div', { class: 'form-errors' }),
    field(t('setup.clinicName'), name),
    field(t('setup.ydernummer'), yder, { hint: t('setup.ydernummer.hint') }),
    field(t('admin.phone'), phone, { hint: t('admin.phone.hint') }),
    h('fieldset', {}, h('legend', { text: t('setup.specialer') }), sp.map((s) => s.el)),
    relay.el,
    retentionInputs.length
      ? h(
          'fieldset',
          {},
          h('legend', { text: t('admin.retention') }),
          h('p', { class: 'hint', text: t('admin.retention.hint') }),
          retentionInputs.map((r) => field(t(`admin.retention.${r.key}`), r.input)),
        )
      : null,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('admin.saveClinic') })),
    result,
  );
  onSubmit(form, async () => {
    const body = {
      name: name.value.trim(),
      ydernummer: yder.value.trim(),
      specialer: sp.filter((s) => s.input.checked).map((s) => s.code),
      relay_only_default: relay.input.checked,
      phone: phone.value.trim(),
    };
    if (retentionInputs.length) {
      body.retention = {};
      for (const r of retentionInputs) body.retention[r.key] = Number(r.input.value);
    }
    await api.put('/api/clinic', body);
    replace(result, okBox(t('app.saved')));
  });
  return h('section', { class: 'card', 'aria-labelledby': 'cl-h' }, h('h2', { id: 'cl-h', text: t('admin.clinic') }), form);
}

/**
 * One account in the list, with the admin's controls for it (not for the
 * admin's own account, whose password is changed under "My account"):
 * deactivate or reactivate, and set a new password. Both end the
 * account's logins at once; deactivation asks first.
 */
function therapistItem(x, me, onChange) {
  const status = x.active === false ? h('span', { class: 'pill warn', text: t('admin.inactive') }) : null;
  const item = h('li', { dataset: { therapist: x.id } }, h('strong', { text: x.name }), ` · ${x.email} · ${t(`admin.role.${x.role}`)} `, status);
  if (x.id === me.therapist_id) return item;
  const errors = h('div', { class: 'form-errors' });
  const toggle = h('button', {
    type: 'button',
    class: 'button',
    text: t(x.active === false ? 'admin.reactivate' : 'admin.deactivate'),
    'aria-label': `${t(x.active === false ? 'admin.reactivate' : 'admin.deactivate')}: ${x.name}`,
  });
  toggle.addEventListener('click', async () => {
    const deactivating = x.active !== false;
    if (deactivating && !window.confirm(t('admin.deactivate.confirm', { name: x.name }))) return;
    toggle.disabled = true;
    try {
      const updated = await api.post(`/api/therapists/${x.id}/${deactivating ? 'deactivate' : 'reactivate'}`);
      announce(t(deactivating ? 'admin.deactivated' : 'admin.reactivated', { name: x.name }));
      onChange(updated);
    } catch (err) {
      toggle.disabled = false;
      replace(errors, errorBox(err));
    }
  });
  const resetButton = h('button', { type: 'button', class: 'button', text: t('admin.reset'), 'aria-expanded': 'false', 'aria-label': `${t('admin.reset')}: ${x.name}` });
  const password = newPasswordInput({ id: `reset-${x.id}` });
  const resetForm = h(
    'form',
    { class: 'stack', hidden: true },
    h('div', { class: 'form-errors' }),
    field(t('admin.reset.label', { name: x.name }), password, { hint: t('password.hint') }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('admin.reset.save') })),
  );
  const done = h('div', { role: 'status' });
  resetButton.addEventListener('click', () => {
    resetForm.hidden = !resetForm.hidden;
    resetButton.setAttribute('aria-expanded', String(!resetForm.hidden));
    if (!resetForm.hidden) password.focus();
  });
  onSubmit(resetForm, async () => {
    await api.post(`/api/therapists/${x.id}/password`, { new_password: password.value });
    resetForm.reset();
    resetForm.hidden = true;
    resetButton.setAttribute('aria-expanded', 'false');
    replace(done, okBox(t('admin.reset.done', { name: x.name })));
  });
  item.append(
    h('div', { class: 'actions', role: 'group', 'aria-label': t('admin.accountActions', { name: x.name }) }, toggle, resetButton),
    errors,
    resetForm,
    done,
  );
  return item;
}

function therapistsCard(therapists, me) {
  const list = h('ul', { class: 'plain stack', id: 'therapist-list' });
  const renderList = () =>
    replace(
      list,
      therapists.map((x, i) =>
        therapistItem(x, me, (updated) => {
          therapists[i] = updated;
          renderList();
          list.querySelector(`[data-therapist="${updated.id}"] button`)?.focus();
        }),
      ),
    );
  renderList();
  const name = h('input', { type: 'text', required: true, autocomplete: 'off' });
  const email = h('input', { type: 'email', required: true, autocomplete: 'off' });
  const password = newPasswordInput();
  const role = select(
    [
      { value: 'therapist', text: t('admin.role.therapist') },
      { value: 'admin', text: t('admin.role.admin') },
      { value: 'secretary', text: t('admin.role.secretary') },
    ],
    { value: 'therapist' },
  );
  const form = h(
    'form',
    { class: 'stack', id: 'new-therapist' },
    h('div', { class: 'form-errors' }),
    field(t('patients.name'), name),
    field(t('login.email'), email),
    field(t('admin.password'), password, { hint: t('password.hint') }),
    field(t('admin.role'), role),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('admin.addTherapist') })),
  );
  onSubmit(form, async () => {
    const created = await api.post('/api/therapists', {
      name: name.value.trim(),
      email: email.value.trim(),
      password: password.value,
      role: role.value,
    });
    therapists.push(created);
    renderList();
    form.reset();
    announce(t('app.saved'));
  });
  return h('section', { class: 'card', 'aria-labelledby': 'th-h' }, h('h2', { id: 'th-h', text: t('admin.therapists') }), list, h('h3', { text: t('admin.addTherapist') }), form);
}

/**
 * A table that may scroll sideways on a narrow screen, in a region named
 * by its caption (or heading) that keyboard users can focus and scroll.
 */
function scrollingTable(labelId, table) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': labelId }, table);
}

/** Kroner as typed in Denmark ("319,83", "1.234,50") to øre, or null. */
function kronerToOre(text) {
  const m = /^\s*(\d{1,3}(?:\.\d{3})*|\d+)(?:,(\d{1,2}))?\s*(?:kr\.?)?\s*$/.exec(text);
  if (!m) return null;
  const whole = Number(m[1].replaceAll('.', ''));
  const cents = m[2] ? Number(m[2].padEnd(2, '0')) : 0;
  return whole * 100 + cents;
}

/** Regulation dates (1 April, 1 October) from 2023 up to the next one after today, newest first. */
function regulationDates(today) {
  const dates = [];
  const lastYear = Number(today.slice(0, 4)) + 1;
  for (let year = 2023; year <= lastYear; year += 1) {
    for (const month of ['04', '10']) dates.push(`${year}-${month}-01`);
  }
  const next = dates.find((d) => d > today);
  return dates.filter((d) => d <= today || d === next).reverse();
}

/**
 * The fees in force, whether a regulation is missing, the steps, and the
 * form to record a step (a percentage or the official amounts).
 */
function feeStepsCard(fees, clinic, reload) {
  const kindName = (k) => t(`fees.kind.${k}`);
  const status = fees.up_to_date
    ? h('p', { class: 'notice ok', id: 'fees-status', text: t('fees.upToDate') })
    : h('div', { class: 'notice warn', id: 'fees-status', role: 'status' }, h('p', {}, h('strong', { text: t('fees.outOfDate') })), h('p', { text: lang() === 'en' ? fees.warning_en : fees.warning_da }));
  const current = scrollingTable(
    'fees-current-caption',
    h(
      'table',
      { id: 'fees-current' },
      h('caption', { id: 'fees-current-caption', text: t('fees.current') }),
      h('thead', {}, h('tr', {}, [t('billing.service'), t('fees.speciale'), t('billing.fee'), t('billing.patientShare'), t('fees.explained')].map((x) => h('th', { scope: 'col', text: x })))),
      h(
        'tbody',
        {},
        fees.current.map((f) =>
          h(
            'tr',
            {},
            h('td', { text: `${f.service_number} ${kindName(f.kind)}` }),
            h('td', { text: String(f.speciale) }),
            h('td', { class: 'num' }, f.fee.text, f.unconfirmed ? [' ', h('span', { class: 'pill warn', text: t('fees.unconfirmed') })] : null),
            h('td', { class: 'num', text: f.patient_share.text }),
            h('td', { text: lang() === 'en' ? f.explained_en : f.explained_da }),
          ),
        ),
      ),
    ),
  );
  const steps = h(
    'ul',
    { id: 'fee-steps' },
    fees.steps.map((s) => {
      const text = `sp. ${s.speciale}, ${fmtDate(`${s.effective_from}T12:00:00Z`)}: ${s.change_da} – ${s.source}`;
      if (s.published) return h('li', {}, text, ' ', h('span', { class: 'pill info', text: t('fees.published') }));
      const remove = h('button', { type: 'button', class: 'button', text: t('fees.remove') });
      remove.setAttribute('aria-label', `${t('fees.remove')}: ${text}`);
      remove.addEventListener('click', async () => {
        remove.disabled = true;
        await api.del(`/api/fees/steps/${s.speciale}/${s.effective_from}`);
        announce(t('fees.removed'));
        await reload();
      });
      return h('li', {}, text, ' ', remove);
    }),
  );

  const speciale = select(
    clinic.specialer.map((c) => ({ value: String(c), text: t(`speciale.${c}`) })),
    { name: 'speciale', id: 'step-speciale' },
  );
  const missingFirst = fees.missing.map((m) => m.effective_from);
  const dates = [...new Set([...missingFirst, ...regulationDates(fees.today)])];
  const date = select(dates.map((d) => ({ value: d, text: fmtDate(`${d}T12:00:00Z`) })), { name: 'effective_from', id: 'step-date' });
  const percentMode = h('input', { type: 'radio', name: 'how', value: 'percent', id: 'step-how-percent', checked: true });
  const amountsMode = h('input', { type: 'radio', name: 'how', value: 'amounts', id: 'step-how-amounts' });
  const percent = h('input', { type: 'text', id: 'step-percent', inputmode: 'decimal', autocomplete: 'off' });
  const amounts = {
    individual_video: h('input', { type: 'text', id: 'step-amount-individual', inputmode: 'decimal', autocomplete: 'off' }),
    hold_video: h('input', { type: 'text', id: 'step-amount-hold', inputmode: 'decimal', autocomplete: 'off' }),
  };
  const source = h('input', { type: 'text', id: 'step-source', required: true, maxlength: '300' });
  const percentField = field(t('fees.percent'), percent);
  const amountFields = h('div', { class: 'grid-2', hidden: true }, field(t('fees.amount.individual_video'), amounts.individual_video), field(t('fees.amount.hold_video'), amounts.hold_video));
  const sync = () => {
    percentField.hidden = !percentMode.checked;
    amountFields.hidden = percentMode.checked;
  };
  percentMode.addEventListener('change', sync);
  amountsMode.addEventListener('change', sync);
  const result = h('div', { role: 'status' });
  const form = h(
    'form',
    { class: 'stack', id: 'fee-step-form' },
    h('div', { class: 'form-errors' }),
    h('p', { text: t('fees.add.intro') }),
    h('div', { class: 'grid-2' }, field(t('fees.speciale'), speciale), field(t('fees.date'), date)),
    h(
      'fieldset',
      {},
      h('legend', { text: t('fees.how') }),
      h('div', { class: 'check' }, percentMode, h('label', { for: percentMode.id, text: t('fees.how.percent') })),
      h('div', { class: 'check' }, amountsMode, h('label', { for: amountsMode.id, text: t('fees.how.amounts') })),
    ),
    percentField,
    amountFields,
    field(t('fees.source'), source),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('fees.save') })),
    result,
  );
  onSubmit(form, async () => {
    const body = { speciale: Number(speciale.value), effective_from: date.value, source: source.value.trim() };
    if (percentMode.checked) {
      body.percent = percent.value.trim();
    } else {
      body.amounts_ore = {};
      for (const [kind, input] of Object.entries(amounts)) {
        const ore = kronerToOre(input.value);
        if (ore === null) {
          input.focus();
          throw new Error(t('fees.badAmount'));
        }
        body.amounts_ore[kind] = ore;
      }
    }
    const effects = await api.post('/api/fees/steps', body);
    announce(t('fees.saved', { n: effects.repriced.length, m: effects.now_billable.length }));
    await reload();
  });
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'fees-h', id: 'fees' },
    h('h2', { id: 'fees-h', text: t('fees.title') }),
    status,
    current,
    h('h3', { text: t('fees.steps') }),
    steps,
    h('h3', { text: t('fees.add') }),
    form,
  );
}

// ---------- The fee table as a form ----------

const FEE_KINDS = ['individual_video', 'hold_video'];
const FEE_SPECIALER = [51, 62];
const FEE_ROW_KEYS = ['kind', 'service_number', 'speciale', 'valid_from', 'valid_until', 'fee_ore', 'price_level'];

/** A line without its `#` comment (a `#` inside a string stays). */
function withoutComment(line) {
  let inString = false;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (inString && c === '\\') i += 1;
    else if (c === '"') inString = !inString;
    else if (c === '#' && !inString) return line.slice(0, i);
  }
  return line;
}

/** A TOML value of the fee table: a string, an integer or a date; undefined for anything else. */
function tomlValue(text) {
  if (/^"(?:[^"\\]|\\.)*"$/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }
  if (/^[+-]?\d[\d_]*$/.test(text)) return Number(text.replaceAll('_', ''));
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return text;
  return undefined;
}

const isDay = (v) => typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v);

/**
 * The rows of the fee table's TOML as the server writes it (`[[rows]]`
 * tables of `key = value` lines, `#` comments), or null when the text is
 * anything else: then the table is edited as text. Whether the rows make
 * a valid table is the server's to say.
 */
export function parseFeeRows(text) {
  const rows = [];
  let row = null;
  for (const raw of text.split(/\r?\n/)) {
    const line = withoutComment(raw).trim();
    if (!line) continue;
    if (line === '[[rows]]') {
      row = {};
      rows.push(row);
      continue;
    }
    const m = /^([a-z_]+)\s*=\s*(.+)$/.exec(line);
    if (!m || !row || !FEE_ROW_KEYS.includes(m[1]) || m[1] in row) return null;
    const value = tomlValue(m[2].trim());
    if (value === undefined) return null;
    row[m[1]] = value;
  }
  const fits = (r) =>
    FEE_KINDS.includes(r.kind) &&
    typeof r.service_number === 'string' &&
    FEE_SPECIALER.includes(r.speciale) &&
    isDay(r.valid_from) &&
    (r.valid_until === undefined || isDay(r.valid_until)) &&
    Number.isInteger(r.fee_ore) &&
    (r.price_level === undefined || isDay(r.price_level));
  return rows.length && rows.every(fits) ? rows : null;
}

/** Rows as the fee table's TOML (the format GET /api/clinic/fee-table gives). */
export function feeToml(rows) {
  const out = [
    '# Konsult fee table. Days are Danish calendar days; valid_from is inclusive,',
    '# valid_until exclusive (left out = until further notice). fee_ore is in øre.',
  ];
  for (const r of rows) {
    out.push('', '[[rows]]', `kind = "${r.kind}"`, `service_number = "${r.service_number}"`, `speciale = ${r.speciale}`, `valid_from = ${r.valid_from}`);
    if (r.valid_until) out.push(`valid_until = ${r.valid_until}`);
    out.push(`fee_ore = ${r.fee_ore}`);
    if (r.price_level) out.push(`price_level = ${r.price_level}`);
  }
  return `${out.join('\n')}\n`;
}

/** Øre as kroner with a Danish decimal comma, "307,95" (whatever the page's language). */
function oreToKroner(ore) {
  return `${Math.floor(ore / 100)},${String(ore % 100).padStart(2, '0')}`;
}

/** A typed fee in kroner ("307,95", "307.95", "307 kr", "1.234,50") as øre, or null. */
function feeToOre(text) {
  const s = text.trim().replace(/\s*(?:kr\.?|dkk)$/i, '');
  const m = /^(\d+)(?:[.,](\d{1,2}))?$/.exec(s);
  if (m) return Number(m[1]) * 100 + (m[2] ? Number(m[2].padEnd(2, '0')) : 0);
  return kronerToOre(text);
}

/**
 * One row of the fee table as a fieldset: service, service number,
 * speciale, fee in kroner, first day and (optional) last day. The file's
 * `valid_until` is the first day the row no longer applies; the form asks
 * for the last day it does ("til og med"), one day earlier. A row's price
 * level is kept as it was.
 */
function feeRowEditor(row, onRemove) {
  const kind = select(
    FEE_KINDS.map((k) => ({ value: k, text: t(`fees.kind.${k}`) })),
    { value: row.kind, name: 'kind' },
  );
  const number = h('input', { type: 'text', name: 'service_number', inputmode: 'numeric', maxlength: '4', autocomplete: 'off', value: row.service_number || '' });
  const speciale = select(
    FEE_SPECIALER.map((c) => ({ value: String(c), text: t(`feeForm.speciale.${c}`) })),
    { value: String(row.speciale), name: 'speciale' },
  );
  const fee = h('input', { type: 'text', name: 'fee', inputmode: 'decimal', autocomplete: 'off', value: Number.isInteger(row.fee_ore) ? oreToKroner(row.fee_ore) : '' });
  const from = dateField(t('feeForm.from'), { name: 'valid_from', value: row.valid_from || '' });
  const until = dateField(t('feeForm.until'), { name: 'valid_until', value: row.valid_until ? addDays(row.valid_until, -1) : '', optional: true });
  for (const input of [number, fee]) input.addEventListener('input', () => input.removeAttribute('aria-invalid'));
  const legend = h('legend');
  const remove = h('button', { type: 'button', class: 'button', on: { click: () => onRemove() } });
  const el = h(
    'fieldset',
    { class: 'fee-row' },
    legend,
    // What the row is for, then its number, fee and period (each with its format).
    h('div', { class: 'fee-row-fields' }, field(t('feeForm.kind'), kind), field(t('feeForm.speciale'), speciale)),
    h(
      'div',
      { class: 'fee-row-fields' },
      field(t('feeForm.serviceNumber'), number, { hint: t('feeForm.serviceNumber.hint') }),
      field(t('feeForm.fee'), fee, { hint: t('feeForm.fee.hint') }),
      from.el,
      until.el,
    ),
    row.price_level ? h('p', { class: 'hint', text: t('feeForm.priceLevel', { date: formatDate(row.price_level) }) }) : null,
    h('div', { class: 'actions' }, remove),
  );
  return {
    el,
    focus: () => kind.focus(),
    /** Shows the row's position (as the server's messages count rows, from 1). */
    number(n) {
      legend.textContent = t('feeForm.row', { n });
      remove.textContent = t('feeForm.removeRow', { n });
      el.dataset.row = String(n);
    },
    /**
     * The row as the file has it, what is wrong with it, and whether it is
     * whole (a first day, no unreadable day). `mark`: say what is wrong
     * at the fields too (on save); without it nothing changes on screen
     * (to fill the text view).
     */
    read(n, { mark = false } = {}) {
      const problems = [];
      const wrong = (input, text) => {
        problems.push(t('feeForm.rowProblem', { n, problem: text }));
        if (mark) input.setAttribute('aria-invalid', 'true');
      };
      const serviceNumber = number.value.trim();
      if (!/^\d{4}$/.test(serviceNumber)) wrong(number, t('feeForm.badServiceNumber'));
      const ore = feeToOre(fee.value);
      if (ore === null || ore <= 0) wrong(fee, t('feeForm.badFee'));
      const day = (f) => {
        if (!mark) return f.value || (f.input.value.trim() ? null : '');
        try {
          return f.check();
        } catch (err) {
          if (!(err instanceof InputError)) throw err;
          for (const reason of err.reasons) problems.push(t('feeForm.rowProblem', { n, problem: reason }));
          return null;
        }
      };
      const validFrom = day(from);
      const last = day(until);
      return {
        problems,
        whole: !problems.length && Boolean(validFrom) && last !== null,
        row: {
          kind: kind.value,
          service_number: serviceNumber,
          speciale: Number(speciale.value),
          valid_from: validFrom,
          valid_until: last ? addDays(last, 1) : undefined,
          fee_ore: ore,
          price_level: row.price_level,
        },
      };
    },
  };
}

/**
 * The clinic's fee table as a form, one fieldset per row, saved as the
 * same TOML as before (PUT /api/clinic/fee-table). "Advanced" opens the
 * text itself (and a file to load), for what the form cannot show; while
 * it is open, the text is what is saved. A refusal is shown above the
 * rows and nothing typed is lost.
 */
function feeCard(text, onSaved) {
  const rowsSlot = h('div', { class: 'stack', id: 'fee-rows' });
  const note = h('div', {});
  let editors = [];

  const renumber = () => editors.forEach((e, i) => e.number(i + 1));
  const addEditor = (row) => {
    const editor = feeRowEditor(row, () => {
      const i = editors.indexOf(editor);
      editors.splice(i, 1);
      editor.el.remove();
      renumber();
      announce(t('feeForm.removed', { n: i + 1 }));
      // Focus stays in the form: the next row's first field, or "add".
      if (editors[i]) editors[i].focus();
      else if (editors[i - 1]) editors[i - 1].focus();
      else addButton.focus();
    });
    editors.push(editor);
    rowsSlot.append(editor.el);
    return editor;
  };
  const showRows = (rows) => {
    editors = [];
    rowsSlot.replaceChildren();
    rows.forEach(addEditor);
    renumber();
  };
  const addButton = h('button', {
    type: 'button',
    class: 'button',
    id: 'fee-add-row',
    text: t('feeForm.add'),
    on: {
      click: () => {
        // A new row starts as a copy of the last one's service, without fee and dates.
        const last = editors.length ? editors[editors.length - 1].read(editors.length).row : null;
        const editor = addEditor({
          kind: last?.kind || FEE_KINDS[0],
          service_number: last?.service_number || '',
          speciale: last?.speciale || FEE_SPECIALER[0],
        });
        renumber();
        announce(t('feeForm.added', { n: editors.length }));
        editor.focus();
      },
    },
  });

  const area = h('textarea', { rows: '14', id: 'fee-table', spellcheck: 'false' });
  area.value = text;
  const file = h('input', { type: 'file', accept: '.toml,text/plain,application/toml', id: 'fee-file' });
  const advanced = h(
    'details',
    { class: 'fee-advanced', id: 'fee-advanced' },
    h('summary', { class: 'button', text: t('feeForm.advanced') }),
    h('div', { class: 'stack' }, h('p', { class: 'hint', text: t('feeForm.advanced.intro') }), field(t('admin.feeTable.file'), file), field(t('admin.feeTable.text'), area)),
  );
  file.addEventListener('change', async () => {
    const f = file.files?.[0];
    if (f) area.value = await f.text();
  });
  // Opening the text shows the rows as they stand (when they are whole);
  // closing it shows the text as rows again (when it can be).
  advanced.addEventListener('toggle', () => {
    if (advanced.open) {
      const read = editors.map((e, i) => e.read(i + 1));
      if (read.length && read.every((r) => r.whole)) area.value = feeToml(read.map((r) => r.row));
      replace(note);
      return;
    }
    const rows = parseFeeRows(area.value);
    if (rows) {
      showRows(rows);
      replace(note);
    } else {
      replace(note, h('p', { class: 'notice warn', text: t('feeForm.textNotRows') }));
    }
  });

  const initial = parseFeeRows(text);
  if (initial) showRows(initial);
  else {
    advanced.open = true;
    replace(note, h('p', { class: 'notice warn', text: t('feeForm.textOnly') }));
  }

  const result = h('div', {});
  const form = h(
    'form',
    { class: 'stack', id: 'fee-form', novalidate: true },
    h('div', { class: 'form-errors' }),
    h('p', { text: t('feeForm.intro') }),
    note,
    rowsSlot,
    h('div', { class: 'actions' }, addButton),
    advanced,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('admin.feeTable.save') })),
    result,
  );
  onSubmit(form, async () => {
    replace(result);
    let toml;
    if (advanced.open) {
      toml = area.value;
    } else {
      if (!editors.length) throw new InputError([t('feeForm.noRows')]);
      const read = editors.map((e, i) => e.read(i + 1, { mark: true }));
      const problems = read.flatMap((r) => r.problems);
      if (problems.length) throw new InputError(problems);
      toml = feeToml(read.map((r) => r.row));
      area.value = toml;
    }
    await api.putText('/api/clinic/fee-table', toml, 'application/toml');
    replace(result, okBox(t('app.saved')));
    await onSaved();
  });
  return h('section', { class: 'card', 'aria-labelledby': 'fee-h', id: 'fee-table-card' }, h('h2', { id: 'fee-h', text: t('admin.feeTable') }), form);
}

// ---------- The audit log in words ----------

/** How many of the newest audit entries the page shows. */
const AUDIT_SHOWN = 50;

/**
 * The newest `n` entries of the audit log. The API pages oldest first;
 * an intact chain says how many entries there are, so a second request
 * starts `n` from the end.
 */
async function newestAudit(n) {
  const first = await api.get(`/api/audit?limit=${n}`);
  const total = first.chain?.status === 'intact' ? first.chain.entries : 0;
  return total > n ? api.get(`/api/audit?after=${total - n}&limit=${n}`) : first;
}

/** Who did it, in words: a staff member's name, the patient (join link) or Konsult itself. */
function actorWords(actor, accounts) {
  if (actor === 'system') return t('audit.who.system');
  if (actor.startsWith('patient-link:')) return t('audit.who.patient');
  if (actor.startsWith('therapist:')) return accounts.get(actor.slice('therapist:'.length)) || t('audit.who.unknown');
  return actor;
}

/** What was done, in words; a code without words is shown as it is. */
function actionWords(code) {
  return has(`audit.action.${code}`) ? t(`audit.action.${code}`) : code;
}

/**
 * What an entry concerns, in words: the patient (a link to the page,
 * named once the admin asked for the names), the staff account, the
 * period or the fee step. Record ids (consultations, courses) are left
 * out: they say nothing to a person.
 */
function subjectWords(e, accounts, patientNames) {
  const parts = [];
  if (e.patient) {
    const name = patientNames?.get(e.patient);
    parts.push(h('a', { href: `/app/patients/${e.patient}`, text: name || t('audit.patient.open') }));
  }
  const s = e.subject || '';
  const day = (d) => formatDate(d);
  let m;
  if ((e.action.startsWith('therapist.') || e.action === 'clinic.first_admin') && accounts.has(s)) {
    parts.push(accounts.get(s));
  } else if (e.action.startsWith('fees.step') && (m = /speciale:(\d+) from:(\d{4}-\d{2}-\d{2})/.exec(s))) {
    parts.push(t('audit.feeStep', { speciale: m[1], date: day(m[2]) }));
  } else if ((e.action === 'billing.list' || e.action === 'billing.export') && (m = /^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})/.exec(s))) {
    parts.push(t('audit.period', { from: day(m[1]), to: day(m[2]) }));
  } else if (e.action === 'security.export' && (m = /^(\S+)\.\.(\S+)$/.exec(s))) {
    parts.push(t('audit.period', { from: fmtDateTime(m[1]), to: fmtDateTime(m[2]) }));
  } else if (e.action === 'retention.billing_deleted' && (m = /^before (\d{4}-\d{2}-\d{2})/.exec(s))) {
    parts.push(t('audit.before', { date: day(m[1]) }));
  } else if (e.action === 'patient.rectify' && (m = /fields:(\S+)/.exec(s))) {
    const names = m[1].split(',').map((f) => (has(`patients.${f}`) ? t(`patients.${f}`) : f));
    parts.push(t('audit.fields', { fields: names.join(', ') }));
  }
  return parts.flatMap((p, i) => (i ? [' · ', p] : [p]));
}

function auditCard(page, therapists) {
  const accounts = new Map(therapists.map((x) => [x.id, x.name]));
  const intact = page.chain?.status === 'intact';
  const entries = (page.entries || []).slice(-AUDIT_SHOWN).reverse();
  let patientNames = null;
  const tbody = h('tbody', {});
  const render = () =>
    replace(
      tbody,
      entries.map((e) =>
        h(
          'tr',
          { dataset: { action: e.action, seq: String(e.seq) } },
          h('td', { text: fmtDateTime(e.at) }),
          h('td', { text: actorWords(e.actor, accounts) }),
          h('td', { text: actionWords(e.action) }),
          h('td', {}, subjectWords(e, accounts, patientNames)),
        ),
      ),
    );
  render();

  // Patient names on request only: reading the patient list is itself
  // logged, once for every patient on it.
  const namesSlot = h('div', {});
  if (entries.some((e) => e.patient)) {
    const hint = h('p', { class: 'hint', id: 'audit-names-hint', text: t('audit.showNames.hint') });
    const button = h('button', { type: 'button', id: 'audit-names', text: t('audit.showNames'), 'aria-describedby': hint.id });
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const patients = await api.get('/api/patients');
        patientNames = new Map(patients.map((p) => [p.id, p.name]));
        render();
        const done = h('p', { class: 'notice ok', text: t('audit.namesShown') });
        replace(namesSlot, done);
        focusOn(done);
      } catch (err) {
        button.disabled = false;
        replace(namesSlot, h('div', { class: 'actions' }, button), hint, errorBox(err));
      }
    });
    replace(namesSlot, h('div', { class: 'actions' }, button), hint);
  }

  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'au-h', id: 'audit' },
    h('h2', { id: 'au-h', text: t('admin.audit') }),
    h('p', { class: intact ? 'status ok' : 'status bad', text: t(intact ? 'admin.audit.chainOk' : 'admin.audit.chainBad') }),
    namesSlot,
    scrollingTable(
      'audit-caption',
      h(
        'table',
        { id: 'audit-log' },
        h('caption', { id: 'audit-caption', text: t('audit.recent') }),
        h('thead', {}, h('tr', {}, [t('admin.audit.when'), t('admin.audit.who'), t('admin.audit.what'), t('audit.concerns')].map((x) => h('th', { scope: 'col', text: x })))),
        tbody,
      ),
    ),
  );
}
