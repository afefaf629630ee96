// The logged-in therapist's own account, /app/account: change the password
// (the current one is needed; every other login ends) and log out
// everywhere.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { t } from './i18n.js';
import { errorBox, field, okBox, onSubmit, pageHeading } from './ui.js';

/** A new-password input with the policy's minimum and its hint id. */
export function newPasswordInput(props = {}) {
  return h('input', { type: 'password', required: true, minlength: '12', maxlength: '256', autocomplete: 'new-password', ...props });
}

export async function accountView(ctx, { onLoggedOut } = {}) {
  const current = h('input', { type: 'password', required: true, autocomplete: 'current-password', id: 'account-current' });
  const fresh = newPasswordInput({ id: 'account-new' });
  const repeat = newPasswordInput({ id: 'account-repeat' });
  const result = h('div', { role: 'status' });
  const form = h(
    'form',
    { class: 'stack', id: 'password-form' },
    h('div', { class: 'form-errors' }),
    h('p', { text: t('account.password.intro') }),
    field(t('account.current'), current),
    field(t('account.new'), fresh, { hint: t('password.hint') }),
    field(t('account.repeat'), repeat),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: t('account.change') })),
    result,
  );
  onSubmit(form, async () => {
    replace(result);
    if (fresh.value !== repeat.value) {
      repeat.focus();
      throw new Error(t('account.mismatch'));
    }
    await api.post('/api/account/password', { current_password: current.value, new_password: fresh.value });
    form.reset();
    replace(result, okBox(t('account.changed')));
  });

  const everywhere = h('button', { type: 'button', class: 'button', id: 'logout-everywhere', text: t('account.everywhere') });
  const everywhereErrors = h('div', { class: 'form-errors' });
  everywhere.addEventListener('click', async () => {
    if (!window.confirm(t('account.everywhere.confirm'))) return;
    everywhere.disabled = true;
    try {
      await api.post('/api/logout/everywhere');
      if (onLoggedOut) await onLoggedOut();
    } catch (err) {
      everywhere.disabled = false;
      replace(everywhereErrors, errorBox(err));
    }
  });

  replace(
    ctx.main,
    pageHeading(t('account.title')),
    h('p', { text: `${ctx.me.name} · ${ctx.me.clinic_name}` }),
    h(
      'div',
      { class: 'cards' },
      h('section', { class: 'card', 'aria-labelledby': 'pw-h' }, h('h2', { id: 'pw-h', text: t('account.password') }), form),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'ev-h' },
        h('h2', { id: 'ev-h', text: t('account.everywhere') }),
        h('p', { text: t('account.everywhere.intro') }),
        everywhereErrors,
        h('div', { class: 'actions' }, everywhere),
      ),
    ),
  );
}
