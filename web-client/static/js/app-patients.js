// Patients: the list and a new patient; one patient's details, in-clinic
// visits, courses with their assessments, and scheduling a consultation.

import { ApiError, api } from './api.js';
import { announce, focusOn, h, replace } from './dom.js';
import { fmtDate, fmtDateTime, fmtLongDate, fmtTime, lang, t } from './i18n.js';
import { copenhagenDate, copenhagenTime, copenhagenToRfc3339 } from './time.js';
import { amountText, checkbox, errorBox, field, okBox, onSubmit, pageHeading, select, statePill } from './ui.js';
import { checkAll, dateField, timeField } from './fields.js';
import { accessLogCard, historyCard } from './app-privacy.js';

// ---------- List ----------

export async function patientsView(ctx) {
  const patients = await api.get('/api/patients');
  const search = h('input', { type: 'search', autocomplete: 'off' });
  const listSlot = h('div', {});

  const renderList = () => {
    const q = search.value.trim().toLowerCase();
    const shown = patients
      .filter((p) => !q || p.name.toLowerCase().includes(q))
      .sort((a, b) => a.name.localeCompare(b.name, 'da'));
    if (!shown.length) {
      replace(listSlot, h('p', { text: t('patients.empty') }));
      return;
    }
    replace(
      listSlot,
      h(
        'ul',
        { class: 'plain stack', id: 'patient-list' },
        shown.map((p) =>
          h('li', {}, h('a', { href: `/app/patients/${p.id}`, class: 'button', text: p.name, dataset: { patient: p.id } })),
        ),
      ),
    );
  };
  search.addEventListener('input', renderList);

  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' });
  const cpr = h('input', { type: 'text', name: 'cpr', inputmode: 'numeric', autocomplete: 'off' });
  const phone = h('input', { type: 'tel', name: 'phone', autocomplete: 'off' });
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'off' });
  const form = h(
    'form',
    { class: 'stack', id: 'new-patient' },
    h('div', { class: 'form-errors' }),
    field(t('patients.name'), name),
    h(
      'div',
      { class: 'grid-2' },
      field(t('patients.cpr'), cpr, { optional: true }),
      field(t('patients.phone'), phone, { optional: true }),
      field(t('patients.email'), email, { optional: true }),
    ),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('patients.create') })),
  );
  onSubmit(form, async () => {
    const body = { name: name.value.trim() };
    if (cpr.value.trim()) body.cpr = cpr.value.trim();
    if (phone.value.trim()) body.phone = phone.value.trim();
    if (email.value.trim()) body.email = email.value.trim();
    let created;
    try {
      created = await api.post('/api/patients', body);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'duplicate_patient' && err.problem.existing_patient_id) {
        // One person, one patient: lead to the patient who has the CPR number.
        const slot = form.querySelector('.form-errors');
        replace(
          slot,
          h(
            'div',
            { class: 'notice bad', role: 'alert', dataset: { codes: 'duplicate_patient' } },
            h('p', { text: t('problem.duplicate_patient') }),
            h('p', {}, h('a', { href: `/app/patients/${err.problem.existing_patient_id}`, text: t('patients.duplicate.open') })),
          ),
        );
        slot.querySelector('a').focus();
        return;
      }
      throw err;
    }
    ctx.navigate(`/app/patients/${created.id}`);
  });

  replace(
    ctx.main,
    pageHeading(t('patients.title')),
    h(
      'div',
      { class: 'cards' },
      h('section', { class: 'card', 'aria-labelledby': 'pl-h' }, h('h2', { id: 'pl-h', text: t('patients.title') }), field(t('patients.search'), search), listSlot),
      h('section', { class: 'card', 'aria-labelledby': 'np-h' }, h('h2', { id: 'np-h', text: t('patients.new') }), form),
    ),
  );
  renderList();
}

// ---------- One patient ----------

