// Drives the edge web app in headless Chromium: login (end user, operator), score one record
// through the form (checked against /v2 infer), the "why" bars, feedback, a 1,000-row CSV upload
// (sorting, filtering, download), bad files, recent anomalies, the operator view before and after
// the hub is stopped, a tablet layout; zero console errors; screenshots.
//   node webapp.mjs '<config json>'   (run_webapp.py writes it)
// Prints one JSON line: {"online_feedback_id": ..., "offline_feedback_id": ...}.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const config = JSON.parse(process.argv[2]);
const failures = [];
const check = (ok, message) => { if (!ok) failures.push(message); };
const report = {};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const errors = [];
let expectHttpErrors = false;  // bad-input steps answer 4xx on purpose; Chromium logs those
function watch(page) {
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (expectHttpErrors && /status of 4\d\d/.test(msg.text())) return;
    errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(String(err)));
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.protocol.startsWith('http') && url.hostname !== '127.0.0.1') errors.push('request left loopback: ' + req.url());
  });
}
const shot = (page, name) => page.screenshot({ path: join(config.artifacts, `webapp-${name}.png`), fullPage: true });

async function login(page, [user, password]) {
  await page.goto(config.url + '/');
  await page.waitForSelector('body[data-loaded="true"]');
  await page.waitForSelector('#login:not([hidden])');
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForSelector('#page-score:not([hidden]) #record-fields input', { timeout: 10000 });
}

async function logout(page) {
  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])');
}

async function scoreRecord(page) {
  await page.selectOption('#model', 'machine-failure');
  await page.waitForSelector('#record-fields input[data-column="rpm"]');
  await page.getByLabel('rpm', { exact: true }).fill('2400');
  await page.getByLabel('tool_wear_min', { exact: true }).fill('230');
  await page.getByRole('button', { name: 'Score record' }).click();
  await page.waitForSelector('#record-result:not([hidden]) #record-values dd');
}

