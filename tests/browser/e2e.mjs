// End-to-end test of the real ComfyUI frontend served by `comfyrs serve` in workshop mode,
// driven in Debian's headless Chromium through playwright-core. Started by tests/browser.rs
// with a running server; exits non-zero on any failure.
//
// user001 opens /user001 (redirected to /user001/) with basic auth: the app loads without
// error toasts, uncaught errors or failing requests the frontend cares about; a small API
// workflow (EmptyImage -> SaveImage) is loaded and queued with the Run button, and the output
// image appears on the SaveImage node and in the Media Assets panel. A screenshot is saved.
// user002, logged in at the same time, receives none of user001's events, and can neither
// list nor fetch the image.
//
// Usage: node e2e.mjs --url http://127.0.0.1:PORT --screenshot PATH
//        [--chromium /usr/bin/chromium] [--user1 user001:pw] [--user2 user002:pw]

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as lib from './lib.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    user1: { type: 'string', default: 'user001:pw-user001' },
    user2: { type: 'string', default: 'user002:pw-user002' },
  },
});
const base = args.url.replace(/\/$/, '');
const [user1, password1] = args.user1.split(':');
const [user2, password2] = args.user2.split(':');

const failures = [];
function fail(message) {
  failures.push(message);
  console.error(`FAIL: ${message}`);
}

const ctx = { base, chromium: args.chromium, fail };
const openUser = (user, password) => lib.openUser(ctx, user, password);
const loadWorkspace = (session, entry) => lib.loadWorkspace(ctx, session, entry);
const dismissFirstRun = (page) => lib.dismissFirstRun(ctx, page);
const { errorToasts, openAssets } = lib;

const PROMPT = {
  1: { class_type: 'EmptyImage', inputs: { width: 64, height: 48, batch_size: 1, color: 0xff3300 } },
  2: { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'e2e' } },
};

async function main() {
  const one = await openUser(user1, password1);
  const two = await openUser(user2, password2);
  try {
    await loadWorkspace(one, `/${user1}`);
    await loadWorkspace(two, `/${user2}/`);
    for (const s of [one, two]) {
      const toasts = await errorToasts(s.page);
      if (toasts.length) fail(`${s.user}: error toasts after load: ${JSON.stringify(toasts)}`);
    }

    // user001: load the workflow and queue it with the Run button.
    const { page } = one;
    await dismissFirstRun(page);
    if (await page.locator('[role="dialog"]:visible').count()) fail('a dialog stays open');
    await page.evaluate((p) => window.app.loadApiJson(p, 'e2e.json'), PROMPT);
    await page.waitForFunction(() => window.app.graph.nodes.some((n) => n.type === 'SaveImage'));
    await page.getByRole('button', { name: 'Run', exact: true }).first().click();
    const image = await page.waitForFunction(() => {
      const node = window.app.graph.nodes.find((n) => n.type === 'SaveImage');
      const img = node?.imgs?.[0];
      return img && img.complete && img.naturalWidth > 0
        ? { src: img.src, width: img.naturalWidth, height: img.naturalHeight }
        : null;
    }, null, { timeout: 60_000 }).then((h) => h.jsonValue());
    console.log(`output image on the SaveImage node: ${image.src} (${image.width}x${image.height})`);
    if (image.width !== 64 || image.height !== 48) fail(`image is ${image.width}x${image.height}`);
    if (!image.src.startsWith(`${base}/${user1}/api/view?`) || !image.src.includes('filename=e2e_00001_.png')) {
      fail(`unexpected image URL ${image.src}`);
    }
    // The job also lands in the Media Assets panel (built from /api/jobs).
    await openAssets(page);
    await page.locator('img[src*="e2e_00001_"]').first().waitFor({ state: 'visible', timeout: 30_000 });
    await page.waitForTimeout(1000);
    fs.mkdirSync(path.dirname(args.screenshot), { recursive: true });
    await page.screenshot({ path: args.screenshot });
    console.log(`screenshot: ${args.screenshot}`);
    const types = one.log.messages.map((m) => m.type);
    for (const t of ['execution_start', 'executing', 'executed', 'execution_success']) {
      if (!types.includes(t)) fail(`${user1}'s socket got no ${t}`);
    }
    const toasts = await errorToasts(page);
    if (toasts.length) fail(`${user1}: error toasts after the run: ${JSON.stringify(toasts)}`);

    // Everything so far: no uncaught errors, no failing requests (the probes below fail on
    // purpose).
    for (const s of [one, two]) {
      for (const e of s.log.errors) fail(`${s.user}: ${e}`);
      for (const r of s.log.badResponses) fail(`${s.user}: failing request ${r}`);
    }

    // user002 saw nothing of it and cannot reach the image.
    const leaked = two.log.messages.filter((m) => m.type !== 'status' && m.type !== 'feature_flags');
    if (leaked.length) fail(`${user2}'s socket received ${JSON.stringify(leaked.map((m) => m.type))}`);
    const probe = await two.page.evaluate(async (src) => {
      const direct = await fetch(src);
      const own = await fetch('api/view?filename=e2e_00001_.png&type=output');
      const jobs = await (await fetch('api/jobs?status=completed,failed,cancelled&limit=64&offset=0')).json();
      const history = await (await fetch('api/history')).json();
      const files = await (await fetch('internal/files/output')).json();
      return { direct: direct.status, own: own.status, jobs: jobs.jobs.length, history: Object.keys(history).length, files };
    }, image.src);
    console.log(`${user2} probing ${user1}'s image: ${JSON.stringify(probe)}`);
    if (probe.direct !== 403) fail(`${user2} fetching ${user1}'s image URL got ${probe.direct}`);
    if (probe.own !== 404) fail(`${user2} fetching the file name in its own workspace got ${probe.own}`);
    if (probe.jobs || probe.history || probe.files.length) fail(`${user2} lists ${user1}'s work: ${JSON.stringify(probe)}`);
    await dismissFirstRun(two.page);
    await openAssets(two.page);
    await two.page.waitForTimeout(1500);
    const shown = await two.page.evaluate(() => [...document.querySelectorAll('img')].map((i) => i.src).filter((s) => s.includes('e2e_')));
    if (shown.length) fail(`${user2}'s page shows ${shown}`);

    // The toast check can see toasts: an error toast raised through the extension API counts.
    await two.page.evaluate(() => window.app.extensionManager.toast.add({ severity: 'error', summary: 'probe' }));
    await two.page.waitForTimeout(500);
    const probeToasts = await errorToasts(two.page);
    if (probeToasts.length !== 1 || !probeToasts[0].includes('probe')) fail(`the toast probe was not seen: ${probeToasts}`);
  } catch (e) {
    // Keep what the page looked like for the report.
    const shot = args.screenshot.replace(/\.png$/, '-failure.png');
    await one.page.screenshot({ path: shot }).catch(() => {});
    console.error(`failure screenshot: ${shot}`);
    for (const s of [one, two]) {
      for (const e of s.log.errors) console.error(`${s.user}: ${e}`);
      for (const r of s.log.badResponses) console.error(`${s.user}: failing request ${r}`);
    }
    throw e;
  } finally {
    for (const s of [one, two]) {
      await s.context.close();
      fs.rmSync(s.profile, { recursive: true, force: true });
    }
  }
  if (failures.length) {
    console.error(`${failures.length} failure(s)`);
    process.exit(1);
  }
  console.log('browser test passed');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