export async function patientView(ctx, id) {
  const [patient, catalogue, clinic] = await Promise.all([
    api.get(`/api/patients/${id}`),
    ctx.catalogue(),
    api.get('/api/clinic').catch(() => null),
  ]);
  const details = h('section', { class: 'card', 'aria-labelledby': 'pd-h' });
  const visits = h('section', { class: 'card', 'aria-labelledby': 'pv-h', id: 'visits' });
  const courses = h('section', { 'aria-labelledby': 'pc-h', id: 'courses' });
  const schedule = h('section', { class: 'card highlight', 'aria-labelledby': 'ps-h', id: 'schedule' });
  const consultations = h('section', { class: 'card', 'aria-labelledby': 'pcs-h', id: 'patient-consultations' });
  // A secretary sees who the patient is and books; no clinical data.
  const clinical = ctx.me.role !== 'secretary';
  const privacy = clinical ? [await historyCard(id), accessLogCard(id)] : [];

  replace(
    ctx.main,
    pageHeading(patient.name),
    h('p', {}, h('a', { href: '/app/patients', text: `← ${t('patients.title')}` })),
    identityNotice(ctx, patient),
    h('div', { class: 'cards' }, details, clinical ? visits : null),
    clinical ? courses : null,
    schedule,
    consultations,
    privacy,
  );

  const state = { patient, courses: [], relayDefault: clinic ? Boolean(clinic.relay_only_default) : true };
  renderDetails(details, state);
  await Promise.all([clinical ? renderVisits(visits, id) : null, loadCourses(), renderConsultations(consultations, patient, ctx)]);

  async function loadCourses() {
    state.courses = await api.get(`/api/patients/${id}/courses`);
    if (clinical) await renderCourses(courses, state, catalogue, loadCourses);
    renderSchedule(schedule, state, catalogue, ctx);
  }
}

/** A merged or duplicate patient says so; an admin can merge a duplicate. */
function identityNotice(ctx, patient) {
  if (patient.merged_into) {
    return h(
      'div',
      { class: 'notice warn', id: 'patient-merged' },
      h('p', { text: t('patient.merged') }),
      h('p', {}, h('a', { href: `/app/patients/${patient.merged_into}`, text: t('patients.duplicate.open') })),
    );
  }
  if (!patient.duplicate_of) return null;
  const slot = h('div', {});
  const form = h(
    'form',
    { class: 'stack', id: 'merge-form' },
    h('div', { class: 'form-errors' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('patient.merge') })),
    slot,
  );
  onSubmit(form, async () => {
    const done = await api.post(`/api/patients/${patient.id}/merge`, { into: patient.duplicate_of });
    ctx.navigate(`/app/patients/${done.into}`);
  });
  return h(
    'div',
    { class: 'notice warn', id: 'patient-duplicate' },
    h('p', { text: t('patient.duplicate') }),
    h('p', {}, h('a', { href: `/app/patients/${patient.duplicate_of}`, text: t('patients.duplicate.open') })),
    ctx.me.role === 'admin' ? form : h('p', { text: t('patient.merge.askAdmin') }),
  );
}

function renderDetails(section, state) {
  const p = state.patient;
  const facts = h(
    'dl',
    { class: 'facts' },
    h('dt', { text: t('patients.cpr') }),
    h('dd', { text: p.cpr || '–' }),
    h('dt', { text: t('patients.phone') }),
    h('dd', { text: p.phone || '–' }),
    h('dt', { text: t('patients.email') }),
    h('dd', { text: p.email || '–' }),
  );
  const name = h('input', { type: 'text', value: p.name, required: true });
  const cpr = h('input', { type: 'text', value: p.cpr || '' });
  const phone = h('input', { type: 'tel', value: p.phone || '' });
  const email = h('input', { type: 'email', value: p.email || '' });
  const form = h(
    'form',
    { class: 'stack' },
    h('div', { class: 'form-errors' }),
    field(t('patients.name'), name),
    field(t('patients.cpr'), cpr, { optional: true }),
    field(t('patients.phone'), phone, { optional: true }),
    field(t('patients.email'), email, { optional: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('common.save') })),
  );
  onSubmit(form, async () => {
    const body = { name: name.value.trim() };
    if (cpr.value.trim()) body.cpr = cpr.value.trim();
    if (phone.value.trim()) body.phone = phone.value.trim();
    if (email.value.trim()) body.email = email.value.trim();
    state.patient = await api.put(`/api/patients/${p.id}`, body);
    renderDetails(section, state);
    announce(t('app.saved'));
  });
  replace(
    section,
    h('h2', { id: 'pd-h', text: t('patient.details') }),
    facts,
    h('details', {}, h('summary', { class: 'button', text: t('patient.edit') }), form),
    h('p', {}, h('a', { href: `/api/patients/${p.id}/export`, download: `patient-${p.pseudonym || p.id}.json`, text: t('patient.export') })),
  );
}

