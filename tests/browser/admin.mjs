// The /admin dashboard in Debian's headless Chromium (playwright-core), against a running
// `comfyrs serve` in workshop mode with one long job running and three pending (started by
// tests/admin_dashboard.rs). Checks live progress, the workers and users panels, the pending
// jobs' expected finish times, and every
// control: prioritise, policy switch, pause/resume, cancel a pending and a running job; and
// that a participant is refused the page. Exits non-zero on any failure.
//
// Usage: node admin.mjs --url URL --admin NAME:PW --participant NAME:PW --jobs JSON
//        --screenshot PATH [--chromium /usr/bin/chromium]
// JSON: {"running": id, "pending": [id, id, id]} (pending in submission order).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    admin: { type: 'string' },
    participant: { type: 'string' },
    jobs: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
const base = args.url.replace(/\/$/, '');
const jobs = JSON.parse(args.jobs);
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

const failures = [];
function check(ok, message) {
  if (!ok) {
    failures.push(message);
    console.error(`FAIL: ${message}`);
  } else {
    console.log(`ok: ${message}`);
  }
}

async function open(credentials) {
  const [username, password] = credentials.split(':');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), `comfyrs-admin-${username}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: FLAGS,
    extraHTTPHeaders: { Authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // Failed requests, except the browser's favicon probe and the submission the test makes
  // while paused (refused on purpose).
  page.on('response', (r) => {
    const url = new URL(r.url());
    if (r.status() >= 400 && url.pathname !== '/favicon.ico' && url.pathname !== '/prompt') {
      errors.push(`${r.status()} ${url.pathname}`);
    }
  });
  return { context, page, errors, profile };
}

const row = (table, id) => `#${table} tr[data-job="${id}"]`;

async function progressOf(page, id) {
  const value = await page.getAttribute(`${row('running', id)} td[data-progress]`, 'data-progress');
  return value === '' || value == null ? -1 : Number(value);
}

