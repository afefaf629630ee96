// Data protection in the dashboard: on a patient's page, who has accessed
// the record (sundhedsloven § 42 a) with files to hand over, and the
// correction history of the personal details (GDPR art. 16); for admins,
// the clinic's privacy notice for patients (art. 13), the records of
// processing (art. 30) and the access and login log of a period (art. 33).

import { api } from './api.js';
import { h, replace } from './dom.js';
import { fmtDateTime, lang, t } from './i18n.js';
import { copenhagenDate } from './time.js';
import { field, okBox, onSubmit } from './ui.js';
import { checkAll, dateField } from './fields.js';

const words = (texts) => (texts ? (lang() === 'en' ? texts.en : texts.da) : '');
const whoText = (who) => who.name || words(who.role_text);

// ---------- A patient's access log and correction history ----------

/** The access log card of a patient's page. */
export function accessLogCard(patientId) {
  const slot = h('div', { id: 'access-log' });
  const toggle = h('button', { type: 'button', 'aria-expanded': 'false', 'aria-controls': 'access-log', text: t('patient.access.show') });
  toggle.addEventListener('click', async () => {
    if (toggle.getAttribute('aria-expanded') === 'true') {
      replace(slot);
      toggle.setAttribute('aria-expanded', 'false');
      toggle.textContent = t('patient.access.show');
      return;
    }
    const log = await api.get(`/api/patients/${patientId}/access-log`);
    const entries = [...log.entries].reverse();
    replace(
      slot,
      h('p', { role: 'status', text: t('patient.access.count', { n: entries.length }) }),
      // Focusable, so keyboard users can scroll a wide table.
      h(
        'div',
        { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': t('patient.access.title') },
        h(
          'table',
          {},
          h('caption', { class: 'visually-hidden', text: t('patient.access.title') }),
          h('thead', {}, h('tr', {}, ['when', 'who', 'role', 'what'].map((k) => h('th', { scope: 'col', text: t(`patient.access.${k}`) })))),
          h(
            'tbody',
            {},
            entries.map((e) =>
              h(
                'tr',
                { dataset: { action: e.action } },
                h('td', { text: fmtDateTime(e.at) }),
                h('td', { text: whoText(e.who) }),
                h('td', { text: words(e.who.role_text) }),
                h('td', { text: words(e.what) }),
              ),
            ),
          ),
        ),
      ),
    );
    toggle.setAttribute('aria-expanded', 'true');
    toggle.textContent = t('patient.access.hide');
  });
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'pa-h', id: 'access' },
    h('h2', { id: 'pa-h', text: t('patient.access.title') }),
    h('p', { text: t('patient.access.intro') }),
    h(
      'div',
      { class: 'actions' },
      toggle,
      h('a', { class: 'button', href: `/api/patients/${patientId}/access-log.csv`, download: '', text: t('patient.access.csv') }),
      h('a', { class: 'button', href: `/api/patients/${patientId}/access-log.csv?lang=en`, download: '', text: t('patient.access.csvEn') }),
    ),
    slot,
  );
}

/** The correction history of a patient's personal details. */
export async function historyCard(patientId) {
  const revisions = await api.get(`/api/patients/${patientId}/history`);
  const label = (f) => t(`patients.${f}`);
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'ph-h', id: 'history' },
    h('h2', { id: 'ph-h', text: t('patient.history.title') }),
    revisions.length
      ? h(
          'ul',
          { id: 'history-list' },
          [...revisions].reverse().map((r) =>
            h(
              'li',
              {},
              t('patient.history.entry', { when: fmtDateTime(r.at), who: whoText(r.by), fields: r.fields.map(label).join(', ') }),
              h('br'),
              h('span', {
                class: 'muted',
                text: t('patient.history.before', {
                  values: r.fields.map((f) => `${label(f)}: ${r.previous[f] ?? '–'}`).join('; '),
                }),
              }),
            ),
          ),
        )
      : h('p', { text: t('patient.history.none') }),
  );
}

// ---------- Administration ----------