async function renderVisits(section, id) {
  const list = await api.get(`/api/patients/${id}/visits`);
  list.sort((a, b) => new Date(b.at) - new Date(a.at));
  const date = dateField(t('patient.visit.date'), { value: copenhagenDate(), name: 'visit-date' });
  const time = timeField(t('patient.visit.time'), { value: copenhagenTime(), name: 'visit-time' });
  const result = h('div', { role: 'status' });
  const form = h(
    'form',
    { class: 'stack', id: 'visit-form' },
    h('div', { class: 'form-errors' }),
    h('fieldset', {}, h('legend', { text: t('patient.visit.at') }), h('div', { class: 'grid-2' }, date.el, time.el)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('patient.visit.add') })),
  );
  onSubmit(form, async () => {
    const at = copenhagenToRfc3339(...checkAll([date, time]));
    if (!at) throw new Error(t('common.error'));
    const visit = await api.post(`/api/patients/${id}/visits`, { at });
    await renderVisits(section, id);
    const status = section.querySelector('[role="status"]');
    status.append(okBox(t('patient.visit.added')));
    // A video line the same Danish day was reversed: tell the therapist why.
    for (const c of visit.reversed_video_lines || []) {
      status.append(h('p', { class: 'notice warn', dataset: { conflict: c.consultation_id } }, h('strong', { text: `${t('visit.conflict')} ` }), lang() === 'en' ? c.en : c.da));
    }
  });
  replace(
    section,
    h('h2', { id: 'pv-h', text: t('patient.visits') }),
    list.length
      ? h('ul', { id: 'visit-list' }, list.map((v) => h('li', { text: fmtDateTime(v.at) })))
      : h('p', { class: 'notice warn', text: t('patient.visits.none') }),
    result,
    form,
  );
}

function catalogueName(items, code) {
  const item = items.find((i) => i.code === code);
  if (!item) return code;
  return lang() === 'en' ? item.en : item.da;
}

function specialeName(code) {
  return t(`speciale.${code}`);
}

