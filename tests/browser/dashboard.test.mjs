// The dashboard in a real browser (Debian chromium via playwright-core) against a real control plane
// and a real CPU worker started here: upload a zip through the page, create a study in the form (a bad
// bound first, flagged on its field), watch trials arrive and the progress bar move without a reload,
// download the best model. Then a seeded study of 10,000 trials: first paint and bytes downloaded, what
// mattered in bars and sentences, and "narrow the bounds and run again" prefilling the form.
// Screenshots go to tests/browser/out/ (gitignored).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { shapesZip } from './fixtures.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'out');
const bin = process.env.TANREN_BIN || join(process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache/tanren/target'), 'release');
const tmp = mkdtempSync(join(tmpdir(), 'tanren-browser-'));
const procs = [];
let url, browser;
// The control plane accepts this admin token (TANREN_ADMIN_TOKEN); pages sign in through its login URL.
const ADMIN = 'tnr_browser_test_admin_0123456789';
const JOIN = 'browser-test-join-token-0123456789';
// REST calls from the test itself, with the admin token.
const api = async (path) => (await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json();
const signIn = async (page) => {
  await page.goto(`${url}/login?token=${ADMIN}`);
  await page.waitForURL(`${url}/`);
};

const freePort = () => new Promise((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });

async function waitHttp(u, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if ((await fetch(u)).ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${u} did not answer within ${ms} ms`);
}

function start(name, env) {
  const p = spawn(join(bin, name), [], { env: { ...process.env, RUST_LOG: 'warn', ...env }, stdio: ['ignore', 'inherit', 'inherit'] });
  procs.push(p);
  return p;
}

before(async () => {
  mkdirSync(out, { recursive: true });
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  start('tanren-control', { TANREN_LISTEN: `127.0.0.1:${port}`, TANREN_DATA_DIR: join(tmp, 'control'), TANREN_WORKER_TIMEOUT: '10', TANREN_ADMIN_TOKEN: ADMIN, TANREN_JOIN_TOKEN: JOIN, TANREN_CREDENTIALS_FILE: 'none' });
  await waitHttp(`${url}/healthz`, 30000);
  start('tanren-worker', { TANREN_CONTROL_URL: url, TANREN_WORKER_LISTEN: '127.0.0.1:0', TANREN_WORKER_ID: 'browser-w1', TANREN_WORKER_DATA: join(tmp, 'worker'), TANREN_DEVICE: 'cpu', TANREN_THREADS: '1', TANREN_HEARTBEAT_MS: '500', TANREN_JOIN_TOKEN: JOIN });
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs) p.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 300));
  rmSync(tmp, { recursive: true, force: true });
});

test('upload, create a study, watch it live, download the model', { timeout: 600000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await signIn(page);
  await page.goto(`${url}/#/datasets`);

  // Upload through the file picker; the progress bar fills, then classes, counts and thumbnails show.
  const zipPath = join(tmp, 'shapes.zip');
  writeFileSync(zipPath, shapesZip());
  await page.setInputFiles('#dataset-file', zipPath);
  await page.waitForSelector('table.classes tbody tr:nth-child(3)', { timeout: 60000 });
  assert.equal(await page.locator('.upload-bar .bar-fill').evaluate((e) => e.style.width), '100%');
  const classes = await page.locator('table.classes tbody tr td:nth-child(2)').allTextContents();
  assert.deepEqual(classes, ['circle', 'square', 'stripe']);
  await page.waitForFunction(() => [...document.querySelectorAll('.thumbs img')].length === 18 && [...document.querySelectorAll('.thumbs img')].every((i) => i.complete && i.naturalWidth === 64));
  await page.screenshot({ path: join(out, 'datasets.png'), fullPage: true });

  // The form: defaults from the server; an inverted bound is refused and shown on that field.
  await page.click('text=New study with this dataset');
  await page.waitForSelector('[data-field="bounds.learning_rate"]');
  assert.equal(await page.inputValue('input[name="learning_rate.low"]'), '0.0001');
  assert.match(await page.textContent('#space-size'), /continuous/);
  await page.fill('input[name="learning_rate.low"]', '0.5');
  await page.click('button[type=submit]');
  const fieldError = page.locator('[data-field="bounds.learning_rate"] .field-error');
  await fieldError.waitFor();
  await page.waitForFunction(() => document.querySelector('[data-field="bounds.learning_rate"] .field-error').textContent.includes('learning_rate'));
  assert.ok(await page.locator('[data-field="bounds.learning_rate"].invalid').count());
  await page.screenshot({ path: join(out, 'new-study-error.png'), fullPage: true });

  // "Suggest bounds": the advisor probes the data on the test's worker (it is idle) and fills every
  // row with a bound and its reason; the trials too; the note says where the probes ran.
  await page.click('#suggest-bounds');
  await page.waitForFunction(() => /Suggested bounds filled in/.test(document.getElementById('advice-note').textContent), null, { timeout: 240000 });
  const note = await page.textContent('#advice-note');
  assert.match(note, /probes ran on worker browser-w1/i, note);
  for (const k of ['image_size', 'learning_rate', 'batch_size', 'epochs', 'channels', 'conv_blocks']) {
    const reason = await page.textContent(`[data-reason="${k}"]`);
    assert.match(reason, /^Suggested: ./, `${k}: ${reason}`);
  }
  // The shapes are 32 px: the suggested sizes stay near them, and the learning rate is Adam's.
  assert.match(await page.textContent('[data-reason="image_size"]'), /32 px/);
  const lr = [Number(await page.inputValue('input[name="learning_rate.low"]')), Number(await page.inputValue('input[name="learning_rate.high"]'))];
  assert.ok(lr[0] >= 1e-5 && lr[0] < lr[1] && lr[1] <= 0.05, `advised learning rate ${lr}`);
  assert.notEqual(await page.inputValue('input[name="trials"]'), '');
  assert.ok(await page.locator('input[name="optimizer.adamw"]').isChecked());
  assert.equal(await page.locator('[data-field="bounds.learning_rate"] .field-error').textContent(), '',
    'the suggestion replaced the values the error was about');
  await page.screenshot({ path: join(out, 'new-study-advice.png'), fullPage: true });

  // A small real study: 4 trials of 3-5 epochs on 24-40 px images.
  await page.fill('input[name="learning_rate.low"]', '0.001');
  await page.fill('input[name="learning_rate.high"]', '0.005');
  assert.equal(await page.locator('[data-field="bounds.learning_rate"] .field-error').textContent(), '',
    'editing the field clears its error');
  for (const [k, lo, hi] of [['epochs', 3, 5], ['image_size', 24, 40], ['batch_size', 8, 32], ['conv_blocks', 1, 2], ['channels', 8, 16]]) {
    await page.fill(`input[name="${k}.low"]`, String(lo));
    await page.fill(`input[name="${k}.high"]`, String(hi));
  }
  await page.fill('input[name="trials"]', '4');
  await page.selectOption('select[name="sampler"]', 'random');
  await page.selectOption('select[name="objectives"]', 'accuracy,latency');
  await page.screenshot({ path: join(out, 'new-study.png'), fullPage: true });
  await page.click('button[type=submit]');
  await page.waitForURL(/#\/studies\/\d+$/);
  const studyId = Number(page.url().match(/studies\/(\d+)/)[1]);

  // Live: a marker on window survives only if the page is never reloaded.
  // Every rendering of the progress text is recorded in the page (a study this small is quick).
  await page.evaluate(() => {
    window.__noReload = true;
    window.__texts = [];
    const el = document.getElementById('progress-text');
    new MutationObserver(() => window.__texts.push(el.textContent.replace(/ · elapsed.*/, ''))).observe(el, { childList: true, subtree: true, characterData: true });
  });
  await page.waitForSelector('#connection.live');
  await page.waitForFunction(() => ['complete', 'failed', 'stopped'].includes(document.querySelector('.badge')?.textContent), null, { timeout: 500000 });
  assert.equal(await page.textContent('.badge'), 'complete');
  assert.ok(await page.evaluate(() => window.__noReload === true), 'the page reloaded');
  const texts = new Set(await page.evaluate(() => window.__texts));
  assert.ok([...texts].some((t) => /^[0-3] \/ 4 done/.test(t)), `progress seen: ${[...texts].join(' | ')}`);
  assert.ok(texts.size >= 3, `the progress text changed live: ${[...texts].join(' | ')}`);
  await page.waitForFunction(() => document.querySelectorAll('#trials-table tbody tr').length === 4);
  await page.waitForSelector('#progress-text >> text=4 / 4 done');
  // Four trials are too few for importance: the card says how many it needs.
  await page.waitForFunction(() => /at least 6 complete trials/.test(document.getElementById('importance-note').textContent));
  assert.equal(await page.locator('#narrow-rerun').isHidden(), true);
  await page.waitForTimeout(500); // let the throttled charts draw
  await page.screenshot({ path: join(out, 'study.png'), fullPage: true });

  // A trial opens with its epochs and confusion matrix.
  await page.click('#trials-table tbody tr:first-child');
  await page.waitForSelector('#trial-drawer table.confusion');
  await page.screenshot({ path: join(out, 'trial.png') });
  await page.keyboard.press('Escape');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-model')]);
  const saved = join(tmp, 'model.zip');
  await download.saveAs(saved);
  const bytes = readFileSync(saved);
  assert.equal(bytes.subarray(0, 2).toString(), 'PK');
  assert.ok(bytes.includes(Buffer.from('model.safetensors')));
  assert.ok(bytes.includes(Buffer.from('model.onnx')), 'the download holds the ONNX export');
  // The best-model card says what is in the zip and how to serve it.
  const serve = await page.textContent('#serve-command');
  assert.equal(serve, `tanren-serve --control-url ${url} --study ${studyId}`);
  assert.match(await page.textContent('#model-files'), /model\.onnx/);

  // Accuracy vs speed: the front as the server computes it, and the fastest model within X points.
  const st = await api(`/api/v1/studies/${studyId}`);
  assert.deepEqual(st.objectives, ['accuracy', 'latency']);
  await page.waitForFunction((n) => document.querySelectorAll('#pareto-front tr').length === n, st.pareto_front.length);
  assert.ok(st.pareto_front.length >= 1, JSON.stringify(st.pareto_front));
  await page.fill('#within-points', '100');
  const fastest = await api(`/api/v1/studies/${studyId}/model/trial?within_points=100`);
  await page.waitForFunction((n) => document.getElementById('fastest-choice').textContent.startsWith(`trial #${n}:`), fastest.number);
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download-fastest')]);
  const savedFast = join(tmp, 'fastest.zip');
  await dl.saveAs(savedFast);
  assert.equal(readFileSync(savedFast).subarray(0, 2).toString(), 'PK');
  await page.locator('#tradeoff-card').screenshot({ path: join(out, 'tradeoff.png') });
  assert.deepEqual(errors, []);

  // Workers page lists the worker as alive.
  await page.goto(`${url}/#/workers`);
  await page.waitForSelector('#workers-table >> text=browser-w1');
  // ... with its slots: none in use once the study is over, of the one it registered.
  const workerRow = page.locator('#workers-table tr', { hasText: 'browser-w1' });
  await workerRow.locator('td', { hasText: /^0 \/ 1$/ }).first().waitFor();
  await page.close();
  globalThis.realStudy = studyId;
});

test('a study of 10,000 stored trials: first paint and bytes downloaded', { timeout: 180000 }, async () => {
  const db = join(tmp, 'control', 'tanren.db');
  const id = execFileSync('python3', [join(here, 'seed_trials.py'), db, String(globalThis.realStudy ?? 1), '10000']).toString().trim();
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  let http = 0, ws = 0;
  cdp.on('Network.loadingFinished', (e) => { http += e.encodedDataLength; });
  cdp.on('Network.webSocketFrameReceived', (e) => { ws += e.response.payloadData.length; });
  await signIn(page);
  http = 0; ws = 0;
  const t0 = Date.now();
  await page.goto(`${url}/#/studies/${id}`);
  await page.waitForFunction(() => document.querySelector('#trials-table')?.closest('.card')?.textContent.includes('of 10,000'), null, { timeout: 60000 });
  const ready = Date.now() - t0;
  await page.waitForTimeout(2500); // the throttled chart pass for big studies
  const paint = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('paint').map((p) => [p.name, Math.round(p.startTime)])));
  // Responsiveness: sorting 10,000 rows by accuracy and re-rendering the table.
  const sortMs = await page.evaluate(() => { const t = performance.now(); document.querySelector('th[data-key="val_accuracy"]').click(); return Math.round(performance.now() - t); });
  await page.screenshot({ path: join(out, 'study-10k.png'), fullPage: false });
  const m = { first_paint_ms: paint['first-paint'], first_contentful_paint_ms: paint['first-contentful-paint'], table_ready_ms: ready, http_bytes: http, websocket_bytes: ws, sort_10k_ms: sortMs };
  console.log(`measure: ${JSON.stringify(m)}`);
  writeFileSync(join(out, 'measure-10k.json'), JSON.stringify(m, null, 2));
  assert.ok(m.first_contentful_paint_ms < 3000, JSON.stringify(m));
  assert.ok(ready < 30000, JSON.stringify(m));

  // What mattered: the seeded accuracy depends on the learning rate alone, so it leads the sentences.
  await page.waitForSelector('#importance-sentences li');
  const sentences = await page.locator('#importance-sentences li').allTextContents();
  assert.match(sentences[0], /^Learning rate (decided most of the result|mattered most)/, sentences.join(' | '));
  const imp = await api(`/api/v1/studies/${id}/importance`);
  assert.deepEqual(sentences, imp.sentences);
  await page.locator('#importance-card').screenshot({ path: join(out, 'importance.png') });
  // Narrow and run again: the form opens on the same dataset with the narrowed bounds.
  const study = await api(`/api/v1/studies/${id}`);
  await page.click('#narrow-rerun');
  await page.waitForSelector('#prefill-note');
  assert.equal(await page.inputValue('select[name="dataset_id"]'), String(study.dataset_id));
  for (const [k, b] of Object.entries(imp.narrowed)) {
    if (b.choices) {
      const checked = await page.locator(`[data-field="bounds.${k}"] input[type=checkbox]:checked`).evaluateAll((xs) => xs.map((x) => x.value));
      assert.deepEqual(checked, b.choices, k);
    } else {
      assert.equal(Number(await page.inputValue(`input[name="${k}.low"]`)), b.low, k);
      assert.equal(Number(await page.inputValue(`input[name="${k}.high"]`)), b.high, k);
    }
  }
  // Narrowed or spread over its whole bounds, what mattered is named.
  assert.match(await page.textContent('#prefill-note'), new RegExp(`^Prefilled from study #${id} .*learning rate`));
  assert.equal(await page.inputValue('input[name="name"]'), `${study.name} (narrowed)`);
  await page.screenshot({ path: join(out, 'new-study-narrowed.png'), fullPage: true });
  await ctx.close();
});