/** The clinic's privacy notice for patients: contact and own texts. */
export async function privacyNoticeCard() {
  const current = await api.get('/api/clinic/privacy-notice');
  const s = current.settings || {};
  const contact = h('input', { type: 'text', required: true, maxlength: '500', value: s.contact || '' });
  const textDa = h('textarea', { rows: '5', maxlength: '5000' });
  textDa.value = s.text_da || '';
  const textEn = h('textarea', { rows: '5', maxlength: '5000' });
  textEn.value = s.text_en || '';
  const source = h('p', { class: 'status', role: 'status' });
  const showSource = (notice) => {
    source.textContent = t(`admin.privacy.source.${notice.source}`);
  };
  showSource(current.notice);
  const result = h('div', {});
  const form = h(
    'form',
    { class: 'stack', id: 'privacy-form' },
    h('div', { class: 'form-errors' }),
    field(t('admin.privacy.contact'), contact, { hint: t('admin.privacy.contact.hint') }),
    field(t('admin.privacy.textDa'), textDa, { hint: t('admin.privacy.text.hint'), optional: true }),
    field(t('admin.privacy.textEn'), textEn, { hint: t('admin.privacy.text.hint'), optional: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('admin.privacy.save') })),
    result,
  );
  onSubmit(form, async () => {
    const body = { contact: contact.value.trim() };
    if (textDa.value.trim()) body.text_da = textDa.value;
    if (textEn.value.trim()) body.text_en = textEn.value;
    const saved = await api.put('/api/clinic/privacy-notice', body);
    showSource(saved.notice);
    replace(result, okBox(t('app.saved')));
  });
  const reset = h('button', { type: 'button', text: t('admin.privacy.reset') });
  reset.addEventListener('click', async () => {
    await api.del('/api/clinic/privacy-notice');
    contact.value = '';
    textDa.value = '';
    textEn.value = '';
    showSource({ source: 'default' });
    replace(result, okBox(t('app.saved')));
  });
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'pn-h', id: 'privacy-notice' },
    h('h2', { id: 'pn-h', text: t('admin.privacy') }),
    h('p', { text: t('admin.privacy.intro') }),
    source,
    form,
    h('div', { class: 'actions' }, reset),
  );
}

/** Starts a download of `href` (the server sends it as an attachment). */
function download(href) {
  const a = h('a', { href, download: '', hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

/** The records of processing and the access and login log of a period. */
export async function recordsCard() {
  const records = await api.get('/api/clinic/records-of-processing');
  const from = dateField(t('admin.security.from'), { name: 'from', value: copenhagenDate(new Date(Date.now() - 30 * 86400000)) });
  const to = dateField(t('admin.security.to'), { name: 'to', value: copenhagenDate() });
  const form = h(
    'form',
    { class: 'stack', id: 'security-form' },
    h('div', { class: 'form-errors' }),
    h('div', { class: 'grid-2' }, from.el, to.el),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('admin.security.download') })),
  );
  onSubmit(form, async () => {
    const [fromDay, toDay] = checkAll([from, to]);
    const q = `from=${encodeURIComponent(fromDay)}&to=${encodeURIComponent(toDay)}`;
    // Checked first, so a bad period shows its reason instead of a broken file.
    await api.get(`/api/security/export?${q}`);
    download(`/api/security/export?${q}`);
  });
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'rp-h', id: 'records' },
    h('h2', { id: 'rp-h', text: t('admin.records') }),
    h('p', { text: t('admin.records.intro') }),
    records.gaps.length
      ? h('div', { class: 'notice warn' }, h('p', { text: t('admin.records.gaps') }), h('ul', {}, records.gaps.map((g) => h('li', { text: words(g) }))))
      : h('p', { class: 'notice ok', text: t('admin.records.complete') }),
    h('p', {}, h('a', { class: 'button', href: '/api/clinic/records-of-processing', download: 'konsult-fortegnelse.json', text: t('admin.records.download') })),
    h('h3', { text: t('admin.security.title') }),
    h('p', { text: t('admin.security.intro') }),
    form,
  );
}
