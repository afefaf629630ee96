// The privacy notice on the patient's join page (GDPR art. 13): who is
// responsible (the clinic), why, what is and is not kept, for how long,
// the patient's rights and whom to contact. The clinic's own text or the
// default, in Danish and English, from GET /api/join/<token>/privacy; it
// works for any link, also an unknown or expired one.
//
// Self-contained: it fills the footer's #privacy section of join.html on
// every screen and follows the language switch; join.js knows nothing of it.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { lang, onLangChange, t } from './i18n.js';

const token = decodeURIComponent(location.pathname.replace(/^\/join\//, '').split('/')[0] || '');
let notice = null;

/** Shows the notice (or the short fallback) in the current language. */
function render() {
  const summary = document.getElementById('privacy-summary');
  const body = document.getElementById('privacy-body');
  if (!summary || !body) return;
  if (!notice) {
    summary.textContent = t('privacy.fallback');
    replace(body, h('p', { text: t('privacy.fallback') }));
    return;
  }
  const text = lang() === 'en' ? notice.en : notice.da;
  summary.textContent = text.summary;
  replace(
    body,
    h('h2', { text: text.title }),
    text.sections.map((s) => [
      s.heading ? h('h3', { text: s.heading }) : null,
      s.paragraphs.map((p) => h('p', { text: p })),
    ]),
  );
  document.getElementById('privacy')?.setAttribute('data-source', notice.source);
}

async function load() {
  try {
    notice = await api.get(`/api/join/${encodeURIComponent(token)}/privacy`);
  } catch {
    notice = null;
  }
  render();
}

onLangChange(render);
render();
load();
