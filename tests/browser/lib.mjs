// Shared helpers of the browser tests (playwright-core driving Debian's headless Chromium
// against `comfyrs serve` with the real ComfyUI frontend): one browser profile per user, loading
// the app and waiting for it, first-run dialogs, toasts, the Media Assets panel.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Same-origin requests that may fail without harming the UI: optional files ComfyUI also
// answers 404 (user.css, empty userdata folders, node templates, bookmarks) and template
// thumbnails of bundles setup.sh does not install.
export const TOLERATED = [
  /\/user\.css$/,
  /\/api\/userdata\/user\.css$/,
  /\/api\/userdata\?dir=/,
  /\/api\/userdata\/comfy\.templates\.json$/,
  /\/api\/userdata\/workflows%2F\.index\.json$/,
  /\/templates\/[^/]+\.(webp|png|jpg|mp4|mp3)$/,
];


/** The `Authorization` header value of HTTP basic authentication. */
export function basicAuth(user, password) {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/**
 * A browser profile for one user (`user` null: single-user mode, no credentials), recording
 * what goes wrong and every WebSocket message. `ctx` is `{ base, chromium, fail }`.
 */
export async function openUser(ctx, user, password) {
  const { base } = ctx;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), `comfyrs-chromium-${user}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: ctx.chromium,
    headless: true,
    args: FLAGS,
    // Basic credentials on every request, as API clients send them (a browser without
    // credentials is sent to the login page instead of being challenged; login.mjs tests that).
    ...(user ? { extraHTTPHeaders: { Authorization: basicAuth(user, password) } } : {}),
    viewport: { width: 1400, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const log = { errors: [], badResponses: [], messages: [], toasts: [] };
  page.on('pageerror', (e) => log.errors.push(`uncaught: ${e.message}`));
  // Failing requests are judged by their URL above; their console echoes are not counted.
  page.on('console', (m) => {
    const echo = /^Failed to load resource|^Failed to fetch: \d+$/.test(m.text());
    if (m.type() === 'error' && !echo) {
      log.errors.push(`console: ${m.text().slice(0, 300)}`);
    }
  });
  page.on('response', (r) => {
    const url = r.url();
    if (url.startsWith(base) && r.status() >= 400 && !TOLERATED.some((re) => re.test(url))) {
      log.badResponses.push(`${r.status()} ${r.request().method()} ${url.slice(base.length)}`);
    }
  });
  page.on('websocket', (ws) => {
    ws.on('framereceived', (f) => {
      if (typeof f.payload === 'string') {
        try { log.messages.push(JSON.parse(f.payload)); } catch { /* not JSON */ }
      } else {
        log.messages.push({ type: 'binary' });
      }
    });
  });
  return { user, context, page, log, profile };
}

/** Loads the workspace and waits for the app, its node definitions and its socket. */
export async function loadWorkspace(ctx, session, entry) {
  const { base, fail } = ctx;
  const { page, user } = session;
  const prefix = user ? `/${user}` : '';
  const response = await page.goto(`${base}${entry}`);
  if (new URL(page.url()).pathname !== `${prefix}/`) fail(`${user}: ended at ${page.url()}`);
  if (!response || response.status() !== 200) fail(`${user}: index answered ${response?.status()}`);
  await page.waitForFunction(() => window.app?.graph, null, { timeout: 90_000 });
  await page.waitForFunction(() => window.LiteGraph?.registered_node_types?.SaveImage, null, { timeout: 60_000 });
  await page.waitForFunction(
    (p) => performance.getEntriesByType('resource').some((e) => e.name.includes(`${p}/api/jobs`)),
    prefix, { timeout: 60_000 });
  await page.waitForTimeout(2000);
}

const ERROR_TOASTS = '[data-testid="toast"][data-toast-kind="error"], [data-testid="toast"][data-toast-kind="warning"]';

export async function errorToasts(page) {
  return page.locator(ERROR_TOASTS).allInnerTexts();
}

/**
 * A new user's first run opens the templates browser once start-up has settled (and records
 * `Comfy.TutorialCompleted`); close it as a user would, and any other dialog.
 */
export async function dismissFirstRun(ctx, page) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (await page.locator('[role="dialog"]:visible').count()) {
      await page.keyboard.press('Escape');
      await page.waitForTimeout(300);
      continue;
    }
    const settled = await page.evaluate(async () => {
      const r = await fetch('api/settings/Comfy.TutorialCompleted');
      return (await r.json()) === true;
    });
    if (settled) return;
    await page.waitForTimeout(300);
  }
  ctx.fail('the first-run dialog did not settle');
}

/** Opens the Media Assets sidebar (generated outputs, from the jobs API). */
export async function openAssets(page) {
  await page.locator('button[aria-label^="Assets"]').first().click();
  await page.getByText('Media Assets').first().waitFor({ state: 'visible', timeout: 10_000 });
}
