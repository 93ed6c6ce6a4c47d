// End-to-end test of an official LTX-2 template in the real ComfyUI frontend served by
// `comfyrs serve` (single-user mode), driven in Debian's headless Chromium through
// playwright-core. Started by tests/browser_template.rs with a running server whose models
// folder holds the tiny fixture models under the template's file names; exits non-zero on any
// failure.
//
// The template's UI workflow (subgraph and all) is loaded as a user would open it, a few widgets
// (the subgraph instance's, or an inner node's with `--set OUTER:INNER.name=...`) are lowered so the run fits a CPU (size, frame count), the Run button
// queues it (the frontend converts it to an API prompt), and the SaveVideo node's <video>
// element must appear and play the MP4 the server wrote.
//
// Usage: node template.mjs --url http://127.0.0.1:PORT --workflow PATH --save-node ID
//        --set 177.width=128 [--set ...] --screenshot PATH [--chromium /usr/bin/chromium]
//        [--timeout-s 600]

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as lib from './lib.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    workflow: { type: 'string' },
    'save-node': { type: 'string' },
    set: { type: 'string', multiple: true, default: [] },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'timeout-s': { type: 'string', default: '600' },
  },
});
const base = args.url.replace(/\/$/, '');
const failures = [];
function fail(message) {
  failures.push(message);
  console.error(`FAIL: ${message}`);
}
const ctx = { base, chromium: args.chromium, fail };

/** `177:131.width=128` -> { path: [177, 131], widget: 'width', value: 128 }. */
function parseSet(text) {
  const m = /^([\d:]+)\.([A-Za-z_][\w ]*)=(.*)$/.exec(text);
  if (!m) throw new Error(`--set ${text}: expected NODE[:INNER].WIDGET=VALUE`);
  return { path: m[1].split(':').map(Number), widget: m[2], value: JSON.parse(m[3]) };
}

async function main() {
  const workflow = JSON.parse(fs.readFileSync(args.workflow, 'utf8'));
  const sets = args.set.map(parseSet);
  const session = await lib.openUser(ctx, null, null);
  const { page } = session;
  try {
    await lib.loadWorkspace(ctx, session, '/');
    await lib.dismissFirstRun(ctx, page);
    await page.evaluate((w) => window.app.loadGraphData(w, true, true, 'template.json'), workflow);
    await page.waitForFunction((id) => window.app.graph.getNodeById(id), Number(args['save-node']));
    // Lower widgets, following subgraph instances down to the inner node.
    const applied = await page.evaluate((list) => list.map(({ path, widget, value }) => {
      let graph = window.app.graph;
      let node = null;
      for (const id of path) {
        node = graph?.getNodeById(id);
        graph = node?.subgraph;
      }
      const w = node?.widgets?.find((x) => x.name === widget);
      if (!w) return `${path.join(':')}.${widget}: not found`;
      w.value = value;
      return `${path.join(':')}.${widget} = ${JSON.stringify(w.value)}`;
    }), sets);
    console.log(`widgets: ${applied.join(', ')}`);
    for (const a of applied) if (a.endsWith('not found')) fail(a);

    await page.getByRole('button', { name: 'Run', exact: true }).first().click();
    const timeout = Number(args['timeout-s']) * 1000;
    const video = await page.waitForFunction(() => {
      const v = [...document.querySelectorAll('video')].find((e) => e.src.includes('/api/view?'));
      return v && v.readyState >= 1 ? { src: v.src, width: v.videoWidth, height: v.videoHeight, duration: v.duration } : null;
    }, null, { timeout, polling: 1000 }).then((h) => h.jsonValue());
    console.log(`video element: ${JSON.stringify(video)}`);
    if (!video.src.includes('.mp4')) fail(`the video element shows ${video.src}`);
    if (!(video.width > 0 && video.height > 0)) fail(`the video has no picture size: ${JSON.stringify(video)}`);
    if (!(video.duration > 0)) fail(`the video has no duration: ${JSON.stringify(video)}`);
    const fetched = await page.evaluate(async (src) => {
      const r = await fetch(src);
      return { status: r.status, type: r.headers.get('content-type'), bytes: (await r.arrayBuffer()).byteLength };
    }, video.src);
    console.log(`fetching it: ${JSON.stringify(fetched)}`);
    if (fetched.status !== 200 || fetched.bytes === 0) fail(`fetching the video: ${JSON.stringify(fetched)}`);
    // The output also shows as a job in the Media Assets panel.
    await lib.openAssets(page);
    await page.waitForTimeout(1500);
    fs.mkdirSync(path.dirname(args.screenshot), { recursive: true });
    await page.screenshot({ path: args.screenshot });
    console.log(`screenshot: ${args.screenshot}`);
    console.log(`video-size ${video.width}x${video.height}`);
    const types = session.log.messages.map((m) => m.type);
    for (const t of ['execution_start', 'executing', 'progress', 'executed', 'execution_success']) {
      if (!types.includes(t)) fail(`the socket got no ${t}`);
    }
    const toasts = await lib.errorToasts(page);
    if (toasts.length) fail(`error toasts after the run: ${JSON.stringify(toasts)}`);
    for (const e of session.log.errors) fail(e);
    for (const r of session.log.badResponses) fail(`failing request ${r}`);
  } catch (e) {
    const shot = args.screenshot.replace(/\.png$/, '-failure.png');
    await page.screenshot({ path: shot }).catch(() => {});
    console.error(`failure screenshot: ${shot}`);
    for (const e2 of session.log.errors) console.error(e2);
    for (const r of session.log.badResponses) console.error(`failing request ${r}`);
    throw e;
  } finally {
    await session.context.close();
    fs.rmSync(session.profile, { recursive: true, force: true });
  }
  if (failures.length) {
    console.error(`${failures.length} failure(s)`);
    process.exit(1);
  }
  console.log('template browser test passed');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
