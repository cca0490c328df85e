// Real-browser test of the page `wim serve` serves at `/` (src/serve_page.html).
//
//   npm ci --prefix tests/browser          # once: installs playwright-core (no browser download)
//   node tests/browser/serve.spec.mjs http://127.0.0.1:PORT/ /path/to/repo
//
// Drives /usr/bin/chromium (override with CHROMIUM=/path) against a running server:
// reads data/demo/document.txt, asks data/demo/query.txt, expects data/demo/expected.txt
// in the answer, saves a full-page screenshot to build/serve-page.png, then asks again and
// stops the run early (while it waits behind a long run of the test's own), expecting a partial answer. Prints `ok - ...` lines; on failure one
// `not ok - ...` line and exit status 1.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const url = process.argv[2];
const root = resolve(process.argv[3] || '.');
if (!url || !/^https?:\/\//.test(url)) {
  console.log('not ok - usage: node serve.spec.mjs http://HOST:PORT/ [REPO_ROOT]');
  process.exit(1);
}
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(chromiumPath)) {
  console.log(`not ok - no browser at ${chromiumPath} (set CHROMIUM=/path/to/chromium)`);
  process.exit(1);
}
const read = (p) => readFileSync(join(root, p), 'utf8');
const documentText = read('data/demo/document.txt');
const question = read('data/demo/query.txt').trim();
const expected = read('data/demo/expected.txt').trim();
const shot = join(root, 'build', 'serve-page.png');

let step = 'starting the browser';
const fail = (msg) => { throw new Error(msg); };
let browser;
const pageErrors = [];
try {
  // no network but loopback here: keep Chromium from reaching out at start
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  page.on('pageerror', (e) => pageErrors.push(String(e.message || e)));
  const alertText = async () => ((await page.locator('#alert').isVisible()) ? (await page.textContent('#alert')).trim() : '');
  // Wait for a condition, but give up at once if the page shows an error.
  const until = async (what, fn, arg, timeout) => {
    step = what;
    const done = page.waitForFunction(fn, arg, { timeout, polling: 50 });
    const alert = page.waitForSelector('#alert.show', { timeout }).then(async () => fail(`page shows error: ${await alertText()}`));
    try { await Promise.race([done, alert]); } finally { alert.catch(() => {}); done.catch(() => {}); }
  };

  step = 'opening the page';
  const resp = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 15000 });
  if (!resp || !resp.ok()) fail(`GET ${url} answered ${resp ? resp.status() : 'nothing'}`);
  for (const id of ['doc-text', 'doc-file', 'read-btn', 'doc-status', 'segments', 'question', 'pattern',
                    'ask-btn', 'stop-btn', 'answer', 'timings', 'progress', 'alert'])
    if (!(await page.$('#' + id))) fail(`the page has no #${id}`);
  if (await page.isEnabled('#stop-btn')) fail('#stop-btn is enabled before any run');
  console.log('ok - page loaded');

  step = 'reading the document';
  await page.fill('#doc-text', documentText);
  await page.click('#read-btn');
  await until('waiting for the segment cards', () => document.querySelectorAll('#segments .segment').length > 0, null, 60000);
  const nseg = await page.locator('#segments .segment').count();
  const status = (await page.textContent('#doc-status')).replace(/\s+/g, ' ').trim();
  if (!/\d[\d,]* tokens/.test(status)) fail(`#doc-status does not give the token count: "${status}"`);
  console.log(`ok - document read: ${nseg} segment cards; ${status}`);

  step = 'asking';
  await page.fill('#question', question);
  await page.selectOption('#pattern', 'wim');
  await page.click('#ask-btn');
  await until('waiting for a margin', () => [...document.querySelectorAll('#segments .segment .margin')].some((m) => m.textContent.trim()), null, 120000);
  console.log('ok - a margin appeared under its segment card');
  await until(`waiting for "${expected}" in #answer`, (exp) => document.querySelector('#answer').textContent.includes(exp), expected, 120000);
  await until('waiting for the run to end', () => document.querySelector('#timings').rows.length > 0 && !document.querySelector('#ask-btn').disabled, null, 30000);
  const answer = (await page.textContent('#answer')).trim();
  if (/partial|stopped early/i.test(answer)) fail(`the uninterrupted answer is marked partial: "${answer}"`);
  const verdicts = await page.$$eval('#segments .verdict', (vs) => vs.map((v) => v.textContent.trim()).filter(Boolean));
  if (!verdicts.length) fail('no verdict shown on any segment card');
  const timings = await page.$$eval('#timings th', (ths) => ths.map((th) => `${th.textContent} ${th.nextElementSibling ? th.nextElementSibling.textContent : ''}`).join(', '));
  console.log(`ok - page answered ${answer} (${verdicts.filter((v) => v === 'kept').length} kept of ${verdicts.length} verdicts)`);
  console.log(`ok - timings table: ${timings}`);
  mkdirSync(join(root, 'build'), { recursive: true });
  step = 'taking the screenshot';
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`ok - screenshot ${shot}`);

  // Second question on the same document, stopped with the button. On this document a second
  // question ends in a fraction of a second, so a click could land after the run: the test first
  // holds the server's one worker with a long run of its own (the document 16 times), so the
  // page's run waits in the queue, unfinished, until the stop reaches it; then it lets go.
  step = 'holding the worker with a long run';
  const holder = new AbortController();
  const held = await fetch(new URL('v1/wim', url), {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: holder.signal,
    body: JSON.stringify({ text: documentText.repeat(16), question, stream: true }),
  });
  if (!held.ok) fail(`POST /v1/wim for the long run answered ${held.status}`);
  const heldBody = held.body.getReader();
  for (let seen = ''; !seen.includes('data:');) {            // running once its first event is out
    const { value, done } = await heldBody.read();
    if (done) fail('the long run ended before its first event');
    seen += Buffer.from(value).toString();
  }
  const drained = (async () => { for (;;) if ((await heldBody.read()).done) return; })().catch(() => {});
  step = 'asking again to stop early';
  let docPosts = 0;
  page.on('request', (r) => { if (r.method() === 'POST' && r.url().includes('/v1/documents')) docPosts++; });
  const stopReq = page.waitForRequest((r) => r.method() === 'POST' && /\/v1\/runs\/[^/]+\/stop$/.test(r.url()), { timeout: 60000 });
  await page.fill('#question', question);
  await page.press('#question', 'Enter');                      // Enter in the question field asks
  await until('waiting for the stop button', () => !document.querySelector('#stop-btn').disabled, null, 60000);
  step = 'clicking #stop-btn';
  await page.click('#stop-btn', { timeout: 5000 });
  await stopReq;
  holder.abort();                                              // closing its stream stops the long run
  await drained;
  await until('waiting for the partial answer', () => /partial|stopped early/i.test(document.querySelector('#answer').textContent) ||
                                                         !document.querySelector('#ask-btn').disabled, null, 120000);
  const partial = (await page.textContent('#answer')).trim();
  if (!/partial|stopped early/i.test(partial)) fail(`the stopped run's answer is not marked partial: "${partial}"`);
  if (docPosts) fail('the second question read the document again');
  console.log(`ok - stopped early: ${partial}`);
  if (pageErrors.length) fail(`JavaScript error on the page: ${pageErrors[0]}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  const msg = String(e && e.message || e).split('\n')[0];
  console.log(`not ok - ${step}: ${msg}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