async function renderCourses(section, state, catalogue, reload) {
  const patientId = state.patient.id;
  const cards = await Promise.all(
    state.courses.map(async (course) => {
      const assessments = await api.get(`/api/courses/${course.id}/assessments`);
      return courseCard(course, assessments, catalogue, reload);
    }),
  );

  // A new course.
  const specialer = catalogue.specialer.map((s) => ({ value: String(s.code), text: lang() === 'en' ? s.en : s.da }));
  const speciale = select(specialer, { name: 'speciale', value: specialer[0]?.value });
  const structured = h('select', { name: 'structured' });
  const group = h('select', { name: 'diagnosis_group' });
  const referral = dateField(t('patient.course.referral'), { value: copenhagenDate(), name: 'referral_date' });
  const fillOptions = () => {
    const sp = Number(speciale.value);
    const fits = (i) => i.speciale === undefined || i.speciale === null || Number(i.speciale) === sp;
    const label = (i) => {
      const name = lang() === 'en' ? i.en : i.da;
      return i.available_from ? `${name} (${t('patient.course.from', { date: fmtDate(`${i.available_from}T12:00:00Z`) })})` : name;
    };
    replace(
      structured,
      h('option', { value: '', text: t('patient.course.structured.none') }),
      catalogue.structured_courses.filter(fits).map((i) => h('option', { value: i.code, text: label(i) })),
    );
    replace(
      group,
      h('option', { value: '', text: t('patient.course.group.none') }),
      catalogue.diagnosis_groups.filter(fits).map((i) => h('option', { value: i.code, text: label(i) })),
    );
  };
  speciale.addEventListener('change', fillOptions);
  fillOptions();
  const form = h(
    'form',
    { class: 'stack', id: 'course-form' },
    h('div', { class: 'form-errors' }),
    field(t('patient.course.speciale'), speciale),
    field(t('patient.course.structured'), structured, { optional: true }),
    field(t('patient.course.group'), group, { optional: true }),
    referral.el,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('patient.course.create') })),
  );
  onSubmit(form, async () => {
    const body = { speciale: Number(speciale.value), referral_date: referral.check() };
    if (structured.value) body.structured = structured.value;
    if (group.value) body.diagnosis_group = group.value;
    await api.post(`/api/patients/${patientId}/courses`, body);
    await reload();
    focusOn(section.querySelector('h2'));
  });

  replace(
    section,
    h('h2', { id: 'pc-h', text: t('patient.courses') }),
    cards.length ? h('div', { class: 'cards' }, cards) : h('p', { class: 'notice warn', text: t('patient.courses.none') }),
    h('div', { class: 'card' }, h('h3', { text: t('patient.course.new') }), form),
  );
}

function courseTitle(course, catalogue) {
  const parts = [t('patient.course.title', { speciale: t('speciale.short', { code: course.speciale }) })];
  if (course.structured) parts.push(catalogueName(catalogue.structured_courses, course.structured));
  if (course.diagnosis_group) parts.push(catalogueName(catalogue.diagnosis_groups, course.diagnosis_group));
  return parts.join(' – ');
}

const CRITERIA = ['cognitively_able', 'technically_able', 'clinically_relevant', 'patient_safe', 'patient_prefers_video'];