async function sendFeedback(page, opener, { verdict, label, note }) {
  await opener.click();
  await page.waitForSelector('#feedback-dialog[open]');
  if (verdict === 'incorrect') await page.getByLabel('Incorrect').check();
  if (label !== undefined) await page.fill('#fb-label-value', label);
  await page.getByLabel('Note (optional)').fill(note);
  await page.evaluate(() => { document.getElementById('toast').textContent = ''; });
  await page.getByRole('button', { name: 'Send feedback' }).click();
  await page.waitForFunction(() => /Feedback recorded \(event /.test(document.getElementById('toast').textContent)
    || !document.getElementById('feedback-error').hidden, null, { timeout: 15000 });
  const error = await page.textContent('#feedback-error');
  check(!(await page.isVisible('#feedback-error')), 'feedback refused: ' + error);
  const toast = await page.textContent('#toast');
  return (toast.match(/event ([0-9a-f-]+)/) || [])[1];
}

async function upload(page, file) {
  await page.setInputFiles('#csv-file', file);
  await page.getByRole('button', { name: 'Score file' }).click();
  await page.waitForFunction(() => !document.getElementById('csv-submit').disabled, null, { timeout: 30000 });
}

try {
  // The page's CSP forbids eval, which playwright's waitForFunction polling uses.
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, acceptDownloads: true, bypassCSP: true });
  const page = await context.newPage();
  watch(page);

  // --- an end user -----------------------------------------------------------------------------
  await login(page, config.user);
  check(await page.isHidden('#tab-operator'), 'the operator tab is visible to an end user');
  check(await page.isHidden('#mode-banner'), 'the dev-mode banner shows in production');
  expectHttpErrors = true;
  const operatorStatus = await page.evaluate(async () => (await fetch('/ui/api/operator')).status);
  const noCsrf = await page.evaluate(async () => (await fetch('/ui/api/models/machine-failure/score', { method: 'POST', body: '{}' })).status);
  expectHttpErrors = false;
  check(operatorStatus === 403, `GET /ui/api/operator as an end user: ${operatorStatus}, want 403`);
  check(noCsrf === 403, `a POST without the CSRF token: ${noCsrf}, want 403`);

  // One record through the form, compared with the OIP API on the same values.
  await scoreRecord(page);
  const shown = Number(await page.textContent('#record-values dd'));
  const direct = await page.evaluate(async () => {
    const data = [...document.querySelectorAll('#record-fields input')].map((i) => Number(i.value));
    const r = await fetch('/v2/models/machine-failure/infer', { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, data.length], data }] }) });
    return (await r.json()).outputs[0].data[0];
  });
  check(Math.abs(shown - direct) < 1e-3, `form probability ${shown}, /v2 infer ${direct}`);
  const bars = await page.$$eval('#why-bars li', (li) => li.length);
  check(bars === 8, `${bars} contribution bars, want 8`);
  await shot(page, 'score-record');
  report.online_feedback_id = await sendFeedback(page, page.locator('#record-feedback'), { verdict: 'incorrect', note: 'pump was fine' });
  check(!!report.online_feedback_id, 'no feedback event id in the page');

  // 1,000 rows from a CSV file.
  await upload(page, config.files['good.csv']);
  const status = await page.textContent('#csv-status');
  check(/^Scored 1000 rows/.test(status), `CSV status: ${status}`);
  const rows = await page.$$eval('#results tbody tr', (tr) => tr.length);
  check(rows === 1000, `${rows} result rows, want 1000`);
  check((await page.textContent('#result-count')) === '(1000 of 1000 rows)', 'result count: ' + await page.textContent('#result-count'));
  await page.click('#results thead th:nth-child(3) button');  // score, ascending
  await page.click('#results thead th:nth-child(3) button');  // descending
  const scores = await page.$$eval('#results tbody tr', (tr) => tr.slice(0, 50).map((r) => Number(r.cells[2].textContent)));
  check(scores.every((s, i) => i === 0 || scores[i - 1] >= s), 'results not sorted by score: ' + scores.slice(0, 5));
  const anomalies = Number(status.match(/; (\d+) anomalies/)[1]);
  await page.check('#only-anomalies');
  const flagged = await page.$$eval('#results tbody tr', (tr) => tr.filter((r) => r.classList.contains('anomaly')).length);
  const shownRows = await page.$$eval('#results tbody tr', (tr) => tr.length);
  check(flagged === anomalies && shownRows === anomalies, `anomalies only: ${shownRows} rows (${flagged} highlighted), want ${anomalies}`);
  await page.uncheck('#only-anomalies');
  await page.fill('#filter', '17');
  const filtered = await page.$$eval('#results tbody tr', (tr) => tr.map((r) => [...r.cells].map((c) => c.textContent)));
  check(filtered.length >= 1 && filtered.length < 1000 && filtered.some((r) => r[0] === '17')
    && filtered.every((r) => r[0] === '17' || r.slice(2, -1).some((v) => v.includes('17'))), `filter '17' shows ${filtered.length} rows`);
  await page.fill('#filter', '');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
  check(csv.length === 1001 && csv[0].startsWith('row,anomaly,score'), `download has ${csv.length} lines: ${csv[0]}`);
  await shot(page, 'csv-results');

  // Bad files get a clear message; the server stays healthy.
  expectHttpErrors = true;
  for (const [file, want] of [['wrong_columns.csv', /wrong columns: the model 'machine-failure' needs 20 column/],
    ['wrong_types.csv', /wrong type on line 3 \(row 2\), column 'rpm': 'fast' is not a number/],
    ['garbage.csv', /not CSV text: binary data/],
    ['huge.csv', /at most 16 MB per upload/]]) {
    await upload(page, config.files[file]);
    const message = (await page.isVisible('#csv-error')) ? await page.textContent('#csv-error') : '(no message)';
    check(want.test(message), `${file}: message "${message}"`);
  }
  await shot(page, 'bad-file');
  const tooLarge = await page.evaluate(async () => {
    const csrf = (await (await fetch('/ui/api/session')).json()).csrf;
    const r = await fetch('/ui/api/models/machine-failure/score-csv', { method: 'POST', headers: { 'X-CSRF-Token': csrf }, body: 'x'.repeat(17 * 1024 * 1024) });
    return [r.status, (await r.json()).error];
  }).catch((e) => [0, String(e)]);
  expectHttpErrors = false;
  check(tooLarge[0] === 413, `a 17 MB upload straight to the API: ${tooLarge}`);
  const live = await page.evaluate(async () => (await fetch('/v2/health/ready')).status);
  check(live === 200, `readiness after bad input: ${live}`);

  // Recent anomalies: the streaming detector's spike on pump-3.
  await page.click('button.tab[data-page="anomalies"]');
  await page.waitForFunction(() => document.querySelectorAll('#anomaly-list tbody tr').length > 0, null, { timeout: 10000 });
  const seriesRow = await page.$$eval('#anomaly-list tbody tr', (tr) => tr.map((r) => r.cells[2].textContent));
  check(seriesRow.includes('pump-3'), 'no pump-3 anomaly listed: ' + seriesRow.slice(0, 5));
  await page.selectOption('#series', 'sensor-anomaly / pump-3');
  await page.waitForFunction(() => (Chart.getChart('series-chart')?.data.datasets[0].data.length ?? 0) >= 150, null, { timeout: 10000 });
  await shot(page, 'recent-anomalies');
  await logout(page);

  // --- an operator -----------------------------------------------------------------------------
  await login(page, config.operator);
  check(await page.isVisible('#tab-operator'), 'the operator tab is hidden from an operator');
  await page.click('#tab-operator');
  await page.waitForSelector('#op-uplink[data-state="online"]', { timeout: 15000 });
  const models = await page.$$eval('#op-models tbody tr', (tr) => tr.map((r) => [r.cells[0].textContent, r.cells[2].textContent]));
  check(models.some(([m, s]) => m === 'machine-failure' && s === 'READY'), 'operator models: ' + JSON.stringify(models));
  await page.waitForFunction(() => /Total/.test(document.getElementById('op-requests').textContent));
  await shot(page, 'operator-online');

  // Cut the uplink: stop the hub. Feedback given now waits in the queue; the view says offline.
  process.kill(config.hub_pid, 'SIGTERM');
  await page.click('button.tab[data-page="score"]');
  await scoreRecord(page);
  report.offline_feedback_id = await sendFeedback(page, page.locator('#record-feedback'), { verdict: 'label', label: 'bearing failure', note: 'found at inspection' });
  await page.click('#tab-operator');
  await page.waitForSelector('#op-uplink[data-state="offline"]', { timeout: 20000 });
  const uplink = await page.textContent('#op-uplink');
  check(/offline/.test(uplink), 'uplink text: ' + uplink);
  await shot(page, 'operator-offline');

  // A tablet at the machine: nothing wider than the screen.
  await page.setViewportSize({ width: 768, height: 1024 });
  await page.click('button.tab[data-page="score"]');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the page is ${overflow}px wider than a tablet`);
  await shot(page, 'tablet');
  check(errors.length === 0, 'console errors: ' + errors.join(' | '));
  await context.close();
} catch (e) {
  failures.push('exception: ' + (e.stack || e));
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join('\n'));
  process.exit(1);
}
console.log(JSON.stringify(report));
