// The authbooks page: a cookie-mode session (POST /auth/session, with the second step of
// POST /auth/session/mfa when the account has two-factor authentication), registration, books
// with paging, add, edit with If-Match, delete; "your account" (sessions with End, TOTP
// enrolment with the server's QR code and the recovery codes, TOTP removal); for
// administrators, users (find, disable, enable, their sessions) and the audit trail. Actions
// that need a fresh token ask for the password again. No framework and no build step. User data
// only ever reaches the page through textContent (the QR code is an <img> of a data: URL).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  /** A non-2xx answer, carrying the API's `{error, message, fields}` (and the whole body). */
  class ApiError extends Error {
    constructor(status, body, retryAfter) {
      super(body && typeof body.message === 'string' ? body.message : `the request failed (HTTP ${status})`);
      this.status = status;
      this.code = body && typeof body.error === 'string' ? body.error : '';
      this.fields = body && body.fields && typeof body.fields === 'object' ? body.fields : null;
      this.body = body && typeof body === 'object' ? body : null;
      this.retryAfter = retryAfter;
    }
  }

  // --- talking to the API -------------------------------------------------------------------

  /** The double-submit value: the readable csrf_access_token cookie. */
  function csrfToken() {
    const prefix = 'csrf_access_token=';
    const found = document.cookie.split('; ').find((c) => c.startsWith(prefix));
    return found ? decodeURIComponent(found.slice(prefix.length)) : '';
  }

  async function send(method, path, body, headers = {}) {
    const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json', ...headers } };
    if (method !== 'GET') {
      init.headers['X-CSRF-TOKEN'] = csrfToken();
    }
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, { error: 'network', message: 'The server could not be reached; try again.' });
    }
    if (response.ok) {
      return response;
    }
    let errorBody = null;
    try {
      errorBody = await response.json();
    } catch {
      // Not JSON (a proxy's page, say): the status alone will have to do.
    }
    throw new ApiError(response.status, errorBody, response.headers.get('Retry-After'));
  }

  // Parallel requests that all find the access token expired share one refresh: a second use
  // of the spent refresh token would count as reuse and end the session.
  let refreshing = null;
  function refreshSession() {
    refreshing ??= send('POST', '/auth/refresh').finally(() => {
      refreshing = null;
    });
    return refreshing;
  }

  /** `send`, renewing the session and retrying once when the access token has expired. */
  async function api(method, path, body, headers) {
    try {
      return await send(method, path, body, headers);
    } catch (err) {
      if (err.code !== 'token_expired') {
        throw err;
      }
    }
    await refreshSession();
    return send(method, path, body, headers);
  }

  const json = async (responsePromise) => (await responsePromise).json();
  const enc = encodeURIComponent;

  // --- messages -----------------------------------------------------------------------------

  function clearMessages() {
    $('error').hidden = true;
    $('error-message').textContent = '';
    $('error-fields').replaceChildren();
    $('notice').textContent = '';
  }

  function showError(err) {
    let text = err.message;
    if (err.retryAfter) {
      text += ` (try again in ${err.retryAfter} s)`;
    }
    $('error-message').textContent = text;
    $('error-fields').replaceChildren(
      ...Object.entries(err.fields || {}).map(([field, problem]) => {
        const li = document.createElement('li');
        li.textContent = `${field}: ${problem}`;
        return li;
      }),
    );
    $('error').hidden = false;
  }

  function notice(text) {
    $('notice').textContent = text;
  }

  /** 401s other than these mean the session is over (expired and not renewable, revoked...). */
  const NOT_SESSION_ENDING = new Set([
    'fresh_token_required', 'invalid_credentials', 'invalid_mfa_code', 'mfa_required',
  ]);

  function handle(err) {
    showError(err);
    if (err.status === 401 && !NOT_SESSION_ENDING.has(err.code)) {
      showLogin();
      notice('Your session has ended: log in again.');
    }
  }

  /** Runs `action` with the form's buttons disabled, so a double click sends one request. */
  async function busy(form, action) {
    const buttons = [...form.querySelectorAll('button')];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await action();
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // --- small DOM helpers --------------------------------------------------------------------

  function cell(value) {
    const td = document.createElement('td');
    td.textContent = value === null || value === undefined ? '' : String(value);
    return td;
  }

  /** A cell with an API timestamp, shown in the browser's locale and time zone. */
  function timeCell(iso) {
    const td = document.createElement('td');
    const time = document.createElement('time');
    const date = new Date(iso);
    if (typeof iso === 'string' && !Number.isNaN(date.getTime())) {
      time.dateTime = iso;
      time.textContent = date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
    } else {
      time.textContent = iso ?? '';
    }
    td.append(time);
    return td;
  }

  function button(label, accessibleName, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.setAttribute('aria-label', accessibleName);
    b.addEventListener('click', onClick);
    return b;
  }

  function badge(text) {
    const b = document.createElement('strong');
    b.className = 'badge';
    b.textContent = text;
    return b;
  }

  /** UTF-8 text as base64 (btoa takes only Latin-1). */
  function base64(text) {
    let binary = '';
    for (const byte of new TextEncoder().encode(text)) {
      binary += String.fromCharCode(byte);
    }
    return btoa(binary);
  }

  // --- session ------------------------------------------------------------------------------

  const freshAdmin = () => ({
    users: { cursors: [null], page: 0, username: '', loads: 0 },
    selected: null, // the user shown in detail
    audit: { cursors: [null], page: 0, userId: '', type: '', loads: 0 },
    names: new Map(), // user id -> username (null: not a user, e.g. a client)
  });

  const state = {
    user: null,
    view: 'books',
    cursors: [null], // cursors[n] fetches page n; the last one, when past `page`, is "next"
    page: 0,
    editing: null, // the book being edited: its id and the version its ETag named
    loads: 0,
    mfa: null, // the second login step under way: {token, username}
    admin: freshAdmin(),
  };

  const hasRole = (...roles) => Boolean(state.user) && state.user.roles.some((r) => roles.includes(r));

  const VIEWS = { books: 'books-view', account: 'account-view', admin: 'admin-view' };

  function showView(name) {
    state.view = name;
    for (const [view, id] of Object.entries(VIEWS)) {
      $(id).hidden = view !== name;
    }
    for (const b of $('nav').querySelectorAll('button')) {
      if (b.dataset.view === name) {
        b.setAttribute('aria-current', 'page');
      } else {
        b.removeAttribute('aria-current');
      }
    }
  }

  async function openView(name) {
    clearMessages();
    showView(name);
    try {
      if (name === 'books') {
        await loadBooks();
      } else if (name === 'account') {
        await loadAccount();
      } else if (name === 'admin') {
        await loadAdmin();
      }
    } catch (err) {
      handle(err);
    }
  }

  $('nav').addEventListener('click', (event) => {
    const target = event.target.closest('button[data-view]');
    if (target) {
      openView(target.dataset.view);
    }
  });

  function showSecondStep(show) {
    $('login-form').hidden = show;
    $('mfa-form').hidden = !show;
    $('mfa-code').value = '';
    if (!show) {
      state.mfa = null;
    }
  }

  function showLogin() {
    state.user = null;
    state.cursors = [null];
    state.page = 0;
    state.admin = freshAdmin();
    resetBookForm();
    resetAccount();
    resetAdmin();
    $('books').replaceChildren();
    $('account').hidden = true;
    $('nav').hidden = true;
    for (const id of Object.values(VIEWS)) {
      $(id).hidden = true;
    }
    $('signed-out').hidden = false;
    showSecondStep(false);
    $('login-password').value = '';
    $('register-form').reset();
    $('login-username').focus();
  }

  async function enter() {
    const me = await json(api('GET', '/auth/me'));
    state.user = {
      id: String(me.id),
      username: String(me.username),
      roles: Array.isArray(me.roles) ? me.roles : [],
      mfa: Boolean(me.mfa),
    };
    $('whoami').textContent = `Signed in as ${state.user.username} (${state.user.roles.join(', ')})`;
    $('account').hidden = false;
    $('signed-out').hidden = true;
    showSecondStep(false);
    $('nav').hidden = false;
    $('nav').querySelector('[data-view="admin"]').hidden = !hasRole('admin');
    $('book-form').hidden = !hasRole('editor', 'admin');
    state.cursors = [null];
    state.page = 0;
    showView('books');
    await loadBooks();
  }

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      const username = $('login-username').value;
      try {
        await send('POST', '/auth/session', { username, password: $('login-password').value });
        $('login-password').value = '';
        await enter();
      } catch (err) {
        if (err.code === 'mfa_required' && typeof err.body?.mfa_token === 'string') {
          // The password was right; the session comes with the second step.
          $('login-password').value = '';
          showSecondStep(true);
          state.mfa = { token: err.body.mfa_token, username };
          $('mfa-user').textContent = username;
          $('mfa-code').focus();
          return;
        }
        showError(err);
      }
    });
  });

  $('mfa-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      if (!state.mfa) {
        showSecondStep(false);
        return;
      }
      try {
        await send('POST', '/auth/session/mfa', { mfa_token: state.mfa.token, code: $('mfa-code').value.trim() });
        state.mfa = null;
        await enter();
      } catch (err) {
        // A wrong code leaves the challenge usable for a few more tries; "Start again" gets a new one.
        showError(err);
        $('mfa-code').select();
      }
    });
  });

  $('mfa-cancel').addEventListener('click', () => {
    clearMessages();
    showSecondStep(false);
    $('login-password').focus();
  });

  $('register-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      const username = $('register-username').value;
      const password = $('register-password').value;
      try {
        await send('POST', '/auth/register', { username, password });
      } catch (err) {
        showError(err);
        return;
      }
      $('register-form').reset();
      try {
        await send('POST', '/auth/session', { username, password });
        await enter();
        notice(`Welcome, ${username}: your account is ready.`);
      } catch (err) {
        showError(err);
        notice('Your account is ready: log in.');
        $('login-username').value = username;
      }
    });
  });

  async function logout() {
    clearMessages();
    try {
      await api('DELETE', '/auth/session');
    } catch (err) {
      // A 401 means there is no session left to end; anything else, and it may still be live.
      if (err.status !== 401) {
        showError(err);
        return;
      }
    }
    showLogin();
    notice('You are logged out.');
  }

  $('logout').addEventListener('click', logout);

  // --- fresh-token actions ------------------------------------------------------------------

  const CANCELLED = Symbol('cancelled');

  /**
   * Runs `action`; when the API wants a fresh token, asks for the password (and the second
   * factor) again and runs it once more. Resolves to CANCELLED if the user gave up.
   */
  async function withFresh(reason, verb, action) {
    try {
      return await action();
    } catch (err) {
      if (err.code !== 'fresh_token_required') {
        throw err;
      }
    }
    if (!(await reauthenticate(reason, verb))) {
      return CANCELLED;
    }
    return action();
  }

  // --- books --------------------------------------------------------------------------------

  async function loadBooks() {
    const load = ++state.loads;
    const query = new URLSearchParams({ limit: $('page-size').value });
    const cursor = state.cursors[state.page];
    if (cursor) {
      query.set('cursor', cursor);
    }
    const page = await (await api('GET', `/books?${query}`)).json();
    if (load !== state.loads) {
      return; // a later load has started; its answer wins
    }
    if (page.items.length === 0 && state.page > 0) {
      // The last book of this page is gone: show the one before.
      state.page -= 1;
      await loadBooks();
      return;
    }
    state.cursors.length = state.page + 1;
    if (page.next_cursor) {
      state.cursors.push(page.next_cursor);
    }
    renderBooks(page.items);
  }

  async function reload() {
    try {
      await loadBooks();
    } catch (err) {
      handle(err);
    }
  }

  function renderBooks(items) {
    $('books').replaceChildren(
      ...items.map((book) => {
        const row = document.createElement('tr');
        row.dataset.id = book.id;
        row.append(cell(book.title), cell(book.author), cell(book.isbn), cell(book.published_year));
        const actions = document.createElement('td');
        actions.className = 'row-actions';
        if (hasRole('editor', 'admin')) {
          actions.append(button('Edit', `Edit ${book.title}`, () => startEdit(book)));
        }
        if (hasRole('admin')) {
          actions.append(button('Delete', `Delete ${book.title}`, () => deleteBook(book)));
        }
        row.append(actions);
        return row;
      }),
    );
    $('no-books').hidden = items.length > 0 || state.page > 0;
    $('page-number').textContent = `Page ${state.page + 1}`;
    $('prev-page').disabled = state.page === 0;
    $('next-page').disabled = state.cursors.length <= state.page + 1;
  }

  $('prev-page').addEventListener('click', () => {
    clearMessages();
    state.page = Math.max(0, state.page - 1);
    reload();
  });

  $('next-page').addEventListener('click', () => {
    clearMessages();
    if (state.cursors.length > state.page + 1) {
      state.page += 1;
      reload();
    }
  });

  $('page-size').addEventListener('change', () => {
    clearMessages();
    state.cursors = [null];
    state.page = 0;
    reload();
  });

  function resetBookForm() {
    state.editing = null;
    $('book-form').reset();
    $('book-form-legend').textContent = 'Add a book';
    $('book-submit').textContent = 'Add book';
    $('book-cancel').hidden = true;
  }

  function startEdit(book) {
    clearMessages();
    state.editing = { id: book.id, version: book.version };
    $('book-title').value = book.title;
    $('book-author').value = book.author;
    $('book-isbn').value = book.isbn ?? '';
    $('book-year').value = book.published_year ?? '';
    $('book-form-legend').textContent = `Edit “${book.title}”`;
    $('book-submit').textContent = 'Save changes';
    $('book-cancel').hidden = false;
    $('book-title').focus();
  }

  $('book-cancel').addEventListener('click', () => {
    clearMessages();
    resetBookForm();
  });

  /** The form as the API's book body; empty optional fields are left out (PUT clears them). */
  function bookFromForm() {
    const book = { title: $('book-title').value, author: $('book-author').value };
    const isbn = $('book-isbn').value.trim();
    if (isbn) {
      book.isbn = isbn;
    }
    const year = $('book-year').value.trim();
    if (year) {
      book.published_year = Number(year);
    }
    return book;
  }

  $('book-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      const book = bookFromForm();
      const editing = state.editing;
      try {
        if (editing) {
          await api('PUT', `/books/${encodeURIComponent(editing.id)}`, book, {
            'If-Match': `"${editing.version}"`,
          });
          notice(`Saved “${book.title}”.`);
        } else {
          await api('POST', '/books', book);
          notice(`Added “${book.title}”.`);
        }
        resetBookForm();
        await loadBooks();
      } catch (err) {
        handle(err);
        if (err.code === 'precondition_failed' || err.code === 'not_found') {
          // Someone else changed or deleted it: show the current list, edit from there.
          resetBookForm();
          await reload();
        }
      }
    });
  });

  async function deleteBook(book) {
    clearMessages();
    if (!window.confirm(`Delete “${book.title}”?`)) {
      return;
    }
    try {
      const done = await withFresh('Deleting a book', 'delete',
        () => api('DELETE', `/books/${enc(book.id)}`, undefined, { 'If-Match': `"${book.version}"` }));
      if (done === CANCELLED) {
        notice(`“${book.title}” was not deleted.`);
        return;
      }
      if (state.editing && state.editing.id === book.id) {
        resetBookForm();
      }
      notice(`Deleted “${book.title}”.`);
      await loadBooks();
    } catch (err) {
      handle(err);
      if (err.code === 'precondition_failed' || err.code === 'not_found') {
        await reload();
      }
    }
  }

  // --- re-authentication --------------------------------------------------------------------

  // A fresh token comes only from a password login (and its second step), so the page logs in
  // again (a new cookie session) with what the user types here. Resolves true once that worked.
  let reauthDone = null;
  let reauthMfaToken = null;

  function reauthenticate(reason, verb) {
    reauthMfaToken = null;
    $('reauth-reason').textContent = reason;
    $('reauth-submit').textContent = `Confirm and ${verb}`;
    $('reauth-user').textContent = state.user.username;
    $('reauth-password').value = '';
    $('reauth-password').disabled = false;
    $('reauth-code').value = '';
    $('reauth-code').required = false;
    $('reauth-code-field').hidden = true;
    $('reauth-error').hidden = true;
    $('reauth').showModal();
    return new Promise((resolve) => {
      reauthDone = resolve;
    });
  }

  function finishReauth(ok) {
    const done = reauthDone;
    reauthDone = null;
    reauthMfaToken = null;
    $('reauth-password').value = '';
    $('reauth-code').value = '';
    if ($('reauth').open) {
      $('reauth').close();
    }
    if (done) {
      done(ok);
    }
  }

  $('reauth-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(event.target, async () => {
      try {
        if (reauthMfaToken) {
          await send('POST', '/auth/session/mfa', { mfa_token: reauthMfaToken, code: $('reauth-code').value.trim() });
        } else {
          await send('POST', '/auth/session', {
            username: state.user.username,
            password: $('reauth-password').value,
          });
        }
        finishReauth(true);
      } catch (err) {
        if (err.code === 'mfa_required' && typeof err.body?.mfa_token === 'string') {
          reauthMfaToken = err.body.mfa_token;
          $('reauth-password').disabled = true;
          $('reauth-code-field').hidden = false;
          $('reauth-code').required = true;
          $('reauth-error').hidden = true;
          $('reauth-code').focus();
          return;
        }
        const text = err.retryAfter ? `${err.message} (try again in ${err.retryAfter} s)` : err.message;
        $('reauth-error').textContent = text;
        $('reauth-error').hidden = false;
        (reauthMfaToken ? $('reauth-code') : $('reauth-password')).select();
      }
    });
  });

  $('reauth-cancel').addEventListener('click', () => finishReauth(false));
  // Escape closes the dialog too.
  $('reauth').addEventListener('close', () => finishReauth(false));

  // --- your account: sessions ---------------------------------------------------------------

  async function loadAccount() {
    const [me, sessions] = await Promise.all([
      json(api('GET', '/auth/me')),
      json(api('GET', '/auth/sessions')),
    ]);
    state.user.mfa = Boolean(me.mfa);
    renderMfa();
    renderSessions(sessions.items);
  }

  /** The browser-or-app cell: the user agent as sent, and a mark on the caller's own session. */
  function agentCell(session, ownMark) {
    const td = cell(session.user_agent || 'unknown');
    if (session.current && ownMark) {
      td.prepend(badge(ownMark), ' ');
    }
    return td;
  }

  function renderSessions(items) {
    $('sessions').replaceChildren(
      ...items.map((session) => {
        const row = document.createElement('tr');
        row.dataset.id = session.id;
        if (session.current) {
          row.className = 'current';
        }
        const started = new Date(session.created_at).toLocaleString();
        row.append(timeCell(session.created_at), timeCell(session.last_used_at),
          agentCell(session, 'This browser'), cell(session.ip));
        const actions = document.createElement('td');
        actions.className = 'row-actions';
        actions.append(session.current
          ? button('End', 'End this session (log out)', logout)
          : button('End', `End the session logged in ${started}`, () => endSession(session)));
        row.append(actions);
        return row;
      }),
    );
  }

  async function endSession(session) {
    clearMessages();
    try {
      await api('DELETE', `/auth/sessions/${enc(session.id)}`);
      notice('Session ended: that browser or app is logged out.');
      await loadAccount();
    } catch (err) {
      handle(err);
    }
  }

  // --- your account: two-factor authentication ----------------------------------------------

  function renderMfa() {
    const on = Boolean(state.user?.mfa);
    const enrolling = !$('mfa-enrol').hidden;
    const showingCodes = !$('mfa-recovery').hidden;
    const mark = badge(on ? 'On' : 'Off');
    mark.classList.toggle('off', !on);
    $('mfa-status').replaceChildren(
      mark,
      on ? ' Every login asks for a code from your authenticator app after the password.'
        : ' A password alone logs in to this account.',
    );
    $('mfa-enable').hidden = on || enrolling;
    $('mfa-disable-form').hidden = !on || showingCodes;
  }

  function clearEnrolment() {
    $('mfa-enrol').hidden = true;
    $('mfa-qr').removeAttribute('src');
    $('mfa-secret').textContent = '';
    $('mfa-confirm-code').value = '';
  }

  function resetAccount() {
    clearEnrolment();
    $('mfa-recovery').hidden = true;
    $('recovery-codes').replaceChildren();
    $('mfa-disable-code').value = '';
    $('sessions').replaceChildren();
  }

  $('mfa-enable').addEventListener('click', async () => {
    clearMessages();
    $('mfa-enable').disabled = true;
    try {
      const answer = await withFresh('Turning on two-factor authentication', 'continue',
        () => api('POST', '/auth/mfa/totp'));
      if (answer === CANCELLED) {
        notice('Two-factor authentication was not turned on.');
        return;
      }
      const enrolment = await answer.json();
      // The server draws the QR code; as an image it cannot add markup or script to the page.
      $('mfa-qr').src = `data:image/svg+xml;base64,${base64(String(enrolment.qr_svg))}`;
      $('mfa-secret').textContent = String(enrolment.secret).replace(/(.{4})(?=.)/g, '$1 ');
      $('mfa-enrol').hidden = false;
      renderMfa();
      $('mfa-confirm-code').focus();
    } catch (err) {
      handle(err);
    } finally {
      $('mfa-enable').disabled = false;
    }
  });

  $('mfa-confirm-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      const code = $('mfa-confirm-code').value.trim();
      try {
        const answer = await withFresh('Turning on two-factor authentication', 'confirm',
          () => api('POST', '/auth/mfa/totp/confirm', { code }));
        if (answer === CANCELLED) {
          return;
        }
        const { recovery_codes: codes } = await answer.json();
        clearEnrolment();
        $('recovery-codes').replaceChildren(...codes.map((c) => {
          const li = document.createElement('li');
          const text = document.createElement('code');
          text.textContent = c;
          li.append(text);
          return li;
        }));
        $('mfa-recovery').hidden = false;
        state.user.mfa = true;
        renderMfa();
        notice('Two-factor authentication is on.');
      } catch (err) {
        handle(err);
        $('mfa-confirm-code').select();
      }
    });
  });

  $('mfa-enrol-cancel').addEventListener('click', () => {
    clearMessages();
    clearEnrolment();
    renderMfa();
  });

  $('recovery-done').addEventListener('click', () => {
    $('recovery-codes').replaceChildren();
    $('mfa-recovery').hidden = true;
    renderMfa();
  });

  $('mfa-disable-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      const code = $('mfa-disable-code').value.trim();
      try {
        const answer = await withFresh('Turning off two-factor authentication', 'turn it off',
          () => api('DELETE', '/auth/mfa/totp', { code }));
        if (answer === CANCELLED) {
          return;
        }
        $('mfa-disable-code').value = '';
        state.user.mfa = false;
        renderMfa();
        notice('Two-factor authentication is off.');
      } catch (err) {
        handle(err);
        $('mfa-disable-code').select();
      }
    });
  });

  // --- administration: users ----------------------------------------------------------------

  const USERS_PAGE = 10;
  const AUDIT_PAGE = 10;

  function resetAdmin() {
    $('users').replaceChildren();
    $('no-users').hidden = true;
    $('user-detail').hidden = true;
    $('user-sessions').replaceChildren();
    $('audit').replaceChildren();
    $('no-audit').hidden = true;
    $('user-search-name').value = '';
    $('audit-user').value = '';
    $('audit-type').value = '';
  }

  async function loadAdmin() {
    const loads = [loadUsers(), loadAudit()];
    if (state.admin.selected) {
      loads.push(loadSelected());
    }
    await Promise.all(loads);
  }

  async function loadUsers() {
    const users = state.admin.users;
    const load = ++users.loads;
    const query = new URLSearchParams({ limit: String(USERS_PAGE) });
    if (users.username) {
      query.set('username', users.username);
    }
    const cursor = users.cursors[users.page];
    if (cursor) {
      query.set('cursor', cursor);
    }
    const page = await json(api('GET', `/auth/users?${query}`));
    if (load !== users.loads) {
      return null;
    }
    users.cursors.length = users.page + 1;
    if (page.next_cursor) {
      users.cursors.push(page.next_cursor);
    }
    page.items.forEach((user) => state.admin.names.set(user.id, user.username));
    renderUsers(page.items);
    return page.items;
  }

  const statusText = (user) => (user.disabled ? 'Disabled' : 'Active');
  const mfaText = (user) => (user.mfa ? 'On' : 'Off');

  function renderUsers(items) {
    const users = state.admin.users;
    $('users').replaceChildren(
      ...items.map((user) => {
        const row = document.createElement('tr');
        row.dataset.id = user.id;
        row.append(cell(user.username), cell(user.roles.join(', ')), cell(statusText(user)),
          cell(mfaText(user)), timeCell(user.created_at));
        const actions = document.createElement('td');
        actions.className = 'row-actions';
        actions.append(button('Open', `Open ${user.username}`, () => openUser(user)));
        row.append(actions);
        return row;
      }),
    );
    $('no-users').textContent = users.username ? `No user is named “${users.username}”.` : 'No users.';
    $('no-users').hidden = items.length > 0;
    $('users-page').textContent = `Page ${users.page + 1}`;
    $('users-prev').disabled = users.page === 0;
    $('users-next').disabled = users.cursors.length <= users.page + 1;
  }

  async function reloadUsers() {
    try {
      await loadUsers();
    } catch (err) {
      handle(err);
    }
  }

  $('user-search').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      const users = state.admin.users;
      users.username = $('user-search-name').value.trim();
      users.cursors = [null];
      users.page = 0;
      try {
        const found = await loadUsers();
        if (users.username && found && found.length === 1) {
          await openUser(found[0]);
        }
      } catch (err) {
        handle(err);
      }
    });
  });

  $('user-list-all').addEventListener('click', () => {
    clearMessages();
    $('user-search-name').value = '';
    Object.assign(state.admin.users, { username: '', cursors: [null], page: 0 });
    reloadUsers();
  });

  $('users-prev').addEventListener('click', () => {
    clearMessages();
    state.admin.users.page = Math.max(0, state.admin.users.page - 1);
    reloadUsers();
  });

  $('users-next').addEventListener('click', () => {
    clearMessages();
    const users = state.admin.users;
    if (users.cursors.length > users.page + 1) {
      users.page += 1;
      reloadUsers();
    }
  });

  // --- administration: one user -------------------------------------------------------------

  /** Shows `user`, their sessions, and the audit trail about them. */
  async function openUser(user) {
    clearMessages();
    state.admin.selected = user;
    renderSelected(user);
    $('audit-user').value = user.username;
    Object.assign(state.admin.audit, { userId: user.id, cursors: [null], page: 0 });
    try {
      await Promise.all([loadSelectedSessions(), loadAudit()]);
      $('user-detail').scrollIntoView({ block: 'nearest' });
    } catch (err) {
      handle(err);
    }
  }

  async function loadSelected() {
    const { id } = state.admin.selected;
    const user = await json(api('GET', `/auth/users/${enc(id)}`));
    state.admin.selected = user;
    renderSelected(user);
    await loadSelectedSessions();
  }

  function renderSelected(user) {
    $('user-detail').hidden = false;
    $('user-detail').dataset.id = user.id;
    $('user-heading').textContent = user.username;
    $('user-roles').textContent = user.roles.join(', ');
    $('user-status').replaceChildren(badge(statusText(user)));
    $('user-status').firstChild.classList.toggle('bad', Boolean(user.disabled));
    $('user-mfa').textContent = mfaText(user);
    $('user-created').replaceChildren(...timeCell(user.created_at).childNodes);
    $('user-id').textContent = user.id;
    $('user-disable').hidden = Boolean(user.disabled);
    $('user-enable').hidden = !user.disabled;
    $('user-disable').setAttribute('aria-label', `Disable ${user.username}`);
    $('user-enable').setAttribute('aria-label', `Enable ${user.username}`);
    $('user-end-all').setAttribute('aria-label', `End all sessions of ${user.username}`);
  }

  async function loadSelectedSessions() {
    const { id } = state.admin.selected;
    const { items } = await json(api('GET', `/auth/users/${enc(id)}/sessions`));
    if (state.admin.selected?.id !== id) {
      return;
    }
    $('user-sessions').replaceChildren(
      ...items.map((session) => {
        const row = document.createElement('tr');
        row.dataset.id = session.id;
        row.append(timeCell(session.created_at), timeCell(session.last_used_at),
          agentCell(session, 'You, here'), cell(session.ip));
        return row;
      }),
    );
    $('no-user-sessions').hidden = items.length > 0;
    $('user-end-all').disabled = items.length === 0;
  }

  /** An administrator's change to the selected user, then everything shown about them again. */
  async function changeSelected(reason, verb, request, done) {
    clearMessages();
    const user = state.admin.selected;
    try {
      const answer = await withFresh(reason, verb, request);
      if (answer === CANCELLED) {
        notice(`${user.username} was not changed.`);
        return;
      }
      await Promise.all([loadSelected(), loadUsers(), loadAudit()]);
      notice(done);
    } catch (err) {
      handle(err);
    }
  }

  $('user-disable').addEventListener('click', () => {
    const user = state.admin.selected;
    if (!window.confirm(`Disable ${user.username}? They are logged out everywhere at once and cannot log in until enabled again.`)) {
      return;
    }
    changeSelected('Disabling an account', 'disable',
      () => api('POST', `/auth/users/${enc(user.id)}/disable`),
      `${user.username} is disabled: every session has ended and logging in is refused.`);
  });

  $('user-enable').addEventListener('click', () => {
    const user = state.admin.selected;
    changeSelected('Enabling an account', 'enable',
      () => api('POST', `/auth/users/${enc(user.id)}/enable`),
      `${user.username} is enabled: they can log in again.`);
  });

  $('user-end-all').addEventListener('click', () => {
    const user = state.admin.selected;
    if (!window.confirm(`End every session of ${user.username}? They are logged out everywhere.`)) {
      return;
    }
    changeSelected('Ending the sessions of an account', 'end them',
      () => api('DELETE', `/auth/users/${enc(user.id)}/sessions`),
      `Every session of ${user.username} has ended.`);
  });

  $('user-refresh').addEventListener('click', async () => {
    clearMessages();
    try {
      await loadSelected();
    } catch (err) {
      handle(err);
    }
  });

  // --- administration: audit trail ----------------------------------------------------------

  /** Usernames for the ids in events; ids that are not users (clients) stay ids. */
  async function resolveNames(ids) {
    const names = state.admin.names;
    const unknown = [...new Set(ids)].filter((id) => id && !names.has(id));
    await Promise.all(unknown.map(async (id) => {
      try {
        const user = await json(api('GET', `/auth/users/${enc(id)}`));
        names.set(id, String(user.username));
      } catch (err) {
        if (err.code === 'not_found') {
          names.set(id, null);
        } else {
          throw err;
        }
      }
    }));
  }

  function whoCell(id) {
    if (!id) {
      return cell('—');
    }
    const name = state.admin.names.get(id);
    const td = cell(name ?? id);
    td.title = id;
    return td;
  }

  async function loadAudit() {
    const audit = state.admin.audit;
    const load = ++audit.loads;
    const query = new URLSearchParams({ limit: String(AUDIT_PAGE) });
    if (audit.userId) {
      query.set('user', audit.userId);
    }
    if (audit.type) {
      query.set('type', audit.type);
    }
    const cursor = audit.cursors[audit.page];
    if (cursor) {
      query.set('cursor', cursor);
    }
    const page = await json(api('GET', `/auth/audit?${query}`));
    await resolveNames(page.items.flatMap((event) => [event.actor, event.subject]));
    if (load !== audit.loads) {
      return;
    }
    if (page.items.length === 0 && audit.page > 0) {
      audit.page -= 1;
      await loadAudit();
      return;
    }
    audit.cursors.length = audit.page + 1;
    if (page.next_cursor) {
      audit.cursors.push(page.next_cursor);
    }
    $('audit').replaceChildren(
      ...page.items.map((event) => {
        const row = document.createElement('tr');
        row.dataset.id = event.id;
        row.dataset.type = event.type;
        const outcome = cell(event.outcome);
        outcome.className = `outcome-${event.outcome === 'success' ? 'ok' : 'bad'}`;
        row.append(timeCell(event.at), cell(event.type), outcome, whoCell(event.actor),
          whoCell(event.subject), cell(event.ip), cell(event.detail));
        return row;
      }),
    );
    $('no-audit').hidden = page.items.length > 0;
    $('audit-page').textContent = `Page ${audit.page + 1}`;
    $('audit-newer').disabled = audit.page === 0;
    $('audit-older').disabled = audit.cursors.length <= audit.page + 1;
  }

  async function reloadAudit() {
    try {
      await loadAudit();
    } catch (err) {
      handle(err);
    }
  }

  $('audit-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      const audit = state.admin.audit;
      const name = $('audit-user').value.trim();
      try {
        let userId = '';
        if (name) {
          const selected = state.admin.selected;
          if (selected && selected.username === name.toLowerCase()) {
            userId = selected.id;
          } else {
            const { items } = await json(api('GET', `/auth/users?${new URLSearchParams({ username: name })}`));
            if (items.length === 0) {
              showError(new ApiError(404, { error: 'not_found', message: `No user is named “${name}”.` }));
              return;
            }
            userId = items[0].id;
            state.admin.names.set(userId, items[0].username);
          }
        }
        Object.assign(audit, { userId, type: $('audit-type').value, cursors: [null], page: 0 });
        await loadAudit();
      } catch (err) {
        handle(err);
      }
    });
  });

  $('audit-newer').addEventListener('click', () => {
    clearMessages();
    state.admin.audit.page = Math.max(0, state.admin.audit.page - 1);
    reloadAudit();
  });

  $('audit-older').addEventListener('click', () => {
    clearMessages();
    const audit = state.admin.audit;
    if (audit.cursors.length > audit.page + 1) {
      audit.page += 1;
      reloadAudit();
    }
  });

  // --- start --------------------------------------------------------------------------------

  (async () => {
    try {
      await enter(); // an existing session from an earlier visit
    } catch (err) {
      showLogin();
      if (err.status !== 401) {
        showError(err);
      }
    }
  })();
})();
