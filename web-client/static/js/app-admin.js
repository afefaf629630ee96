// Clinic administration: clinic settings and retention, therapists, the
// fee table, and the audit log.

import { api } from './api.js';
import { announce, h, replace } from './dom.js';
import { fmtDateTime, t } from './i18n.js';
import { checkbox, field, okBox, onSubmit, pageHeading, select } from './ui.js';

export async function adminView(ctx) {
  if (ctx.me.role !== 'admin') {
    replace(ctx.main, pageHeading(t('admin.title')), h('p', { class: 'notice warn', text: t('admin.onlyAdmins') }));
    return;
  }
  const [clinic, therapists, feeText, audit] = await Promise.all([
    api.get('/api/clinic'),
    api.get('/api/therapists'),
    api.getText('/api/clinic/fee-table').catch(() => ''),
    api.get('/api/audit?limit=50').catch(() => null),
  ]);
  replace(
    ctx.main,
    pageHeading(t('admin.title')),
    h('div', { class: 'cards' }, clinicCard(clinic), therapistsCard(therapists)),
    feeCard(feeText),
    audit ? auditCard(audit, therapists) : null,
  );
}

function clinicCard(clinic) {
  const name = h('input', { type: 'text', value: clinic.name, required: true });
  const yder = h('input', { type: 'text', value: clinic.ydernummer, required: true, inputmode: 'numeric', maxlength: '6' });
  const sp = [51, 62].map((code) => ({ code, ...checkbox(t(`speciale.${code}`), { checked: clinic.specialer.includes(code) }) }));
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

function therapistsCard(therapists) {
  const list = h('ul', { class: 'plain stack', id: 'therapist-list' });
  const renderList = () =>
    replace(
      list,
      therapists.map((x) =>
        h('li', {}, h('strong', { text: x.name }), ` · ${x.email} · ${t(`admin.role.${x.role}`)}`, x.active === false ? ' · –' : ''),
      ),
    );
  renderList();
  const name = h('input', { type: 'text', required: true, autocomplete: 'off' });
  const email = h('input', { type: 'email', required: true, autocomplete: 'off' });
  const password = h('input', { type: 'password', required: true, minlength: '10', autocomplete: 'new-password' });
  const role = select(
    [
      { value: 'therapist', text: t('admin.role.therapist') },
      { value: 'admin', text: t('admin.role.admin') },
    ],
    { value: 'therapist' },
  );
  const form = h(
    'form',
    { class: 'stack' },
    h('div', { class: 'form-errors' }),
    field(t('patients.name'), name),
    field(t('login.email'), email),
    field(t('admin.password'), password),
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

function feeCard(text) {
  const area = h('textarea', { rows: '14', id: 'fee-table', spellcheck: 'false', value: text });
  area.value = text;
  const file = h('input', { type: 'file', accept: '.toml,text/plain,application/toml', id: 'fee-file' });
  file.addEventListener('change', async () => {
    const f = file.files?.[0];
    if (f) area.value = await f.text();
  });
  const result = h('div', {});
  const form = h(
    'form',
    { class: 'stack' },
    h('div', { class: 'form-errors' }),
    h('p', { text: t('admin.feeTable.intro') }),
    field(t('admin.feeTable.file'), file),
    field(t('admin.feeTable.text'), area),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('admin.feeTable.save') })),
    result,
  );
  onSubmit(form, async () => {
    await api.putText('/api/clinic/fee-table', area.value, 'application/toml');
    replace(result, okBox(t('app.saved')));
  });
  return h('section', { class: 'card', 'aria-labelledby': 'fee-h' }, h('h2', { id: 'fee-h', text: t('admin.feeTable') }), form);
}

function auditCard(page, therapists) {
  const names = new Map(therapists.map((x) => [`therapist:${x.id}`, x.name]));
  const intact = JSON.stringify(page.chain || '').toLowerCase().includes('intact');
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'au-h' },
    h('h2', { id: 'au-h', text: t('admin.audit') }),
    h('p', { class: intact ? 'status ok' : 'status bad', text: t(intact ? 'admin.audit.chainOk' : 'admin.audit.chainBad') }),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, ['admin.audit.when', 'admin.audit.who', 'admin.audit.what'].map((k) => h('th', { scope: 'col', text: t(k) })))),
        h(
          'tbody',
          {},
          (page.entries || []).slice(-50).reverse().map((e) => h('tr', {}, h('td', { text: fmtDateTime(e.at) }), h('td', { text: names.get(e.actor) || e.actor }), h('td', { text: e.action }))),
        ),
      ),
    ),
  );
}
