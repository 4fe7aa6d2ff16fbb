// Drives the creators' page in Debian's Chromium: sign in, upload a clip, watch the live
// progress, read the results, save hashtag feedback, and take screenshots at desktop and phone
// sizes. Run by tests/tests/e2e/browser.rs, which starts the api and a worker and passes:
//   REELQ_BASE_URL   the api, e.g. http://127.0.0.1:41234
//   REELQ_API_KEY    a key of the tenant to sign in as
//   REELQ_CLIP       a video file to upload
//   REELQ_OFFERED    JSON: the checkboxes the page must show, in order, as the catalogue has
//                    them ([{name, title, summary, offer}]); the job runs with their defaults
//   REELQ_ARTIFACTS  folder for screenshots (default: target/browser-artifacts)
//   CHROMIUM         the browser (default: /usr/bin/chromium)
// Exits non-zero, with the reason, on the first failed check.

import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const base = required('REELQ_BASE_URL').replace(/\/$/, '');
const key = required('REELQ_API_KEY');
const clip = required('REELQ_CLIP');
const expected = JSON.parse(required('REELQ_OFFERED'));
const artifacts = resolve(process.env.REELQ_ARTIFACTS || join(here, '..', '..', 'target', 'browser-artifacts'));
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const JOB_TIMEOUT_MS = Number(process.env.REELQ_JOB_TIMEOUT_MS || 240_000);

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must be set`);
  return v;
}

function log(...args) {
  console.log('[page.test]', ...args);
}

const problems = [];
const userDataDir = await mkdtemp(join(tmpdir(), 'reelq-chromium-'));
await mkdir(artifacts, { recursive: true });
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});
const summary = { screenshots: [] };

try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(30_000);
  // Any script error, failed check of the CSP, or request to another origin fails the run.
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Expected: the refused sign-in (401), the feedback not yet saved (404), the event stream
    // blocked on purpose to exercise the polling fallback.
    if (m.type() === 'error' && !/status of 40[14]|ERR_FAILED/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(base) && !url.startsWith('blob:') && !url.startsWith('data:')) problems.push(`request to another origin: ${url}`);
  });

  // The page is public and locked down.
  const resp = await page.goto(`${base}/`);
  assert.equal(resp.status(), 200);
  const csp = resp.headers()['content-security-policy'] || '';
  assert.match(csp, /default-src 'self'/, 'a strict Content-Security-Policy');
  assert.match(csp, /script-src 'self'/);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();

  // A wrong key is refused, with a message.
  await page.getByLabel('API key').fill('rq_wrong_key-that-does-not-exist');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not accepted' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('reelq.apiKey')), null);

  // The right key signs in and lives in session storage only. The list of analyses cannot be
  // had at first: the page says so and offers to try again.
  await page.route('**/v1/analyses', (route) => route.abort());
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Analyse a video' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('reelq.apiKey')), key);
  assert.equal(await page.evaluate(() => Object.keys(localStorage).length), 0, 'nothing in local storage');
  await page.locator('#analysis-list [role=alert]').filter({ hasText: 'Could not load what this server can look at' }).waitFor();
  await page.unroute('**/v1/analyses');
  await page.locator('#analysis-list').getByRole('button', { name: 'Try again' }).click();

  // The checkboxes come from the server's catalogue: labels, hints and default ticks as it
  // says. They are left as they are: the job runs with the page's defaults.
  await page.locator('#analysis-list input[type=checkbox]').first().waitFor();
  const boxes = await page.locator('#analysis-list .check').evaluateAll((els) => els.map((e) => {
    const input = e.querySelector('input[type=checkbox]');
    return { name: input.value, title: input.labels[0]?.textContent, summary: e.getAttribute('title'), ticked: input.checked };
  }));
  const offered = boxes.map((b) => b.name);
  log('offered analyses:', boxes.map((b) => `${b.name}${b.ticked ? ' (ticked)' : ''}`).join(', '));
  assert.deepEqual(boxes, expected.map((a) => ({ name: a.name, title: a.title, summary: a.summary, ticked: a.offer === 'ticked' })),
    'the checkboxes are the catalogue\'s offered analyses, labelled and ticked as it says');
  assert.ok(!offered.includes('train'), 'internal analyses are never offered');
  const ticked = boxes.filter((b) => b.ticked).map((b) => b.name);
  summary.analyses = ticked;

  // Upload with a progress bar, then follow the live progress.
  await page.setInputFiles('#video-file', clip);
  await page.getByText(/MB$/).first().waitFor();
  // The caption and who is posting travel with the job as its options.
  await page.getByText('Caption and creator (optional)').click();
  await page.getByLabel('The caption you will post it with').fill('Weeknight pasta #cooking');
  await page.getByLabel('Who is posting').fill('chef.anna');
  const posted = page.waitForRequest((r) => r.url().endsWith('/v1/jobs') && r.method() === 'POST');
  await page.getByRole('button', { name: 'Upload and analyse' }).click();
  const sent = JSON.parse((await posted).postData());
  assert.deepEqual(sent.options, { caption: 'Weeknight pasta #cooking', creator: 'chef.anna' }, 'caption and creator are sent');
  await page.locator('#upload-text').filter({ hasText: 'Uploaded' }).waitFor();
  assert.equal(await page.locator('#upload-progress').evaluate((e) => e.value), 100);
  await page.locator('#progress-panel').waitFor({ state: 'visible' });
  await page.waitForFunction(() => Number(document.getElementById('progress-panel').dataset.events) >= 2, null, { timeout: JOB_TIMEOUT_MS });
  log('progress events are arriving');
  await page.locator('#results[data-status]').waitFor({ state: 'visible', timeout: JOB_TIMEOUT_MS });
  const status = await page.locator('#results').getAttribute('data-status');
  const events = Number(await page.locator('#progress-panel').getAttribute('data-events'));
  const source = await page.locator('#progress-panel').getAttribute('data-source');
  const stages = await page.locator('#stage-log li').allTextContents();
  summary.status = status;
  summary.events = events;
  summary.stages = stages;
  log(`job ${status} after ${events} events (${source}); stages: ${stages.join(' → ')}`);
  assert.equal(status, 'succeeded', `the job succeeded (cards: ${await page.locator('#cards').innerText()})`);
  assert.equal(source, 'stream', 'progress came over the event stream, not the polling fallback');
  assert.ok(stages.length >= 2, 'at least two stages were shown');
  assert.equal(stages.at(-1), 'Done');
  assert.equal(await page.locator('#job-progress').evaluate((e) => e.value), 100);
  const live = await page.locator('#job-stage').getAttribute('aria-live');
  assert.equal(live, 'polite', 'progress is announced');
  const jobId = await page.locator('#results').getAttribute('data-job-id');

  // Results: a card made for people for every ticked analysis, and no raw JSON anywhere.
  for (const a of ticked) await page.locator(`#cards .card-${a}`).waitFor();
  const raw = await page.locator('#cards pre.json').evaluateAll((els) => els.map((e) => e.closest('.card')?.dataset.analysis));
  assert.deepEqual(raw, [], 'no result is shown as raw JSON');
  summary.cards = await page.locator('#cards .card').evaluateAll((els) => els.map((e) => e.dataset.analysis));
  if (ticked.includes('virality')) {
    // The test's registry has no promoted regressor: nothing has been pulled to train one.
    const text = await page.locator('.card-virality').innerText();
    assert.match(text, /Not enough pulled data yet: the scheduler trains this model once enough videos are pulled/);
    summary.virality = text;
  }
  if (ticked.includes('music')) {
    // Nor are there pulled videos to take sounds from: the card says why there are no tracks.
    const text = await page.locator('.card-music').innerText();
    assert.match(text, /no specific hashtags to match music by|suggestions appear once videos with these hashtags are pulled/);
    summary.music = text;
  }

  const quality = page.locator('.card-quality');
  await quality.waitFor();
  const overall = Number(await quality.locator('.score-num').textContent());
  assert.ok(overall >= 0 && overall <= 100, `overall quality ${overall}`);
  assert.ok((await quality.locator('.score-list li').count()) >= 5, 'sub-scores listed');
  assert.ok((await quality.locator('.advice li').count()) >= 1, 'advice shown');
  summary.quality = overall;

  if (ticked.includes('probe')) await page.locator('.card-probe').getByText('Picture').waitFor();
  if (ticked.includes('audio')) await page.locator('.card-audio').waitFor();
  if (ticked.includes('ocr')) await page.locator('.card-ocr').waitFor();

  if (ticked.includes('transcript')) {
    const transcript = page.locator('.card-transcript');
    await transcript.waitFor();
    const seek = transcript.locator('.segments button.time');
    assert.ok((await seek.count()) >= 1, 'timed transcript segments');
    await page.locator('#player').evaluate((v) => v.readyState >= 1 || new Promise((r) => v.addEventListener('loadedmetadata', r, { once: true })));
    const target = await seek.last().textContent();
    await seek.last().click();
    const at = await page.locator('#player').evaluate((v) => v.currentTime);
    const [m, s] = target.split(':').map(Number);
    assert.ok(Math.abs(at - (m * 60 + s)) < 1.01, `the player jumped to ${target} (at ${at})`);
    summary.transcript = await transcript.locator('.seg-text').allTextContents();
  }

  if (ticked.includes('hashtags')) {
    const card = page.locator('.card-hashtags');
    await card.waitFor();
    const boxes = card.locator('.tags input[type=checkbox]');
    const n = await boxes.count();
    assert.ok(n >= 2, `at least two suggestions (got ${n})`);
    for (let i = 0; i < n; i++) await boxes.nth(i).setChecked(i < 2);
    const chosen = [await boxes.nth(0).inputValue(), await boxes.nth(1).inputValue()];
    await card.getByLabel('Add your own').fill('MyOwnTag');
    await card.getByRole('button', { name: 'Add', exact: true }).click();
    chosen.push('#myowntag');
    await card.getByRole('button', { name: 'Save the tags I’ll use' }).click();
    await card.locator('.save-status').filter({ hasText: 'Saved 3 tags' }).waitFor();
    const stored = await page.evaluate(async ([id, k]) => {
      const r = await fetch(`/v1/jobs/${id}/feedback`, { headers: { Authorization: `Bearer ${k}` } });
      return r.json();
    }, [jobId, key]);
    assert.deepEqual(stored.hashtags, chosen, 'the ticked tags were stored');
    summary.feedback = stored.hashtags;
  }

  // History shows the job; opening it renders the same results.
  const entry = page.locator(`#history-list [data-job-id="${jobId}"]`);
  await entry.filter({ hasText: 'succeeded' }).waitFor();

  // Every form control has a label; the layout fits a phone without sideways scrolling.
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((e) => e.type !== 'hidden' && !e.classList.contains('offscreen') && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map((e) => e.id || e.outerHTML));
  assert.deepEqual(unlabelled, [], 'every control is labelled');

  const desktop = join(artifacts, 'page-1280x800.png');
  await page.screenshot({ path: desktop, fullPage: true });
  summary.screenshots.push(desktop);
  for (const [w, hgt] of [[390, 844], [360, 740]]) {
    await page.setViewportSize({ width: w, height: hgt });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no sideways scrolling at ${w} px (overflow ${overflow} px)`);
  }
  await page.setViewportSize({ width: 390, height: 844 });
  await entry.click();
  await page.locator('#results[data-status=succeeded] .card-quality').waitFor();
  const phone = join(artifacts, 'page-390x844.png');
  await page.screenshot({ path: phone, fullPage: true });
  summary.screenshots.push(phone);

  // Results the worker here does not produce (a trained regressor, pulled music, a soundtrack)
  // render from the shapes the worker writes, and only what no renderer recognises falls back
  // to formatted JSON.
  const assets = await page.locator('link[rel=stylesheet]').getAttribute('href');
  const rendered = await page.evaluate(async (src) => {
    const { renderResults } = await import(src);
    const ctx = { player: null, savedTags: [], hasAudio: () => false, saveFeedback: async () => ({}), makeIt: () => {} };
    const show = (results) => renderResults(results, ctx).map((c) => ({
      key: c.dataset.analysis, text: c.textContent, json: Boolean(c.querySelector('pre.json')), make: c.querySelector('button')?.disabled,
    }));
    return {
      found: show({
        virality: { payload: {
          estimate: { virality: 3.2, log_virality: 1.4, percentile: 80, expected_views: { low: 1000, expected: 2500, high: 5000 } },
          model_version: 'virality-7', correlations: { corr_likes: 0.8, corr_comments: 0.5, corr_shares: 0.4 }, held_out_spearman: 0.41,
        } },
        music: { payload: {
          hashtags: ['pasta', 'cooking'], region: 'US', videos_considered: 12,
          recommendations: [{ music_id: 'm1', name: 'Song', author: 'Someone', score: 123456, videos: 3 }],
        } },
        embeddings: { payload: {
          text: { model: { name: 'minilm-l6-v2', version: '1', sha256: 'x' }, dim: 384, vector: [0.1, 0.2], sources: ['transcript', 'caption'], items: 80 },
          image: null,
        } },
        mux: { payload: { output_key: 'outputs/t/j.mp4', url: 'http://127.0.0.1:9/o.mp4', bytes: 2097152, duration_secs: 6, mode: 'mix' } },
        quality: { payload: 'not a report' },
        surprise: { payload: { answer: 42 } },
      }),
      unreadable: show({ virality: { payload: { estimate: null, model_version: 'virality-7', reason: 'the video has no speech, on-screen text or caption to estimate from' } } }),
      untagged: show({ music: { payload: { hashtags: [], region: null, recommendations: [], videos_considered: 0 } } }),
      unpulled: show({ music: { payload: { hashtags: ['pasta'], region: 'GB', recommendations: [], videos_considered: 0 } } }),
    };
  }, assets.replace('style.css', 'render.js'));
  const byKey = Object.fromEntries(rendered.found.map((c) => [c.key, c]));
  assert.match(byKey.virality.text, /Higher than 80 %/);
  assert.match(byKey.virality.text, /1K to 5K/);
  assert.match(byKey.virality.text, /virality-7/);
  assert.match(byKey.music.text, /Song · Someone/);
  assert.match(byKey.music.text, /used by 3 pulled videos · engagement 123\.5K/);
  assert.equal(byKey.music.make, true, '"Make it" waits for a soundtrack');
  assert.match(byKey.embeddings.text, /Text: 384 numbers from the transcript, the caption/);
  assert.match(byKey.mux.text, /Download the MP4/);
  for (const k of ['virality', 'music', 'embeddings', 'mux']) assert.equal(byKey[k].json, false, `${k} as a card`);
  assert.ok(byKey.quality.json && byKey.surprise.json, 'unrecognised results as JSON');
  assert.match(rendered.unreadable[0].text, /No estimate for this video: the video has no speech/);
  assert.match(rendered.untagged[0].text, /no specific hashtags to match music by/);
  assert.match(rendered.unpulled[0].text, /no pulled videos with #pasta in GB so far\. The scheduler pulls TikTok data; suggestions appear once videos with these hashtags are pulled/);
  assert.ok([...rendered.unreadable, ...rendered.untagged, ...rendered.unpulled].every((c) => !c.json));

  // When the event stream cannot be had, the page falls back to polling the job.
  await page.route('**/v1/jobs/*/events', (route) => route.abort());
  for (const a of offered) await page.locator(`#analysis-${a}`).setChecked(a === 'probe');
  await page.getByRole('button', { name: 'Upload and analyse' }).click();
  await page.locator('#progress-panel[data-source=poll]').waitFor({ timeout: JOB_TIMEOUT_MS });
  await page.locator('#results[data-status=succeeded] .card-probe').waitFor({ timeout: JOB_TIMEOUT_MS });
  summary.fallback = 'polling';
  await page.unroute('**/v1/jobs/*/events');

  // Signing out forgets the key.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('reelq.apiKey')), null);

  assert.deepEqual(problems, [], 'no script errors, CSP violations or foreign requests');
  await writeFile(join(artifacts, 'summary.json'), JSON.stringify(summary, null, 2));
  log('summary', JSON.stringify(summary));
} catch (e) {
  console.error('[page.test] FAILED:', e && e.stack ? e.stack : e);
  if (problems.length) console.error('[page.test] also seen:', problems.join('\n'));
  try {
    const page = context.pages()[0];
    if (page) await page.screenshot({ path: join(artifacts, 'failure.png'), fullPage: true });
  } catch { /* best effort */ }
  process.exitCode = 1;
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}
