// The authbooks page in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against the one-command local stack on a free port with a fresh data
// directory. It logs in through the form, adds a book, pages through the list, edits (and meets
// a 412 from a stale If-Match), deletes with re-authentication once the token is no longer
// fresh, logs out, and saves a screenshot of the list to <repo>/target/browser.png. Then the
// account views (accounts.mjs): registration, your sessions, two-factor enrolment and login,
// administration and the audit trail, each with a screenshot in <repo>/target/screenshots/.
//
//   cargo build -p authbooks-local && npm ci --prefix deploy/web/test && node deploy/web/test/browser.mjs
//
// AUTHBOOKS_LOCAL_BIN names the binary (default $CARGO_TARGET_DIR/debug/authbooks-local, else
// <repo>/target/debug/authbooks-local); CHROMIUM_PATH the browser (default /usr/bin/chromium).
// Exits non-zero, naming the step, on any failure.

import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';

import { accountSteps } from './accounts.mjs';
import {
  REPO, STEP_TIMEOUT_MS, StepFailure, answerTo, check, pageFetch, text, until,
} from './support.mjs';

const BIN = process.env.AUTHBOOKS_LOCAL_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, 'target'), 'debug', 'authbooks-local');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT = path.join(REPO, 'target', 'browser.png');
const FAILURE_SCREENSHOT = path.join(REPO, 'target', 'browser-failure.png');
const DEADLINE_MS = 240_000;

