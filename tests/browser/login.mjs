// Logging in through /login in Debian's headless Chromium (playwright-core), against a running
// `comfyrs serve` in workshop mode with the real ComfyUI frontend (started by tests/browser.rs):
// a browser without credentials that opens a workspace is sent to the login page; a wrong
// password shows an error; the right one lands in the workspace with the frontend loaded and
// its WebSocket connected, carried by the session cookie alone; logout sends it back to the
// login page and the workspace is closed again. Exits non-zero on any failure.
//
// Usage: node login.mjs --url URL --user NAME:PW [--chromium /usr/bin/chromium]

import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { openUser, loadWorkspace, errorToasts } from './lib.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    user: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
const base = args.url.replace(/\/$/, '');
const [name, password] = args.user.split(':');
const failures = [];
const check = (ok, message) => {
  if (ok) console.log(`ok: ${message}`);
  else { failures.push(message); console.error(`FAIL: ${message}`); }
};
const ctx = { base, chromium: args.chromium, fail: (m) => { throw new Error(m); } };

async function main() {
  // A profile without credentials (null user), so only the cookie can authenticate it.
  const session = await openUser(ctx, null, null);
  const { page, context, log } = session;
  await page.goto(`${base}/${name}/`);
  const at = new URL(page.url());
  check(at.pathname === '/login' && at.searchParams.get('next') === `/${name}/`,
    `a browser without credentials is sent to the login page (${page.url()})`);

  await page.fill('input[name="name"]', name);
  await page.fill('input[name="password"]', 'not-the-password');
  await Promise.all([page.waitForLoadState('domcontentloaded'), page.click('button[type="submit"]')]);
  check((await page.locator('.error').textContent())?.includes('Wrong name or password'),
    'a wrong password shows an error');
  check((await context.cookies()).every((c) => c.name !== 'comfyrs_session'), 'and sets no cookie');

  await page.fill('input[name="name"]', name);
  await page.fill('input[name="password"]', password);
  await Promise.all([page.waitForURL(`${base}/${name}/`), page.click('button[type="submit"]')]);
  const cookie = (await context.cookies()).find((c) => c.name === 'comfyrs_session');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Lax', 'login set an HttpOnly, SameSite=Lax session cookie');
  // The workspace, loaded with nothing but the cookie (loadWorkspace waits for the app, its
  // node definitions and its jobs request).
  session.user = name;
  await loadWorkspace(ctx, session, `/${name}/`);
  check(log.messages.some((m) => m.type === 'status'), 'the WebSocket connected and got its status');
  const toasts = await errorToasts(page);
  check(toasts.length === 0, `no error toasts (${toasts.join(' | ')})`);
  check(log.errors.length === 0, `no script errors (${log.errors.join(' | ')})`);
  // The wrong password's 401 on /login was on purpose.
  const failed = log.badResponses.filter((r) => !r.endsWith(' /login'));
  check(failed.length === 0, `no failed requests (${failed.join(' | ')})`);

  await page.goto(`${base}/logout`);
  await Promise.all([page.waitForURL(/\/login$/), page.click('button[type="submit"]')]);
  check(true, 'logout leads back to the login page');
  // Through the context's request API (the page's fetch would open the browser's basic-auth
  // prompt on the 401): same cookies, no dialog.
  const status = (await context.request.get(`${base}/${name}/api/queue`)).status();
  check(status === 401, `after logout the workspace's API is closed (${status})`);
  await context.close();
  fs.rmSync(session.profile, { recursive: true, force: true });
}

try {
  await main();
} catch (e) {
  failures.push(String(e && e.stack || e));
  console.error(`FAIL: ${e && e.stack || e}`);
}
if (failures.length) {
  console.error(`${failures.length} failure(s)`);
  process.exit(1);
}
console.log('login: all checks passed');
