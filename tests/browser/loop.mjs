// The browser half of the end-to-end loop test (tests/blackbox/test_loop_e2e.py): once the edge
// has promoted a retrained model, the edge web app (operator view, dev mode on loopback) and the
// hub's global dashboard, in headless Chromium, must both show the new version. No console
// errors, no request off loopback; screenshots.
//   node loop.mjs '<config json>'
// config: {edge_url, hub_url, hub_token, site, artifacts}. The version to look for is the one the
// edge serves now (GET /v2/deployment, waiting until no canary runs: its local version and
// digest), which must be a retrained one (> 1). The caller retries when a rollout started while
// the pages loaded. Prints one JSON line: {"version": N, "digest": "sha256:..."}.
import { chromium } from 'playwright-core';
import { join } from 'node:path';

const config = JSON.parse(process.argv[2]);
const failures = [];
const check = (ok, message) => { if (!ok) failures.push(message); };
// Between rollouts (no canary running), so that the version the edge follows is the one served.
let served;
for (const deadline = Date.now() + 90000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 500))) {
  served = (await (await fetch(config.edge_url + '/v2/deployment')).json()).models[0];
  if ((served.rollout?.state ?? 'none') === 'none') break;
}
Object.assign(config, { model: served.name, version: served.local_version, digest: served.digest || '' });
if (!(config.version > 1) || !config.digest) {
  console.error(`the edge serves ${JSON.stringify(served)}: no retrained version to look for`);
  process.exit(1);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});

async function open(url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });
  page.on('pageerror', (err) => errors.push(String(err)));
  page.on('request', (req) => {
    const target = new URL(req.url());
    if (target.protocol.startsWith('http') && target.hostname !== '127.0.0.1') errors.push('request left loopback: ' + req.url());
  });
  await page.goto(url);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 20000 });
  return { page, errors, context };
}

try {
  // --- the edge web app: the model picker and the operator's table of versions -----------------
  {
    const { page, errors, context } = await open(config.edge_url + '/ui/');
    const option = await page.$$eval('#model option', (options) => options.map((o) => o.textContent));
    check(option.includes(`${config.model} (v${config.version})`),
      `edge: the model picker shows ${JSON.stringify(option)}, want "${config.model} (v${config.version})"`);
    check(await page.isVisible('#tab-operator'), 'edge: no operator tab in dev mode');
    await page.click('#tab-operator');
    const want = config.digest.slice(0, 24);
    await page.waitForFunction(([model, version, digest]) => [...document.querySelectorAll('#op-models tbody tr')]
      .some((r) => r.cells[0].textContent === model && r.cells[1].textContent === version
        && r.cells[4].textContent.startsWith(digest)), [config.model, String(config.version), want], { timeout: 15000 })
      .catch(() => {});
    const rows = await page.$$eval('#op-models tbody tr', (trs) => trs.map((r) => [...r.cells].map((c) => c.textContent)));
    check(rows.some((r) => r[0] === config.model && r[1] === String(config.version) && r[4].startsWith(want)),
      `edge: the operator's models table ${JSON.stringify(rows)} lacks version ${config.version} with digest ${want}`);
    await page.screenshot({ path: join(config.artifacts, 'loop-edge-operator.png'), fullPage: true });
    check(errors.length === 0, `edge: console errors: ${errors.join(' | ')}`);
    await context.close();
  }
  // --- the hub's dashboard: versions per site, the job that made it, accuracy per version ------
  {
    const { page, errors, context } = await open(`${config.hub_url}/#token=${encodeURIComponent(config.hub_token)}`);
    // The dashboard refreshes live: wait for the new version's events to be listed.
    await page.waitForFunction(([site, model, version]) => [...document.querySelectorAll('#versions tbody tr')]
      .some((r) => r.cells[0].textContent === site && r.cells[1].textContent === model && r.cells[2].textContent === version),
    [config.site, config.model, String(config.version)], { timeout: 30000 }).catch(() => {});
    const versions = await page.$$eval('#versions tbody tr', (trs) => trs.map((r) => [...r.cells].map((c) => c.textContent)));
    check(versions.some((r) => r[0] === config.site && r[1] === config.model && r[2] === String(config.version)),
      `hub: versions per site ${JSON.stringify(versions)} lack ${config.site} ${config.model} v${config.version}`);
    const jobs = await page.$$eval('#jobs tbody tr', (trs) => trs.map((r) => [...r.cells].map((c) => c.textContent)));
    check(jobs.some((r) => r[3] === 'succeeded' && r[5] === 'passed' && config.digest.startsWith(r[9])),
      `hub: no succeeded job whose gate passed with digest ${config.digest.slice(0, 19)} in ${JSON.stringify(jobs)}`);
    await page.waitForFunction((label) => (Chart.getChart('accuracy-chart')?.data.datasets || [])
      .some((d) => d.label === label), `${config.model} v${config.version}`, { timeout: 30000 }).catch(() => {});
    const lines = await page.evaluate(() => (Chart.getChart('accuracy-chart')?.data.datasets || [])
      .map((d) => [d.label, d.data.filter((v) => v !== null).length]));
    check(lines.some(([label, points]) => label === `${config.model} v${config.version}` && points > 0),
      `hub: the accuracy chart has no line for ${config.model} v${config.version}: ${JSON.stringify(lines)}`);
    await page.screenshot({ path: join(config.artifacts, 'loop-hub-dashboard.png'), fullPage: true });
    check(errors.length === 0, `hub: console errors: ${errors.join(' | ')}`);
    await context.close();
  }
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join('\n'));
  process.exit(1);
}
console.log(JSON.stringify({ version: config.version, digest: config.digest }));
