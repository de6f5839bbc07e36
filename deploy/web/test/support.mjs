// Helpers shared by the browser test's files: step failures, polling, requests made by the page,
// screenshots, and an authenticator app (RFC 6238 TOTP) for the two-factor steps.

import { createHmac } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SCREENSHOTS = path.join(REPO, 'target', 'screenshots');
export const STEP_TIMEOUT_MS = 10_000;

export class StepFailure extends Error {}

export function check(condition, message) {
  if (!condition) {
    throw new StepFailure(message);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a truthy value; fails with `what` after the step timeout. */
export async function until(what, probe, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) {
      return last;
    }
    await sleep(50);
  }
  throw new StepFailure(`timed out waiting for ${what}`);
}

/** A request made by the page itself (its cookies, plus the CSRF header from its cookie). */
export function pageFetch(page, method, url, body, headers = {}) {
  return page.evaluate(async ([method, url, body, headers]) => {
    const csrf = document.cookie.split('; ').find((c) => c.startsWith('csrf_access_token='));
    const response = await fetch(url, {
      method,
      headers: {
        'Content-Type': 'application/json',
        'X-CSRF-TOKEN': csrf ? decodeURIComponent(csrf.split('=')[1]) : '',
        ...headers,
      },
      body: body === null ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  }, [method, url, body ?? null, headers]);
}

/** Runs `action` and returns the JSON body of the first answer to `method path`. */
export async function answerTo(page, method, pathname, action) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === method && new URL(r.url()).pathname === pathname),
    action(),
  ]);
  return { status: response.status(), body: await response.json().catch(() => null) };
}

export const text = async (locator) => ((await locator.textContent()) ?? '').trim();

/** Saves a full-page screenshot as target/screenshots/<name>.png; returns its path. */
export async function screenshot(page, name) {
  await mkdir(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// --- an authenticator app -----------------------------------------------------------------------

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const PERIOD = 30;

function base32Decode(input) {
  const clean = input.replace(/[\s=]/g, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const bytes = [];
  for (const char of clean) {
    const index = BASE32.indexOf(char);
    if (index < 0) {
      throw new StepFailure(`the key ${JSON.stringify(input)} is not base32`);
    }
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(bytes);
}

/** The RFC 6238 code of time step `step` (HMAC-SHA1, 6 digits). */
export function totp(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const number = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(number).padStart(6, '0');
}

export const currentStep = () => Math.floor(Date.now() / 1000 / PERIOD);

/**
 * What an authenticator app holding `secret` shows. The server takes the codes of the steps
 * from one before to one after its current step, each step only once and only if newer than
 * the last it accepted, so `next()` gives the code of a step after every one given so far,
 * waiting for the clock when that step is still too far ahead.
 */
export class Authenticator {
  constructor(secret) {
    this.key = base32Decode(secret);
    this.last = -1;
  }

  async next() {
    for (;;) {
      const step = Math.max(currentStep(), this.last + 1);
      if (step <= currentStep() + 1) {
        this.last = step;
        return totp(this.key, step);
      }
      await sleep(250);
    }
  }

  /** Six digits that no step the server could accept now gives. */
  wrong() {
    const now = currentStep();
    const valid = new Set([-2, -1, 0, 1, 2].map((d) => totp(this.key, now + d)));
    for (let n = 123456; ; n = (n + 111111) % 1_000_000) {
      const code = String(n).padStart(6, '0');
      if (!valid.has(code)) {
        return code;
      }
    }
  }
}
