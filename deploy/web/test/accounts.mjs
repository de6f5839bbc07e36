// The page's account views in headless Chromium, run by browser.mjs against its local stack:
// registration, "your sessions" with End, TOTP enrolment (QR code, key, recovery codes), the
// two-step login with an app code and with a recovery code, turning the factor off, and the
// administration view (find a user, their account and sessions, disable, enable, end all
// sessions, the audit trail by user and type, page by page). Each view's screenshot goes to
// target/screenshots/<view>.png.

import {
  Authenticator, answerTo, check, pageFetch, screenshot, text, until,
} from './support.mjs';

// Strong enough for a tightened password policy (zxcvbn score 3 or more).
const PASSWORD = 'correct-Horse-battery-staple-42';
const USER = 'reader';
const SECOND_AGENT = 'Mozilla/5.0 (X11; Linux x86_64) authbooks-browser-test second-device';

/**
 * Runs the account steps with `report.step`. `watch` sets up a new page (timeouts, error
 * collection), `show` names the page a failure screenshot should show. Returns the screenshots.
 */
export async function accountSteps({ browser, base, adminPassword, report, watch, show }) {
  const shots = [];
  const shot = async (page, name) => shots.push(await screenshot(page, name));

  const open = async (options = {}) => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, ...options });
    const page = watch(await context.newPage());
    await page.goto(`${base}/`);
    await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
    return page;
  };

  const whoami = (page) => text(page.locator('#whoami'));
  const signedInAs = (page, name) => until(`"Signed in as ${name}"`,
    async () => (await whoami(page)).startsWith(`Signed in as ${name} `));
  const errorShown = (page, message) => until(`the message ${JSON.stringify(message)}`,
    async () => (await page.locator('#error').isVisible()) && (await text(page.locator('#error-message'))) === message);
  const meStatus = async (page) => (await pageFetch(page, 'GET', '/auth/me')).status;

  /** The first step of the login form; the answer to POST /auth/session. */
  const passwordStep = async (page, username, password) => {
    const form = page.locator('#login-form');
    await form.getByLabel('Username').fill(username);
    await form.getByLabel('Password').fill(password);
    return answerTo(page, 'POST', '/auth/session', () => form.getByRole('button', { name: 'Log in' }).click());
  };

  /** The second step's form: the code, and the answer to POST /auth/session/mfa. */
  const codeStep = async (page, code) => {
    const form = page.getByRole('form', { name: 'Two-step verification' });
    await form.waitFor();
    await form.getByLabel('Code').fill(code);
    return answerTo(page, 'POST', '/auth/session/mfa', () => form.getByRole('button', { name: 'Verify' }).click());
  };

  /** Password, then `code` at the second step: signed in. */
  const loginWithCode = async (page, code) => {
    const first = await passwordStep(page, USER, PASSWORD);
    check(first.status === 401 && first.body.error === 'mfa_required',
      `the password step answered ${first.status} ${JSON.stringify(first.body)}`);
    const second = await codeStep(page, code);
    check(second.status === 204, `the code step answered ${second.status} ${JSON.stringify(second.body)}`);
    await signedInAs(page, USER);
  };

  const logout = async (page) => {
    await page.getByRole('button', { name: 'Log out', exact: true }).click();
    await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
  };

  const nav = (page, name) => page.getByRole('navigation', { name: 'Views' }).getByRole('button', { name });

  let page; // the user's browser
  let other; // the user's second browser
  let admin; // the administrator's browser
  let authenticator;
  let recoveryCodes;
  let userId;

  await report.step('registers through the form: a weak password gets the field message, a good one signs in', async () => {
    page = await open();
    show(page);
    const form = page.getByRole('form', { name: 'Create an account' });
    await form.getByLabel('Username').fill(USER);
    await form.getByLabel('Password').fill('short');
    const weak = await answerTo(page, 'POST', '/auth/register',
      () => form.getByRole('button', { name: 'Create account' }).click());
    check(weak.status === 422 && weak.body.fields?.password,
      `a short password answered ${weak.status} ${JSON.stringify(weak.body)}`);
    await errorShown(page, weak.body.message);
    const fields = await page.locator('#error-fields li').allTextContents();
    check(fields.includes(`password: ${weak.body.fields.password}`), `fields shown: ${JSON.stringify(fields)}`);
    await shot(page, 'register');

    await form.getByLabel('Password').fill(PASSWORD);
    const created = await answerTo(page, 'POST', '/auth/register',
      () => form.getByRole('button', { name: 'Create account' }).click());
    check(created.status === 201 && created.body.username === USER,
      `registering answered ${created.status} ${JSON.stringify(created.body)}`);
    userId = created.body.id;
    await signedInAs(page, USER);
    check(await whoami(page) === `Signed in as ${USER} (user)`, `the page says ${JSON.stringify(await whoami(page))}`);
    check(await nav(page, 'Administration').count() === 0, 'a plain user is offered the administration view');
  });

  await report.step('a taken username gets the conflict message', async () => {
    other = await open({ userAgent: SECOND_AGENT });
    show(other);
    const form = other.getByRole('form', { name: 'Create an account' });
    await form.getByLabel('Username').fill(USER.toUpperCase());
    await form.getByLabel('Password').fill(PASSWORD);
    const taken = await answerTo(other, 'POST', '/auth/register',
      () => form.getByRole('button', { name: 'Create account' }).click());
    check(taken.status === 409 && taken.body.error === 'conflict', `expected 409 conflict, got ${taken.status}`);
    await errorShown(other, taken.body.message);
  });

  await report.step('your sessions: both browsers listed, this one marked; End logs the other one out', async () => {
    const login = await passwordStep(other, USER, PASSWORD);
    check(login.status === 204, `the second browser's login answered ${login.status}`);
    await signedInAs(other, USER);

    show(page);
    await nav(page, 'Your account').click();
    await page.getByRole('heading', { name: 'Your sessions' }).waitFor();
    const rows = page.locator('#sessions tr');
    await until('two sessions', async () => (await rows.count()) === 2);
    const current = page.locator('#sessions tr.current');
    check(await current.count() === 1, 'no session is marked as this browser');
    check((await text(current)).includes('This browser'), `the current row reads ${JSON.stringify(await text(current))}`);
    const otherRow = rows.filter({ hasText: 'second-device' });
    check(await otherRow.count() === 1, 'the second browser\'s session is not listed with its user agent');
    check(!(await otherRow.getAttribute('class'))?.includes('current'), 'the other browser is marked as this one');
    await shot(page, 'sessions');

    const otherId = await otherRow.getAttribute('data-id');
    const ended = await answerTo(page, 'DELETE', `/auth/sessions/${otherId}`,
      () => otherRow.getByRole('button', { name: /^End/ }).click());
    check(ended.status === 204, `ending the session answered ${ended.status} ${JSON.stringify(ended.body)}`);
    await until('one session left', async () => (await rows.count()) === 1 && (await page.locator('#sessions tr.current').count()) === 1);
    check((await text(page.locator('#notice'))).startsWith('Session ended'), 'no confirmation is shown');
    check(await meStatus(page) === 200, 'ending the other session ended this one');

    // The other browser's access token and refresh token are both refused now.
    check(await meStatus(other) === 401, 'the ended session\'s access token still works');
    const refreshed = await pageFetch(other, 'POST', '/auth/refresh');
    check(refreshed.status === 401, `the ended session's refresh token answered ${refreshed.status}`);
    await other.reload();
    await other.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
    await other.context().close();
  });

  await report.step('turns on two-factor authentication: QR code and key, a wrong code refused, then 10 recovery codes', async () => {
    show(page);
    const status = page.locator('#mfa-status');
    check((await text(status)).startsWith('Off'), `the status reads ${JSON.stringify(await text(status))}`);
    const started = await answerTo(page, 'POST', '/auth/mfa/totp',
      () => page.getByRole('button', { name: 'Turn on two-factor authentication' }).click());
    check(started.status === 200 && started.body.secret, `starting enrolment answered ${started.status}`);

    const qr = page.getByRole('img', { name: 'QR code for your authenticator app' });
    await qr.waitFor();
    const src = await qr.getAttribute('src');
    const prefix = 'data:image/svg+xml;base64,';
    check(src.startsWith(prefix), `the QR code's src starts ${JSON.stringify(src.slice(0, 40))}`);
    check(Buffer.from(src.slice(prefix.length), 'base64').toString('utf8') === started.body.qr_svg,
      'the image is not the server\'s SVG');
    await until('the QR code to be drawn', () => qr.evaluate((img) => img.complete && img.naturalWidth >= 200));
    // The key as the user reads it off the page, into the "authenticator app".
    const key = (await text(page.locator('#mfa-secret'))).replace(/\s/g, '');
    check(key === started.body.secret, `the page shows the key ${key}`);
    authenticator = new Authenticator(key);
    await shot(page, 'mfa-enrol');

    const form = page.locator('#mfa-confirm-form');
    await form.getByLabel('Code from the app').fill(authenticator.wrong());
    const wrong = await answerTo(page, 'POST', '/auth/mfa/totp/confirm',
      () => form.getByRole('button', { name: 'Confirm' }).click());
    check(wrong.status === 401 && wrong.body.error === 'invalid_mfa_code', `a wrong code answered ${wrong.status}`);
    await errorShown(page, wrong.body.message);
    check(await qr.isVisible(), 'a wrong code closed the enrolment');
    await signedInAs(page, USER);

    await form.getByLabel('Code from the app').fill(await authenticator.next());
    const confirmed = await answerTo(page, 'POST', '/auth/mfa/totp/confirm',
      () => form.getByRole('button', { name: 'Confirm' }).click());
    check(confirmed.status === 200 && confirmed.body.recovery_codes?.length === 10,
      `confirming answered ${confirmed.status} ${JSON.stringify(confirmed.body)}`);
    const list = page.getByRole('list', { name: 'Your recovery codes' });
    await list.waitFor();
    recoveryCodes = (await list.getByRole('listitem').allTextContents()).map((c) => c.trim());
    check(JSON.stringify(recoveryCodes) === JSON.stringify(confirmed.body.recovery_codes),
      `the page shows ${JSON.stringify(recoveryCodes)}`);
    check(recoveryCodes.every((c) => /^[0-9a-z]{5}-[0-9a-z]{5}$/.test(c)), 'a recovery code looks wrong');
    await until('the status "On"', async () => (await text(status)).startsWith('On'));
    check(await qr.isHidden() && (await text(page.locator('#mfa-secret'))) === '', 'the key is still shown');
    await shot(page, 'mfa-recovery-codes');

    await page.getByRole('button', { name: 'I have saved them' }).click();
    await list.waitFor({ state: 'hidden' });
    check(await page.locator('#recovery-codes li').count() === 0, 'the recovery codes are still in the page');
  });

  await report.step('logs out; the login asks for a code, refuses a wrong one, accepts the app\'s', async () => {
    await logout(page);
    const first = await passwordStep(page, USER, PASSWORD);
    check(first.status === 401 && first.body.error === 'mfa_required' && first.body.mfa_token,
      `the password step answered ${first.status} ${JSON.stringify(first.body)}`);
    const form = page.getByRole('form', { name: 'Two-step verification' });
    await form.waitFor();
    check(await page.locator('#login-form').isHidden(), 'the password form is still shown');
    check((await text(form)).includes(USER), 'the second step does not name the user');
    check(await page.locator('#error').isHidden(), 'the second step is shown as an error');
    await shot(page, 'login-second-step');

    const wrong = await codeStep(page, authenticator.wrong());
    check(wrong.status === 401 && wrong.body.error === 'invalid_mfa_code', `a wrong code answered ${wrong.status}`);
    await errorShown(page, wrong.body.message);
    check(await form.isVisible(), 'a wrong code left the second step');

    const right = await codeStep(page, await authenticator.next());
    check(right.status === 204, `the app's code answered ${right.status} ${JSON.stringify(right.body)}`);
    await signedInAs(page, USER);
    check(await page.locator('#error').isHidden(), 'an error is still shown after logging in');
  });

  await report.step('logs in with a recovery code, which works only once', async () => {
    await logout(page);
    await loginWithCode(page, recoveryCodes[0]);
    await logout(page);
    const first = await passwordStep(page, USER, PASSWORD);
    check(first.status === 401 && first.body.error === 'mfa_required', `the password step answered ${first.status}`);
    const reused = await codeStep(page, recoveryCodes[0]);
    check(reused.status === 401 && reused.body.error === 'invalid_mfa_code', `a spent recovery code answered ${reused.status}`);
    await errorShown(page, reused.body.message);
    const next = await codeStep(page, recoveryCodes[1].toUpperCase());
    check(next.status === 204, `an unused recovery code answered ${next.status}`);
    await signedInAs(page, USER);
  });

  const detail = () => admin.locator('#user-detail');
  const fact = (name) => text(admin.locator(`#user-${name}`));
  const userSessions = () => admin.locator('#user-sessions tr');

  await report.step('administration: lists the users, finds one by name, shows their account and sessions', async () => {
    admin = await open();
    show(admin);
    const login = await passwordStep(admin, 'admin', adminPassword);
    check(login.status === 204, `the admin's login answered ${login.status}`);
    await signedInAs(admin, 'admin');
    await nav(admin, 'Administration').click();
    await admin.getByRole('heading', { name: 'Users', exact: true }).waitFor();
    const names = async () => admin.locator('#users tr td:first-child').allTextContents();
    await until('admin and reader in the list', async () => {
      const shown = await names();
      return shown.includes('admin') && shown.includes(USER);
    });
    await shot(admin, 'admin-users');

    const search = admin.locator('#user-search');
    await search.getByLabel('Username').fill(USER.toUpperCase());
    await search.getByRole('button', { name: 'Find' }).click();
    await until('only reader in the list', async () => JSON.stringify(await names()) === JSON.stringify([USER]));
    await until('the user\'s account', async () => (await detail().isVisible())
      && (await text(admin.locator('#user-heading'))) === USER);
    check(await fact('roles') === 'user', `roles: ${await fact('roles')}`);
    check(await fact('status') === 'Active', `status: ${await fact('status')}`);
    check(await fact('mfa') === 'On', `two-factor: ${await fact('mfa')}`);
    check(await fact('id') === userId, `id: ${await fact('id')}`);

    const own = await pageFetch(page, 'GET', '/auth/sessions');
    const current = own.body.items.find((s) => s.current);
    await until('the user\'s session in the admin view', async () => (await userSessions().count()) === own.body.items.length
      && (await admin.locator(`#user-sessions tr[data-id="${current.id}"]`).count()) === 1);
    // The audit trail below now shows this user's events.
    check(await admin.locator('#audit-user').inputValue() === USER, 'the audit filter is not set to the user');
    await until('the user\'s events', async () => (await admin.locator('#audit tr').count()) > 0);
    await shot(admin, 'admin-user');
  });

  await report.step('administration: disabling logs the user out everywhere; their login shows the account-disabled message', async () => {
    admin.once('dialog', (dialog) => dialog.accept()); // "Disable reader?"
    const disabled = await answerTo(admin, 'POST', `/auth/users/${userId}/disable`,
      () => detail().getByRole('button', { name: `Disable ${USER}` }).click());
    check(disabled.status === 200 && disabled.body.disabled === true,
      `disabling answered ${disabled.status} ${JSON.stringify(disabled.body)}`);
    await until('the status "Disabled"', async () => (await fact('status')) === 'Disabled');
    await until('no sessions', async () => (await admin.locator('#no-user-sessions').isVisible()) && (await userSessions().count()) === 0);
    check(await detail().getByRole('button', { name: `Enable ${USER}` }).isVisible(), 'no Enable button');
    check((await text(admin.locator('#notice'))).includes('is disabled'), 'no confirmation is shown');

    show(page);
    check(await meStatus(page) === 401, 'the disabled user\'s session still works');
    await page.reload();
    await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
    const refused = await passwordStep(page, USER, PASSWORD);
    check(refused.status === 403 && refused.body.error === 'account_disabled',
      `the disabled user's login answered ${refused.status} ${JSON.stringify(refused.body)}`);
    await errorShown(page, refused.body.message);
    check(await page.locator('#mfa-form').isHidden(), 'a disabled account was asked for a code');
    await shot(page, 'login-disabled');
  });

  await report.step('administration: enabling lets the user in again; End all sessions logs them out', async () => {
    show(admin);
    const enabled = await answerTo(admin, 'POST', `/auth/users/${userId}/enable`,
      () => detail().getByRole('button', { name: `Enable ${USER}` }).click());
    check(enabled.status === 200 && enabled.body.disabled === false, `enabling answered ${enabled.status}`);
    await until('the status "Active"', async () => (await fact('status')) === 'Active');

    show(page);
    await loginWithCode(page, recoveryCodes[2]);

    show(admin);
    await detail().getByRole('button', { name: 'Refresh' }).click();
    await until('the new session', async () => (await userSessions().count()) === 1);
    admin.once('dialog', (dialog) => dialog.accept()); // "End every session of reader?"
    const ended = await answerTo(admin, 'DELETE', `/auth/users/${userId}/sessions`,
      () => detail().getByRole('button', { name: `End all sessions of ${USER}` }).click());
    check(ended.status === 204, `ending all sessions answered ${ended.status}`);
    await until('no sessions', async () => (await userSessions().count()) === 0);
    check(await meStatus(page) === 401, 'the user\'s session survived End all sessions');
  });

  await report.step('audit trail: the admin\'s changes about the user, by type, page by page', async () => {
    show(admin);
    const rows = admin.locator('#audit tr');
    const cells = async (row) => (await row.locator('td').allTextContents()).map((c) => c.trim());
    const filter = admin.locator('#audit-filter');
    const showEvents = async () => {
      const answer = await answerTo(admin, 'GET', '/auth/audit', () => filter.getByRole('button', { name: 'Show' }).click());
      check(answer.status === 200, `the audit trail answered ${answer.status}`);
      await until('the events of the answer', async () => (await rows.count()) === answer.body.items.length
        && (await rows.first().getAttribute('data-id')) === answer.body.items[0]?.id);
      return answer.body;
    };

    // The user's events, newest first (the filter is still set to the user).
    await filter.getByLabel('Event').selectOption('');
    const first = await showEvents();
    check(first.items.length === 10 && first.next_cursor, 'fewer than 10 events about the user');
    const enabledRow = rows.filter({ has: admin.locator('td:nth-child(2):text-is("user_enabled")') });
    check(await enabledRow.count() === 1, 'no user_enabled event on the first page');
    const [, , outcome, by, about] = await cells(enabledRow);
    check(outcome === 'success' && by === 'admin' && about === USER,
      `the user_enabled event reads ${JSON.stringify(await cells(enabledRow))}`);
    await shot(admin, 'audit');

    // One type.
    await filter.getByLabel('Event').selectOption('user_disabled');
    const disabledOnly = await showEvents();
    check(disabledOnly.items.length === 1 && disabledOnly.items[0].type === 'user_disabled', 'the type filter did not apply');
    const [, type, , actor, subject] = await cells(rows.first());
    check(type === 'user_disabled' && actor === 'admin' && subject === USER,
      `the user_disabled event reads ${JSON.stringify(await cells(rows.first()))}`);
    await shot(admin, 'audit-by-type');

    // Older, then newer again.
    await filter.getByLabel('Event').selectOption('');
    await showEvents();
    const firstIds = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
    check(await admin.getByRole('button', { name: 'Newer' }).isDisabled(), 'Newer is enabled on the first page');
    await admin.getByRole('button', { name: 'Older' }).click();
    await until('page 2', async () => (await text(admin.locator('#audit-page'))) === 'Page 2');
    const olderIds = await until('older events', async () => {
      const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
      return ids.length > 0 && !ids.some((id) => firstIds.includes(id)) ? ids : null;
    });
    check(olderIds.length <= 10, `page 2 shows ${olderIds.length} events`);
    await admin.getByRole('button', { name: 'Newer' }).click();
    await until('page 1 again', async () => (await text(admin.locator('#audit-page'))) === 'Page 1'
      && JSON.stringify(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.id))) === JSON.stringify(firstIds));
  });

  await report.step('turns off two-factor authentication, confirming the password and a code again; then the password alone logs in', async () => {
    show(page);
    await page.reload();
    await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
    await loginWithCode(page, recoveryCodes[3]);
    await nav(page, 'Your account').click();
    const status = page.locator('#mfa-status');
    await until('the status "On"', async () => (await text(status)).startsWith('On'));
    // A refreshed access token is never fresh: turning the factor off asks for the password
    // and, this account having a second factor, a code.
    const refreshed = await pageFetch(page, 'POST', '/auth/refresh');
    check(refreshed.status === 200, `POST /auth/refresh answered ${refreshed.status}`);
    await page.getByLabel('Code from the app, or a recovery code').fill(recoveryCodes[4]);
    const first = await answerTo(page, 'DELETE', '/auth/mfa/totp',
      () => page.getByRole('button', { name: 'Turn off two-factor authentication' }).click());
    check(first.status === 401 && first.body.error === 'fresh_token_required', `expected fresh_token_required, got ${first.status}`);
    const dialog = page.getByRole('dialog', { name: 'Confirm it is you' });
    await dialog.waitFor();
    check((await text(dialog)).includes('Turning off two-factor authentication needs a recent login'),
      `the dialog reads ${JSON.stringify(await text(dialog))}`);
    await dialog.getByLabel('Password').fill(PASSWORD);
    const password = await answerTo(page, 'POST', '/auth/session',
      () => dialog.getByRole('button', { name: 'Confirm and turn it off' }).click());
    check(password.status === 401 && password.body.error === 'mfa_required', `the dialog's password step answered ${password.status}`);
    const code = dialog.getByLabel('Code from your authenticator app, or a recovery code');
    await code.waitFor();
    await shot(page, 'reauth-code');
    await code.fill(recoveryCodes[5]);
    const [second, removed] = await Promise.all([
      answerTo(page, 'POST', '/auth/session/mfa', async () => {}),
      answerTo(page, 'DELETE', '/auth/mfa/totp', () => dialog.getByRole('button', { name: 'Confirm and turn it off' }).click()),
    ]);
    check(second.status === 204, `the dialog's code step answered ${second.status}`);
    await dialog.waitFor({ state: 'hidden' });
    check(removed.status === 204, `turning it off answered ${removed.status} ${JSON.stringify(removed.body)}`);
    await until('the status "Off"', async () => (await text(status)).startsWith('Off'));
    check(await page.getByRole('button', { name: 'Turn on two-factor authentication' }).isVisible(), 'no way to turn it on again');
    await shot(page, 'account');

    await logout(page);
    const login = await passwordStep(page, USER, PASSWORD);
    check(login.status === 204, `the password alone answered ${login.status} ${JSON.stringify(login.body)}`);
    await signedInAs(page, USER);
    await page.context().close();
    await admin.context().close();
  });

  return shots;
}