function courseCard(course, assessments, catalogue, reload) {
  const card = h('article', { class: 'card', dataset: { course: course.id }, 'aria-labelledby': `course-${course.id}` });
  const current = assessments
    .filter((a) => !a.revoked_at)
    .sort((a, b) => new Date(b.made_at) - new Date(a.made_at))[0];
  const revoked = assessments.filter((a) => a.revoked_at).sort((a, b) => new Date(b.revoked_at) - new Date(a.revoked_at))[0];

  const status = h('div', { class: 'assessment-status', role: 'status' });
  if (current) {
    const allMet = CRITERIA.every((c) => current.criteria[c]);
    const revoke = h('button', { type: 'button', class: 'danger', text: t('assess.revoke') });
    const confirmBox = h(
      'div',
      { class: 'notice warn', hidden: true, role: 'alertdialog', 'aria-label': t('assess.revoke') },
      h('p', { text: t('assess.revokeConfirm') }),
      h(
        'div',
        { class: 'actions' },
        h('button', {
          type: 'button',
          class: 'danger',
          text: t('assess.revoke'),
          dataset: { confirm: 'revoke' },
          on: {
            click: async (ev) => {
              ev.target.disabled = true;
              try {
                await api.post(`/api/assessments/${current.id}/revoke`);
                announce(t('assess.revokedDone'));
                await reload();
              } catch (err) {
                confirmBox.append(errorBox(err));
                ev.target.disabled = false;
              }
            },
          },
        }),
        h('button', { type: 'button', text: t('common.cancel'), on: { click: () => { confirmBox.hidden = true; focusOn(revoke); } } }),
      ),
    );
    revoke.addEventListener('click', () => {
      confirmBox.hidden = false;
      focusOn(confirmBox.querySelector('button'));
    });
    status.append(
      h('p', { class: allMet ? 'status ok' : 'status bad', text: t('assess.current', { date: fmtDateTime(current.made_at) }) }),
      h(
        'ul',
        { class: 'plain criteria' },
        CRITERIA.map((c) =>
          h('li', { dataset: { criterion: c, met: String(Boolean(current.criteria[c])) } },
            h('span', { class: current.criteria[c] ? 'pill ok' : 'pill bad', text: current.criteria[c] ? t('assess.met') : t('assess.notMet') }),
            ' ',
            t(`assess.${c}`),
          ),
        ),
      ),
      h('div', { class: 'actions' }, revoke),
      confirmBox,
    );
  } else {
    status.append(h('p', { class: 'status bad', text: t('assess.none') }));
    if (revoked) status.append(h('p', { class: 'muted', text: t('assess.revoked', { date: fmtDateTime(revoked.revoked_at) }) }));
  }

  const boxes = CRITERIA.map((c) => ({ c, ...checkbox(t(`assess.${c}`), { name: c }) }));
  const form = h(
    'form',
    { class: 'stack assessment-form' },
    h('div', { class: 'form-errors' }),
    h('fieldset', {}, h('legend', { text: t('assess.title') }), h('p', { class: 'hint', text: t('assess.intro') }), boxes.map((b) => b.el)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('assess.record') })),
  );
  onSubmit(form, async () => {
    const body = {};
    for (const b of boxes) body[b.c] = b.input.checked;
    await api.post(`/api/courses/${course.id}/assessments`, body);
    announce(t('assess.saved'));
    await reload();
  });

  replace(
    card,
    h('h3', { id: `course-${course.id}`, text: courseTitle(course, catalogue) }),
    h(
      'dl',
      { class: 'facts' },
      h('dt', { text: t('patient.course.referral') }),
      h('dd', { text: fmtDate(`${course.referral_date}T12:00:00Z`) }),
      course.opened_on ? [h('dt', { text: t('patient.course.opened') }), h('dd', { text: fmtDate(`${course.opened_on}T12:00:00Z`) })] : null,
    ),
    status,
    h('details', { open: !current }, h('summary', { class: 'button', text: t('assess.title') }), form),
  );
  return card;
}

/** Rounds up to the next five minutes from now (+5), as Copenhagen date and time. */
function nextSlot() {
  const d = new Date(Date.now() + 5 * 60000);
  d.setUTCMinutes(Math.ceil(d.getUTCMinutes() / 5) * 5, 0, 0);
  return { date: copenhagenDate(d), time: copenhagenTime(d) };
}

