// The authbooks page: a cookie-mode session (POST /auth/session), books with paging, add, edit
// with If-Match, delete with re-authentication when the token is not fresh, log out.
// No framework and no build step. User data only ever reaches the page through textContent.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  /** A non-2xx answer, carrying the API's `{error, message, fields}`. */
  class ApiError extends Error {
    constructor(status, body, retryAfter) {
      super(body && typeof body.message === 'string' ? body.message : `the request failed (HTTP ${status})`);
      this.status = status;
      this.code = body && typeof body.error === 'string' ? body.error : '';
      this.fields = body && body.fields && typeof body.fields === 'object' ? body.fields : null;
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
  const NOT_SESSION_ENDING = new Set(['fresh_token_required', 'invalid_credentials']);

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

  // --- session ------------------------------------------------------------------------------

  const state = {
    user: null,
    cursors: [null], // cursors[n] fetches page n; the last one, when past `page`, is "next"
    page: 0,
    editing: null, // the book being edited: its id and the version its ETag named
    loads: 0,
  };

  const hasRole = (...roles) => Boolean(state.user) && state.user.roles.some((r) => roles.includes(r));

  function showLogin() {
    state.user = null;
    state.cursors = [null];
    state.page = 0;
    resetBookForm();
    $('books').replaceChildren();
    $('account').hidden = true;
    $('books-view').hidden = true;
    $('login-view').hidden = false;
    $('login-password').value = '';
    $('login-username').focus();
  }

  async function enter() {
    const me = await (await api('GET', '/auth/me')).json();
    state.user = { username: String(me.username), roles: Array.isArray(me.roles) ? me.roles : [] };
    $('whoami').textContent = `Signed in as ${state.user.username} (${state.user.roles.join(', ')})`;
    $('account').hidden = false;
    $('login-view').hidden = true;
    $('books-view').hidden = false;
    $('book-form').hidden = !hasRole('editor', 'admin');
    state.cursors = [null];
    state.page = 0;
    await loadBooks();
  }

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearMessages();
    busy(event.target, async () => {
      try {
        await send('POST', '/auth/session', {
          username: $('login-username').value,
          password: $('login-password').value,
        });
        $('login-password').value = '';
        await enter();
      } catch (err) {
        handle(err);
      }
    });
  });

  $('logout').addEventListener('click', async () => {
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
  });

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

  function cell(value) {
    const td = document.createElement('td');
    td.textContent = value === null || value === undefined ? '' : String(value);
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
    const remove = () => api('DELETE', `/books/${encodeURIComponent(book.id)}`, undefined, {
      'If-Match': `"${book.version}"`,
    });
    try {
      try {
        await remove();
      } catch (err) {
        if (err.code !== 'fresh_token_required') {
          throw err;
        }
        if (!(await reauthenticate())) {
          notice(`“${book.title}” was not deleted.`);
          return;
        }
        await remove();
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

  // A fresh token comes only from a password login, so the page logs in again (a new cookie
  // session) with the password the user types here. Resolves true once that has worked.
  let reauthDone = null;

  function reauthenticate() {
    $('reauth-user').textContent = state.user.username;
    $('reauth-password').value = '';
    $('reauth-error').hidden = true;
    $('reauth').showModal();
    return new Promise((resolve) => {
      reauthDone = resolve;
    });
  }

  function finishReauth(ok) {
    const done = reauthDone;
    reauthDone = null;
    $('reauth-password').value = '';
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
        await send('POST', '/auth/session', {
          username: state.user.username,
          password: $('reauth-password').value,
        });
        finishReauth(true);
      } catch (err) {
        const text = err.retryAfter ? `${err.message} (try again in ${err.retryAfter} s)` : err.message;
        $('reauth-error').textContent = text;
        $('reauth-error').hidden = false;
        $('reauth-password').select();
      }
    });
  });

  $('reauth-cancel').addEventListener('click', () => finishReauth(false));
  // Escape closes the dialog too.
  $('reauth').addEventListener('close', () => finishReauth(false));

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
