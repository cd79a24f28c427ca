// Drives the hub dashboard in headless Chromium (the system's, via playwright-core; no
// browser download). Invoked by crates/ganglion-hub/tests/browser.rs, which seeds a store,
// starts the hub and passes:
//   HUB_URL          the hub's base URL (http://127.0.0.1:PORT/)
//   EXPECT           JSON: {netuid, miners: [hotkey…], bad_miner, request_id, live_id, compute_netuid,
//                    reward_netuid, evaluation_netuid}
//   SCREENSHOT_DIR   where to write hub-*.png
//   CHROMIUM         the browser binary (default /usr/bin/chromium)
//   USER_DATA_DIR    a fresh profile directory
// Protocol with the Rust side: prints `LIVE_READY` once the overview is up, then waits for
// the row with id EXPECT.live_id to appear in the live feed. Exits non-zero on any failure.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const hub = process.env.HUB_URL;
const expect = JSON.parse(process.env.EXPECT || '{}');
const shots = process.env.SCREENSHOT_DIR;
const userDataDir = process.env.USER_DATA_DIR;
if (!hub || !shots || !userDataDir || !expect.miners) {
  console.error('HUB_URL, EXPECT, SCREENSHOT_DIR and USER_DATA_DIR are required');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  viewport: { width: 1400, height: 1000 },
  timeout: 60000,
});
const foreign = [];
const consoleErrors = [];
const hubOrigin = new URL(hub).origin;
let exitCode = 0;
try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('request', req => { if (!req.url().startsWith(hubOrigin) && !req.url().startsWith('data:')) foreign.push(req.url()); });
  page.on('console', msg => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  page.on('pageerror', err => consoleErrors.push(String(err)));

  // Waits until the page rendered for `url`'s hash is ready: after a same-document
  // navigation the previous page's `ready` stays 'true' until the hashchange handler runs,
  // so `route` (the hash the rendered page belongs to) must match too.
  const visit = async url => {
    await page.goto(url);
    await page.waitForFunction(h => document.body.dataset.route === h && document.body.dataset.ready === 'true', new URL(url).hash);
  };
  const pathLengths = () => page.$$eval('svg.chart path.line', ps => ps.map(p => (p.getAttribute('d') || '').length));

  // Overview: the metagraph table lists every seeded miner, and a plot rendered.
  await visit(`${hub}#/s/${expect.netuid}`);
  await page.waitForSelector('#metagraph-table tbody tr');
  const listed = await page.$$eval('#metagraph-table a[title]', as => as.map(a => a.getAttribute('title')));
  for (const hotkey of expect.miners) check(listed.includes(hotkey), `overview lists miner ${hotkey}`);
  const overviewPaths = await pathLengths();
  check(overviewPaths.some(n => n > 20), `a plot path has data on the overview (lengths ${overviewPaths})`);
  const badge = await page.textContent('#chain-badge');
  await page.screenshot({ path: join(shots, 'hub-overview.png'), fullPage: true });

  // Sorting by incentive puts the highest first when clicked twice (descending).
  const header = page.locator('#metagraph-table th', { hasText: 'Incentive' });
  await header.click();
  await header.click();
  const firstIncentive = await page.$eval('#metagraph-table tbody tr td:nth-child(5)', td => Number(td.textContent));
  const allIncentives = await page.$$eval('#metagraph-table tbody tr td:nth-child(5)', tds => tds.map(td => Number(td.textContent)));
  check(firstIncentive === Math.max(...allIncentives), 'incentive sorts descending');
  // Filtering by a hotkey leaves one row.
  await page.fill('input[type=search]', expect.miners[0].slice(0, 20));
  const filtered = await page.$$eval('#metagraph-table tbody tr', trs => trs.length);
  check(filtered === 1, `filter leaves one row (got ${filtered})`);
  await page.fill('input[type=search]', '');

  // Live: the Rust side inserts a record now; it shows up in the live feed without reload.
  await page.waitForFunction(() => document.getElementById('live-badge').classList.contains('live'));
  console.log('LIVE_READY');
  await page.waitForSelector(`.feed tr[data-id="${expect.live_id}"]`, { timeout: 30000 });
  await page.screenshot({ path: join(shots, 'hub-overview-live.png'), fullPage: true });

  // Miner page: failure causes front and centre, four plots.
  await visit(`${hub}#/s/${expect.netuid}/m/${expect.bad_miner}`);
  await page.waitForSelector('.causes li');
  const why = await page.textContent('main');
  check(why.includes('Why this miner scores'), 'miner page explains the score');
  const causes = await page.$$eval('.causes li', lis => lis.length);
  check(causes > 0, 'the bad miner has failure causes listed');
  const minerPaths = await pathLengths();
  check(minerPaths.filter(n => n > 20).length >= 3, `miner plots have data (lengths ${minerPaths})`);
  await page.screenshot({ path: join(shots, 'hub-miner.png'), fullPage: true });

  // Request page: prompt, sampling parameters, response, verification detail.
  await visit(`${hub}#/r/${expect.request_id}`);
  const request = await page.textContent('main');
  for (const part of ['Prompt', 'Sampling parameters', 'temperature', 'Response', 'Verification detail', 'Seed']) {
    check(request.includes(part), `request page shows ${part}`);
  }
  check(request.includes(expect.request_seed), `request page shows the exact 64-bit seed ${expect.request_seed}`);
  await page.screenshot({ path: join(shots, 'hub-request.png'), fullPage: true });

  // Compute view.
  await visit(`${hub}#/s/${expect.compute_netuid}/compute`);
  await page.waitForSelector('table tbody tr.clickable');
  const computePaths = await pathLengths();
  check(computePaths.some(n => n > 20), 'compute plots have data');
  await page.screenshot({ path: join(shots, 'hub-compute.png'), fullPage: true });

  // Reward subnet: a histogram per series with bars, the uid list, and a uid's history plots.
  await visit(`${hub}#/s/${expect.reward_netuid}/reward`);
  await page.waitForSelector('#reward-uids tbody tr.clickable');
  const histograms = await page.$$eval('#reward-histograms .histogram', cards => cards.map(c => c.querySelectorAll('rect.bar').length));
  check(histograms.length >= 2 && histograms.every(n => n > 0), `reward histograms have bars (${histograms})`);
  await page.screenshot({ path: join(shots, 'hub-reward.png'), fullPage: true });
  await page.click('#reward-uids tbody tr.clickable >> nth=0');
  // `route` is the hash the rendered page belongs to: after the click the hash changes at
  // once, but the previous page's `ready` stays 'true' until the hashchange handler runs.
  await page.waitForFunction(() => (document.body.dataset.route || '').includes('/reward/') && document.body.dataset.ready === 'true');
  const rewardPaths = await pathLengths();
  check(rewardPaths.filter(n => n > 20).length >= 2, `reward uid plots have data (lengths ${rewardPaths})`);
  await page.screenshot({ path: join(shots, 'hub-reward-uid.png'), fullPage: true });

  // Model evaluation: the latest round's table (a rejected uid with its cause) and a uid's plots.
  await visit(`${hub}#/s/${expect.evaluation_netuid}/evaluation`);
  await page.waitForSelector('#evaluation-round tbody tr.clickable');
  const round = await page.textContent('#evaluation-round');
  check(round.includes('rejected') && round.includes('does not match'), 'the latest round shows the rejected uid and its cause');
  const weightBars = await page.$$eval('rect.bar', rs => rs.length);
  check(weightBars > 0, 'the weight and loss bar charts have bars');
  await page.screenshot({ path: join(shots, 'hub-evaluation.png'), fullPage: true });
  await visit(`${hub}#/s/${expect.evaluation_netuid}/evaluation/0`);
  const evalPaths = await pathLengths();
  check(evalPaths.filter(n => n > 20).length >= 3, `loss, win rate and weight plots have data (lengths ${evalPaths})`);
  await page.screenshot({ path: join(shots, 'hub-evaluation-uid.png'), fullPage: true });

  check(foreign.length === 0, `no requests outside the hub (got ${foreign.join(', ')})`);
  check(consoleErrors.length === 0, `no console errors (got ${consoleErrors.join(' | ')})`);
  console.log(JSON.stringify({ ok: true, listed: listed.length, chain_badge: badge, screenshots: shots }));
} catch (err) {
  console.error(String(err && err.stack ? err.stack : err));
  exitCode = 1;
} finally {
  await context.close();
}
process.exit(exitCode);
