// Loads the hub dashboard in headless Chromium and checks that it shows what the runner
// uploaded, with no console errors and no request leaving 127.0.0.1; saves screenshots.
//   node dashboard.mjs <hub url> <read token> <artifacts dir> <expectations json>
import { chromium } from 'playwright-core';
import { join } from 'node:path';

const [url, token, artifacts, expectationsJson] = process.argv.slice(2);
const expected = JSON.parse(expectationsJson);
const failures = [];
const check = (ok, message) => { if (!ok) failures.push(message); };

// playwright-core gives Chromium a fresh, temporary --user-data-dir of its own.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  for (const [name, viewport] of [['desktop', { width: 1280, height: 1000 }], ['phone', { width: 390, height: 844 }]]) {
    const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const errors = [];
    page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });
    page.on('pageerror', (err) => errors.push(String(err)));
    page.on('request', (req) => {
      const host = new URL(req.url()).hostname;
      if (host !== '127.0.0.1') errors.push('request left loopback: ' + req.url());
    });
    await page.goto(`${url}/#token=${encodeURIComponent(token)}`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 20000 });
    const sites = await page.$$eval('#sites tbody tr', (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
    for (const site of expected.sites) {
      check(sites.some((r) => r[0] === site.name && r[1] === site.sync && r[3] === String(site.events)),
        `${name}: sites table lacks ${JSON.stringify(site)}; has ${JSON.stringify(sites)}`);
    }
    const anomalies = await page.$$eval('#anomalies tbody tr', (rows) => rows.map((r) => r.cells[4].textContent));
    check(anomalies.length === Math.min(20, expected.anomalies), `${name}: ${anomalies.length} anomaly rows, want ${expected.anomalies}`);
    check(anomalies[0] === expected.top_anomaly, `${name}: top anomaly ${anomalies[0]}, want ${expected.top_anomaly}`);
    const versions = await page.$$eval('#versions tbody tr', (rows) => rows.map((r) => r.cells[2].textContent));
    check(JSON.stringify([...new Set(versions)].sort()) === JSON.stringify(expected.versions),
      `${name}: versions ${JSON.stringify(versions)}, want ${JSON.stringify(expected.versions)}`);
    const chartPoints = await page.evaluate(() => {
      const c = Chart.getChart('events-chart');
      return c ? c.data.datasets.reduce((n, d) => n + d.data.reduce((a, v) => a + (v || 0), 0), 0) : -1;
    });
    check(chartPoints === expected.events, `${name}: events chart sums to ${chartPoints}, want ${expected.events}`);
    const accuracyLines = await page.evaluate(() => Chart.getChart('accuracy-chart')?.data.datasets.length ?? -1);
    check(accuracyLines >= 1, `${name}: no accuracy line`);
    // Readable on a phone: nothing wider than the screen.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${name}: the page is ${overflow}px wider than the viewport`);
    // The site filter narrows the tables.
    await page.selectOption('#site', expected.sites[0].name);
    await page.waitForFunction((s) => [...document.querySelectorAll('#sites tbody tr')].every((r) => r.cells[0].textContent === s)
      && document.querySelectorAll('#sites tbody tr').length === 1, expected.sites[0].name, { timeout: 10000 });
    await page.selectOption('#site', '');
    await page.waitForFunction(() => document.querySelectorAll('#sites tbody tr').length > 1, null, { timeout: 10000 });
    await page.screenshot({ path: join(artifacts, `hub-dashboard-${name}.png`), fullPage: true });
    check(errors.length === 0, `${name}: console errors: ${errors.join(' | ')}`);
    await context.close();
  }
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join('\n'));
  process.exit(1);
}
console.log('dashboard ok; screenshots in ' + artifacts);