async function main() {
  const admin = await open(args.admin);
  const { page } = admin;
  const response = await page.goto(`${base}/admin`);
  check(response.status() === 200, `admin gets /admin (${response.status()})`);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 15000 });
  await page.waitForSelector('#live.live', { timeout: 15000 });
  check(true, 'the dashboard loaded and its live stream is connected');

  // Running job with live progress.
  await page.waitForSelector(row('running', jobs.running), { timeout: 15000 });
  await page.waitForFunction(
    (sel) => Number(document.querySelector(sel)?.dataset.progress ?? -1) > 0,
    `${row('running', jobs.running)} td[data-progress]`, { timeout: 15000 });
  const before = await progressOf(page, jobs.running);
  await page.waitForFunction(
    ([sel, p]) => Number(document.querySelector(sel)?.dataset.progress ?? -1) > p,
    [`${row('running', jobs.running)} td[data-progress]`, before], { timeout: 15000 });
  check((await progressOf(page, jobs.running)) > before, `progress moves live (from ${before}%)`);

  // Workers and users panels.
  const worker = page.locator('#workers tr[data-worker]');
  check((await worker.count()) === 1, 'one worker listed');
  check((await worker.first().getAttribute('data-status')) === 'busy', 'the worker is busy');
  check((await worker.first().textContent()).includes(jobs.running.slice(0, 8)), 'the worker shows its job');
  const participantName = args.participant.split(':')[0];
  const user = page.locator(`#users tr[data-user="${participantName}"]`);
  await user.waitFor();
  check((await user.textContent()).includes('3'), 'the user row counts 3 pending jobs');
  check((await page.textContent('[data-count="pending"]')).trim() === '3', 'the pending card says 3');

  // Expected finish: every pending job has an estimate (the queue has a live worker), later
  // jobs no earlier than the ones before them.
  const headers = await page.locator('#pending thead th').allTextContents();
  const etaColumn = headers.indexOf('Expected finish');
  check(etaColumn >= 0, `the pending table has an "Expected finish" column (${headers.join(', ')})`);
  // The dashboard writes "in 12.3 s", "in 4 min 5 s" or "in 1 h 2 min".
  const seconds = (text) => {
    const t = text.trim().replace(/^in /, '');
    let m;
    if ((m = /^([\d.]+) s$/.exec(t))) return Number(m[1]);
    if ((m = /^(\d+) min (\d+) s$/.exec(t))) return Number(m[1]) * 60 + Number(m[2]);
    if ((m = /^(\d+) h (\d+) min$/.exec(t))) return Number(m[1]) * 3600 + Number(m[2]) * 60;
    return NaN;
  };
  await page.waitForFunction(
    (col) => [...document.querySelectorAll('#pending tbody tr')].length === 3 &&
      [...document.querySelectorAll('#pending tbody tr')].every(
        (tr) => /^in /.test(tr.children[col]?.textContent ?? '')),
    etaColumn, { timeout: 15000 });
  const etaCells = await page.locator(`#pending tbody tr td:nth-child(${etaColumn + 1})`).allTextContents();
  const etaTitles = await page.locator(`#pending tbody tr td:nth-child(${etaColumn + 1})`)
    .evaluateAll((tds) => tds.map((td) => td.title));
  check(etaCells.length === 3 && etaCells.every((t) => /^in /.test(t)),
    `each pending job shows its expected finish (${etaCells.join(' | ')})`);
  check(etaTitles.every((t) => t.length > 0), `each estimate names its basis (${etaTitles.join(' | ')})`);
  const etaSeconds = etaCells.map(seconds);
  check(etaSeconds.every((v, i) => !Number.isNaN(v) && (i === 0 || v >= etaSeconds[i - 1])),
    `later jobs are expected to finish no earlier (${etaSeconds.join(', ')} s)`);

  // Prioritise the last pending job: it becomes first.
  const last = jobs.pending[2];
  await page.click(`${row('pending', last)} button[data-action="prioritize"]`);
  await page.waitForFunction(
    (id) => document.querySelector('#pending tbody tr')?.dataset.job === id, last, { timeout: 10000 });
  check(true, 'prioritise moved the job to the front');
  await page.screenshot({ path: args.screenshot.replace(/\.png$/, '-live.png'), fullPage: true });

  // Policy switch.
  await page.selectOption('#policy', 'round_robin');
  await page.waitForFunction(async () => {
    const r = await fetch('/api/queue/policy');
    return (await r.json()).policy === 'round_robin';
  }, null, { timeout: 10000 });
  check(true, 'the policy switch changed the queue policy');

  // Pause and resume submissions.
  await page.click('#pause');
  await page.waitForSelector('#pause[data-paused="true"]', { timeout: 10000 });
  const refused = await page.evaluate(async () => {
    const r = await fetch('/prompt', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: { '1': { class_type: 'DevWorkload', inputs: { ms: 1, steps: 1, seed: 0 } },
        '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'x' } } } }) });
    return r.status;
  });
  check(refused === 503, `a submission while paused is refused (${refused})`);
  await page.click('#pause');
  await page.waitForSelector('#pause[data-paused="false"]', { timeout: 10000 });
  check(true, 'resume re-opens submissions');

  // Cancel a pending job: it leaves the pending table and shows as cancelled.
  const doomed = jobs.pending[0];
  await page.click(`${row('pending', doomed)} button[data-action="cancel"]`);
  await page.waitForSelector(`${row('finished', doomed)} td.status-cancelled`, { timeout: 10000 });
  check((await page.locator(row('pending', doomed)).count()) === 0, 'cancelled pending job left the queue');

  // Cancel the running job: interrupted on its worker, then listed as cancelled.
  await page.click(`${row('running', jobs.running)} button[data-action="cancel"]`);
  await page.waitForSelector(`${row('finished', jobs.running)} td.status-cancelled`, { timeout: 15000 });
  check(true, 'the running job was interrupted and shows as cancelled');

  // The remaining jobs run to completion and show up as finished.
  for (const id of [jobs.pending[1], last]) {
    await page.waitForSelector(`${row('finished', id)} td.status-completed`, { timeout: 30000 });
  }
  check(true, 'the other pending jobs completed');
  await page.screenshot({ path: args.screenshot, fullPage: true });
  check(admin.errors.length === 0, `no script errors or failed requests (${admin.errors.join(' | ')})`);

  // A participant is refused.
  const participant = await open(args.participant);
  const refusedPage = await participant.page.goto(`${base}/admin`);
  check(refusedPage.status() === 403, `a participant is refused /admin (${refusedPage.status()})`);
  await participant.context.close();
  await admin.context.close();
  for (const p of [admin.profile, participant.profile]) fs.rmSync(p, { recursive: true, force: true });
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
console.log('admin dashboard: all checks passed');