function renderSchedule(section, state, catalogue, ctx) {
  if (!state.courses.length) {
    replace(section, h('h2', { id: 'ps-h', text: t('schedule.title') }), h('p', { text: t('schedule.needCourse') }));
    return;
  }
  const slot = nextSlot();
  const course = select(
    state.courses.map((c) => ({ value: c.id, text: courseTitle(c, catalogue) })),
    { name: 'course', value: state.courses[state.courses.length - 1].id },
  );
  const date = dateField(t('schedule.date'), { value: slot.date, name: 'date' });
  const time = timeField(t('schedule.time'), { value: slot.time, name: 'time' });
  const length = h('input', { type: 'number', value: '30', min: '5', max: '240', step: '5', required: true, name: 'length' });
  // Starts at the clinic's default; sent either way, so it can be turned off too.
  const relay = checkbox(t('schedule.relayOnly'), { name: 'relay_only', checked: state.relayDefault });
  // An admin (or a secretary) books for a colleague; others book for themselves.
  // A secretary books for a clinician, never for themselves.
  const secretary = ctx.me.role === 'secretary';
  const therapist = secretary
    ? select([{ value: '', text: t('schedule.chooseTherapist') }], { name: 'therapist', value: '', required: true })
    : select([{ value: ctx.me.therapist_id, text: ctx.me.name }], { name: 'therapist', value: ctx.me.therapist_id });
  const therapistField = ctx.me.role === 'admin' || secretary ? field(t('schedule.therapist'), therapist) : null;
  if (therapistField) {
    api
      .get('/api/clinicians')
      .then((list) => {
        const options = list.map((x) => h('option', { value: x.id, text: x.id === ctx.me.therapist_id ? `${x.name} (${t('schedule.therapistMe')})` : x.name }));
        if (options.length) {
          replace(therapist, secretary ? [h('option', { value: '', text: t('schedule.chooseTherapist') }), ...options] : options);
          therapist.value = secretary ? '' : ctx.me.therapist_id;
        }
      })
      .catch(() => {});
  }
  const result = h('div', { id: 'schedule-result' });
  const form = h(
    'form',
    { class: 'stack', id: 'schedule-form' },
    field(t('schedule.course'), course),
    h('div', { class: 'grid-2' }, date.el, time.el, field(t('schedule.length'), length, { hint: t('schedule.length.hint') })),
    therapistField,
    relay.el,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('schedule.submit') })),
  );
  onSubmit(
    form,
    async () => {
      replace(result);
      const start = copenhagenToRfc3339(...checkAll([date, time]));
      if (!start) throw new Error(t('common.error'));
      const body = {
        patient_id: state.patient.id,
        course_id: course.value,
        start,
        length_minutes: Number(length.value),
        relay_only: relay.input.checked,
      };
      if (therapistField && therapist.value) body.therapist_id = therapist.value;
      const done = (res) => {
        replace(result, scheduledBox(res, state.patient));
        focusOn(result.querySelector('p'));
      };
      try {
        done(await api.post('/api/consultations', body));
      } catch (err) {
        if (!(err instanceof ApiError) || err.code !== 'overlapping_consultation') throw err;
        // The patient already has a consultation then (a second press of
        // "Planlæg"?): say so, and schedule only if the therapist means it.
        const anyway = h('button', {
          type: 'button',
          id: 'schedule-anyway',
          text: t('schedule.anyway'),
          on: {
            click: async () => {
              anyway.disabled = true;
              try {
                done(await api.post('/api/consultations', { ...body, allow_overlap: true }));
              } catch (again) {
                replace(result, errorBox(again, 'schedule.refused'));
              }
            },
          },
        });
        replace(result, h('div', { class: 'notice warn', role: 'alert' }, h('p', { text: t('problem.overlapping_consultation') }), h('div', { class: 'actions' }, anyway)));
        focusOn(result.firstElementChild);
      }
    },
    { errorSlot: result, introKey: 'schedule.refused' },
  );
  replace(section, h('h2', { id: 'ps-h', text: t('schedule.title') }), form, result);
}

// ---------- The patient's consultations ----------

/** States in which the join link may still be shown again. */
const LINK_STATES = new Set(['scheduled', 'open', 'waiting', 'in_call']);

/**
 * Past and upcoming consultations, newest first: when, with whom, the
 * state, the billing result and the journal note (read on request; it is
 * audited). An upcoming one can show its join link again, unchanged.
 */