// --- the stack --------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts authbooks-local on a fresh data directory; `ready` resolves with the admin password. */
function startStack(dataDir, port, settings = {}) {
  const env = { ...process.env, LISTEN_ADDR: `127.0.0.1:${port}`, AUTHBOOKS_DATA_DIR: dataDir };
  // As a new user runs it: no server settings, so the stack makes its own admin.
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'AUTH_BOOTSTRAP_ADMIN_USERNAME',
    'AUTH_BOOTSTRAP_ADMIN_PASSWORD', 'AUTH_COOKIE_SECURE']) {
    delete env[name];
  }
  Object.assign(env, settings);
  const child = spawn(BIN, [], { cwd: dataDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stack = { child, stderr: '', password: null };
  child.stderr.on('data', (chunk) => {
    stack.stderr = (stack.stderr + chunk).slice(-4000);
  });
  stack.ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no admin password on stdout within 30 s')), 30_000);
    // Read every line, so the stack never blocks on a full pipe.
    createInterface({ input: child.stdout }).on('line', (line) => {
      const found = /^First start: created user 'admin' with password (\S+)$/.exec(line);
      if (found) {
        clearTimeout(timer);
        stack.password = found[1];
        resolve(found[1]);
      }
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${BIN}: ${err.message} (build it: cargo build -p authbooks-local)`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`authbooks-local exited (${code ?? signal}) before it was ready:\n${stack.stderr}`));
    });
  });
  return stack;
}

async function waitReady(base) {
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) {
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${base}/readyz did not answer 200 within 30 s`);
}

async function stopStack(stack) {
  if (!stack || stack.child.exitCode !== null || stack.child.signalCode !== null) {
    return;
  }
  const exited = new Promise((resolve) => stack.child.once('exit', resolve));
  stack.child.kill('SIGINT');
  const timer = setTimeout(() => stack.child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

// --- the test ---------------------------------------------------------------------------------

let screenshots = [];

async function run(report) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'authbooks-browser-'));
  const shortDataDir = await mkdtemp(path.join(tmpdir(), 'authbooks-browser-short-'));
  let stack;
  let shortStack;
  let browser;
  let page;
  let shown; // the page a failure screenshot shows
  const cleanup = async () => {
    await browser?.close().catch(() => {});
    await stopStack(stack);
    await stopStack(shortStack);
    await rm(dataDir, { recursive: true, force: true });
    await rm(shortDataDir, { recursive: true, force: true });
  };
  const deadline = setTimeout(async () => {
    console.error(`not ok - the whole test took longer than ${DEADLINE_MS / 1000} s`);
    await cleanup();
    process.exit(1);
  }, DEADLINE_MS);

  try {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    let password;
    await report.step('the local stack starts and prints the admin password', async () => {
      stack = startStack(dataDir, port);
      password = await stack.ready;
      await waitReady(base);
    });

    await report.step("the stack serves this checkout's page files", async () => {
      // The binary embeds deploy/web: one built before an edit would test the old page.
      for (const [url, file] of [['/', 'index.html'], ['/app.js', 'app.js'], ['/app.css', 'app.css']]) {
        const served = await (await fetch(`${base}${url}`)).text();
        const onDisk = await readFile(path.join(REPO, 'deploy', 'web', file), 'utf8');
        check(served === onDisk, `${url} differs from deploy/web/${file}: rebuild authbooks-local`);
      }
    });

    const pageErrors = [];
    const watch = (p) => {
      p.setDefaultTimeout(STEP_TIMEOUT_MS);
      p.on('pageerror', (err) => pageErrors.push(`uncaught: ${err.message}`));
      p.on('console', (message) => {
        if (message.type() === 'error' && /Content Security Policy|Refused to/.test(message.text())) {
          pageErrors.push(message.text());
        }
      });
      return p;
    };
    await report.step('Chromium opens the page at / and shows the login form', async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // Chromium refuses to run as root (CI) inside its sandbox.
        args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
      });
      const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      page = watch(await context.newPage());
      shown = page;
      const response = await page.goto(`${base}/`);
      check(response.status() === 200, `GET / answered ${response.status()}`);
      check(response.headers()['content-type'].startsWith('text/html'), 'GET / is not text/html');
      await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
    });

    const loginForm = page.locator('#login-form');
    await report.step("a wrong password shows the API's message", async () => {
      await loginForm.getByLabel('Username').fill('admin');
      await loginForm.getByLabel('Password').fill('not-the-password');
      const answer = await answerTo(page, 'POST', '/auth/session',
        () => loginForm.getByRole('button', { name: 'Log in' }).click());
      check(answer.status === 401 && answer.body.error === 'invalid_credentials',
        `expected 401 invalid_credentials, got ${answer.status} ${JSON.stringify(answer.body)}`);
      const alert = page.locator('#error');
      await alert.waitFor();
      check(await text(alert) === answer.body.message,
        `the page shows ${JSON.stringify(await text(alert))}, the API said ${JSON.stringify(answer.body.message)}`);
    });

    await report.step('logs in through the form (cookie mode)', async () => {
      await loginForm.getByLabel('Password').fill(password);
      await loginForm.getByRole('button', { name: 'Log in' }).click();
      await until('"Signed in as admin"', async () => (await text(page.locator('#whoami'))).startsWith('Signed in as admin'));
      const cookies = Object.fromEntries((await page.context().cookies()).map((c) => [c.name, c]));
      check(cookies.access_token_cookie?.httpOnly, 'access_token_cookie is missing or readable by scripts');
      check(cookies.refresh_token_cookie?.httpOnly && cookies.refresh_token_cookie.path === '/auth',
        'refresh_token_cookie is missing, readable by scripts, or not limited to /auth');
      check(cookies.csrf_access_token && !cookies.csrf_access_token.httpOnly, 'csrf_access_token is missing');
    });

    const form = page.locator('#book-form');
    const rows = page.locator('#books tr');
    const row = (title) => rows.filter({ has: page.getByRole('cell', { name: title, exact: true }) });
    let bookId;
    await report.step('adds a book', async () => {
      await form.getByLabel('Title').fill('Dune');
      await form.getByLabel('Author').fill('Frank Herbert');
      await form.getByLabel('ISBN').fill('978-0-441-17271-9');
      await form.getByLabel('Year published').fill('1965');
      await form.getByRole('button', { name: 'Add book' }).click();
      await row('Dune').waitFor();
      bookId = await row('Dune').getAttribute('data-id');
      const cells = await row('Dune').locator('td').allTextContents();
      check(cells.slice(0, 4).join('|') === 'Dune|Frank Herbert|9780441172719|1965',
        `the new row reads ${JSON.stringify(cells)}`);
    });

    await report.step("a book that breaks a rule shows the API's message and fields", async () => {
      await form.getByLabel('Title').fill('Bad ISBN');
      await form.getByLabel('Author').fill('Nobody');
      await form.getByLabel('ISBN').fill('123');
      await form.getByLabel('Year published').fill('');
      const answer = await answerTo(page, 'POST', '/books',
        () => form.getByRole('button', { name: 'Add book' }).click());
      check(answer.status === 422, `expected 422, got ${answer.status}`);
      await until('the error message', async () => (await text(page.locator('#error-message'))) === answer.body.message);
      const fields = await page.locator('#error-fields li').allTextContents();
      check(fields.includes(`isbn: ${answer.body.fields.isbn}`), `fields shown: ${JSON.stringify(fields)}`);
    });

    await report.step('pages through the list', async () => {
      for (let i = 1; i <= 6; i += 1) {
        const created = await pageFetch(page, 'POST', '/books', { title: `Paging book ${i}`, author: 'Pager' });
        check(created.status === 201, `creating a paging book answered ${created.status}`);
      }
      await page.getByLabel('Books per page').selectOption('5');
      await until('5 rows on page 1', async () => (await rows.count()) === 5);
      await page.getByRole('button', { name: 'Next page' }).click();
      await until('2 rows on page 2', async () => (await rows.count()) === 2
        && (await text(page.locator('#page-number'))) === 'Page 2');
      check(await page.getByRole('button', { name: 'Next page' }).isDisabled(), 'Next page is enabled on the last page');
      await page.getByRole('button', { name: 'Previous page' }).click();
      await until('page 1 again', async () => (await rows.count()) === 5 && (await row('Dune').count()) === 1);
    });

    const edited = 'Dune Messiah <i>annotated</i>';
    await report.step('edits with If-Match: a stale version gets the 412 message, a fresh one saves', async () => {
      await page.getByRole('button', { name: 'Edit Dune', exact: true }).click();
      check(await form.getByLabel('Title').inputValue() === 'Dune', 'the form does not hold the book');
      // Someone else changes the book meanwhile: the version the page holds is now stale.
      const other = await pageFetch(page, 'PUT', `/books/${bookId}`,
        { title: 'Dune', author: 'Frank Herbert', published_year: 1965 }, { 'If-Match': '"1"' });
      check(other.status === 200, `the concurrent edit answered ${other.status}`);
      await form.getByLabel('Title').fill('Dune Messiah');
      const stale = await answerTo(page, 'PUT', `/books/${bookId}`,
        () => form.getByRole('button', { name: 'Save changes' }).click());
      check(stale.status === 412 && stale.body.error === 'precondition_failed', `expected 412, got ${stale.status}`);
      await until('the 412 message', async () => (await text(page.locator('#error-message'))) === stale.body.message);

      await page.getByRole('button', { name: 'Edit Dune', exact: true }).click();
      await form.getByLabel('Title').fill(edited);
      const saved = await answerTo(page, 'PUT', `/books/${bookId}`,
        () => form.getByRole('button', { name: 'Save changes' }).click());
      check(saved.status === 200 && saved.body.version === 3, `expected 200 at version 3, got ${saved.status}`);
      await row(edited).waitFor();
      check(await page.locator('#books i').count() === 0, 'a title was rendered as HTML');
    });

    await report.step('delete asks for the password again when the token is not fresh', async () => {
      // A refreshed access token is never fresh.
      const refreshed = await pageFetch(page, 'POST', '/auth/refresh');
      check(refreshed.status === 200, `POST /auth/refresh answered ${refreshed.status}`);
      page.once('dialog', (dialog) => dialog.accept()); // "Delete ...?"
      const first = await answerTo(page, 'DELETE', `/books/${bookId}`,
        () => page.getByRole('button', { name: `Delete ${edited}`, exact: true }).click());
      check(first.status === 401 && first.body.error === 'fresh_token_required',
        `expected 401 fresh_token_required, got ${first.status} ${JSON.stringify(first.body)}`);
      const dialog = page.getByRole('dialog', { name: 'Confirm it is you' });
      await dialog.waitFor();

      await dialog.getByLabel('Password').fill('still-not-the-password');
      const wrong = await answerTo(page, 'POST', '/auth/session',
        () => dialog.getByRole('button', { name: 'Confirm and delete' }).click());
      check(wrong.status === 401, `a wrong password answered ${wrong.status}`);
      await until("the API's message in the dialog", async () => (await text(page.locator('#reauth-error'))) === wrong.body.message);
      check(await rows.filter({ hasText: 'Dune Messiah' }).count() === 1, 'deleted without the password');

      await dialog.getByLabel('Password').fill(password);
      const retried = await answerTo(page, 'DELETE', `/books/${bookId}`,
        () => dialog.getByRole('button', { name: 'Confirm and delete' }).click());
      check(retried.status === 204, `the retried delete answered ${retried.status}`);
      await dialog.waitFor({ state: 'hidden' });
      await until('the row to go', async () => (await rows.filter({ hasText: 'Dune Messiah' }).count()) === 0);
      const gone = await pageFetch(page, 'GET', `/books/${bookId}`);
      check(gone.status === 404, `GET /books/{id} after the delete answered ${gone.status}`);
    });

    await report.step(`saves a screenshot to ${path.relative(REPO, SCREENSHOT)}`, async () => {
      await mkdir(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
    });

    await report.step('logs out', async () => {
      await page.getByRole('button', { name: 'Log out' }).click();
      await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
      const names = (await page.context().cookies()).map((c) => c.name);
      check(!names.includes('access_token_cookie') && !names.includes('refresh_token_cookie'),
        `cookies left after logout: ${names.join(', ')}`);
      const me = await pageFetch(page, 'GET', '/auth/me');
      check(me.status === 401, `GET /auth/me after logout answered ${me.status}`);
      await page.reload();
      await page.getByRole('heading', { name: 'Log in', exact: true }).waitFor();
    });

    await report.step('an expired access token is renewed through the refresh cookie and the request retried', async () => {
      // A second stack whose access tokens live one second, so one expires between two clicks.
      const shortPort = await freePort();
      const shortBase = `http://127.0.0.1:${shortPort}`;
      shortStack = startStack(shortDataDir, shortPort,
        { ACCESS_TOKEN_TTL: '1', JWT_LEEWAY: '0' });
      const shortPassword = await shortStack.ready;
      await waitReady(shortBase);
      const context = await browser.newContext();
      const short = watch(await context.newPage());
      shown = short;
      await short.goto(`${shortBase}/`);
      await short.locator('#login-form').getByLabel('Username').fill('admin');
      await short.locator('#login-form').getByLabel('Password').fill(shortPassword);
      await short.locator('#login-form').getByRole('button', { name: 'Log in' }).click();
      await short.getByRole('heading', { name: 'Books', exact: true }).waitFor();
      await short.waitForTimeout(2_500);
      const seen = [];
      short.on('response', (r) => {
        const { pathname } = new URL(r.url());
        if (pathname === '/books' || pathname === '/auth/refresh') {
          seen.push(`${r.request().method()} ${pathname} ${r.status()}`);
        }
      });
      await short.getByLabel('Books per page').selectOption('20');
      await until('the list after a refresh', async () => seen.length === 3);
      check(seen.join(', ') === 'GET /books 401, POST /auth/refresh 200, GET /books 200',
        `requests: ${seen.join(', ')}`);
      check(await short.locator('#error').isHidden(), `an error is shown: ${await text(short.locator('#error'))}`);
      shown = page;
      await context.close();
    });

    screenshots = await accountSteps({
      browser,
      base,
      adminPassword: password,
      report,
      watch,
      show: (p) => {
        shown = p;
      },
    });

    await report.step('no script error or blocked resource on the page', async () => {
      check(pageErrors.length === 0, pageErrors.join('\n'));
    });
  } catch (err) {
    if (shown) {
      await mkdir(path.dirname(FAILURE_SCREENSHOT), { recursive: true });
      await shown.screenshot({ path: FAILURE_SCREENSHOT, fullPage: true }).catch(() => {});
      console.error(`  the page at the failure: ${FAILURE_SCREENSHOT}`);
    }
    if (stack?.stderr) {
      console.error(`  authbooks-local's stderr (last lines):\n${stack.stderr}`);
    }
    throw err;
  } finally {
    clearTimeout(deadline);
    await cleanup();
  }
}

const report = {
  passed: 0,
  failed: 0,
  async step(name, action) {
    try {
      await action();
    } catch (err) {
      this.failed += 1;
      console.error(`not ok - ${name}: ${err instanceof StepFailure ? err.message : err.stack || err}`);
      throw err;
    }
    this.passed += 1;
    console.log(`ok - ${name}`);
  },
};

try {
  await run(report);
  console.log(`screenshot: ${SCREENSHOT}`);
  for (const file of screenshots) {
    console.log(`screenshot: ${file}`);
  }
  console.log(`browser: ${report.passed} passed, 0 failed`);
} catch {
  console.log(`browser: ${report.passed} passed, ${report.failed || 1} failed`);
  process.exitCode = 1;
}