async function renderConsultations(section, patient, ctx) {
  const list = await api.get(`/api/patients/${patient.id}/consultations`);
  const heading = h('h2', { id: 'pcs-h', text: t('history.title') });
  if (!list.length) {
    replace(section, heading, h('p', { class: 'muted', text: t('history.none') }));
    return;
  }
  const billingText = (b) => {
    if (!b) return t('history.notDecided');
    if (b.billable) return t('history.billed', { service: b.line.service_number, fee: amountText(b.line.fee) });
    return b.reason ? (lang() === 'en' ? b.reason.en : b.reason.da) : t('history.notBillable');
  };
  const item = ({ consultation: c, billing, has_journal: hasJournal }) => {
    const slot = h('div', {});
    const showLink = h('button', {
      type: 'button',
      text: t('history.showLink'),
      on: {
        click: async () => {
          try {
            const res = await api.get(`/api/consultations/${c.id}/link`);
            replace(slot, scheduledBox({ ...res, consultation: c }, patient, { again: true }));
            focusOn(slot.querySelector('p'));
          } catch (err) {
            if (err instanceof ApiError && err.status === 404) {
              replace(slot, h('p', { class: 'notice warn', role: 'alert', text: t('history.noLink') }));
            } else replace(slot, errorBox(err));
          }
        },
      },
    });
    const readJournal = h('button', {
      type: 'button',
      text: t('history.readJournal'),
      on: {
        click: async () => {
          try {
            const note = await api.get(`/api/consultations/${c.id}/journal`);
            replace(
              slot,
              h(
                'dl',
                { class: 'journal' },
                Object.entries(note)
                  .filter(([, v]) => v !== null && v !== undefined && v !== '')
                  .map(([k, v]) => [h('dt', { text: t(`journal.${k}`) }), h('dd', { text: typeof v === 'boolean' ? t(v ? 'history.yes' : 'history.no') : String(v) })]),
              ),
            );
          } catch (err) {
            replace(slot, errorBox(err));
          }
        },
      },
    });
    return h(
      'li',
      { dataset: { consultation: c.id, state: c.state } },
      h('p', {}, h('strong', { text: `${fmtLongDate(c.start)} ${fmtTime(c.start)}` }), ' ', statePill(c.state)),
      h('p', { text: t('history.with', { therapist: c.therapist_name || '', minutes: c.length_minutes }) }),
      h('p', { class: 'billing', text: billingText(billing) }),
      h(
        'div',
        { class: 'actions' },
        LINK_STATES.has(c.state) ? showLink : null,
        hasJournal && ctx.me.role !== 'secretary' ? readJournal : null,
        h('a', { class: 'button', href: `/app/consultations/${c.id}`, text: t('history.open') }),
      ),
      slot,
    );
  };
  replace(section, heading, h('ul', { class: 'plain history' }, list.map(item)));
}

function scheduledBox(res, patient, { again = false } = {}) {
  const c = res.consultation;
  const link = h('input', { type: 'text', readonly: true, value: res.join_url, id: 'join-link', class: 'join-link' });
  const copy = h('button', {
    type: 'button',
    text: t('schedule.copy'),
    on: {
      click: async () => {
        link.select();
        try {
          await navigator.clipboard.writeText(res.join_url);
        } catch {
          document.execCommand?.('copy');
        }
        announce(t('schedule.copied'));
      },
    },
  });
  const icsUrl = URL.createObjectURL(new Blob([res.invite_ics], { type: 'text/calendar;charset=utf-8' }));
  // The invitation as the server words it: with whom, when, the patient's
  // own payment (or that it is free), and the link; in the page's language.
  const invitation = lang() === 'en' ? res.invitation_en : res.invitation_da;
  const mailto = patient.email
    ? `mailto:${encodeURIComponent(patient.email)}?subject=${encodeURIComponent(t('schedule.mailSubject'))}&body=${encodeURIComponent(invitation)}`
    : null;
  return h(
    'div',
    { class: 'notice ok', dataset: { consultation: c.id } },
    h('p', { tabindex: '-1', text: t(again ? 'history.linkAgain' : 'schedule.done', { date: fmtLongDate(c.start), time: fmtTime(c.start) }) }),
    h('div', { class: 'field' }, h('label', { for: link.id, text: t('schedule.link') }), h('div', { class: 'copy-row' }, link, copy)),
    h('p', { class: 'hint', text: t('schedule.opens', { opens: fmtDateTime(res.link_opens_at), closes: fmtDateTime(res.link_closes_at) }) }),
    h(
      'details',
      { class: 'invitation' },
      h('summary', { text: t('schedule.invitation') }),
      h('p', { id: 'schedule-invitation', class: 'pre-line', text: invitation }),
    ),
    h(
      'div',
      { class: 'actions' },
      h('a', { class: 'button', href: icsUrl, download: 'videokonsultation.ics', text: t('schedule.ics') }),
      mailto ? h('a', { class: 'button', href: mailto, text: t('schedule.mail') }) : null,
      h('a', { class: 'button primary', href: `/app/consultations/${c.id}`, text: t('cons.connect') }),
    ),
  );
}
