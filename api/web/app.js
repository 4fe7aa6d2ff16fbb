// The creators' page: sign in with an API key, upload a video, choose analyses, follow the job
// live, read the results, and tell reelq which hashtags you will use.

import { client } from './api.js';
import { h, renderResults } from './render.js';

const KEY_STORAGE = 'reelq.apiKey';
const STAGES = {
  starting: 'Starting',
  downloading: 'Fetching your video',
  probe: 'Reading the file',
  decode: 'Watching and listening',
  quality: 'Checking picture and sound quality',
  ocr: 'Reading on-screen text',
  audio: 'Listening for speech',
  transcript: 'Writing down what is said',
  embeddings: 'Indexing the video',
  hashtags: 'Finding hashtags',
  music: 'Finding music that fits',
  virality: 'Estimating reach',
  safety: 'Checking content safety',
  mux: 'Putting your video together',
  waiting_to_retry: 'A hiccup on our side: trying again',
};
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

const $ = (id) => document.getElementById(id);
const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

let api = null;
// The analyses the server lists (`GET /v1/analyses`), by name, once signed in.
let catalogue = new Map();
let chosen = null;
let following = null;
let shownJob = null;
// Object URLs of the files uploaded from this tab, by video id, for the player.
const localVideos = new Map();

// --- sign in -------------------------------------------------------------------------------

async function signIn(key, { quiet = false } = {}) {
  const err = $('sign-in-error');
  err.textContent = '';
  const c = client(key);
  let page;
  try {
    page = await c.get('/v1/jobs?limit=20');
  } catch (e) {
    sessionStorage.removeItem(KEY_STORAGE);
    if (!quiet) err.textContent = e.status === 401 ? 'That key was not accepted. Check it and try again.' : e.message;
    return;
  }
  api = c;
  sessionStorage.setItem(KEY_STORAGE, key);
  $('api-key').value = '';
  $('sign-in').hidden = true;
  $('workspace').hidden = false;
  $('sign-out').hidden = false;
  renderHistory(page.jobs);
  $('new-job-title').setAttribute('tabindex', '-1');
  $('new-job-title').focus();
  // History names analyses by their titles once the server has listed them.
  if (await loadAnalyses()) renderHistory(page.jobs);
}

function signOut() {
  following?.abort();
  api = null;
  catalogue = new Map();
  $('analysis-list').replaceChildren();
  shownJob = null;
  sessionStorage.removeItem(KEY_STORAGE);
  $('workspace').hidden = true;
  $('sign-out').hidden = true;
  $('sign-in').hidden = false;
  $('results').hidden = true;
  $('progress-panel').hidden = true;
  $('api-key').focus();
}

// --- choosing what to run --------------------------------------------------------------------

/**
 * The checkboxes, from the analyses this server lists: those the page offers (`ticked` or
 * `unticked`), ticked as the server says. The rest are never chosen here (`from_result` ones
 * start from a result card). Returns whether the list came.
 */
async function loadAnalyses() {
  const box = $('analysis-list');
  box.replaceChildren(h('p', { class: 'help' }, 'Loading what this server can look at…'));
  let listed;
  try {
    listed = (await api.get('/v1/analyses')).analyses;
    if (!Array.isArray(listed)) throw new Error('the server sent no list');
  } catch (e) {
    catalogue = new Map();
    box.replaceChildren(
      h('p', { class: 'error', role: 'alert' }, `Could not load what this server can look at: ${e.message}`),
      h('button', { type: 'button', class: 'secondary small', onclick: loadAnalyses }, 'Try again'));
    return false;
  }
  catalogue = new Map(listed.map((a) => [a.name, a]));
  const offered = listed.filter((a) => a.offer === 'ticked' || a.offer === 'unticked');
  if (!offered.length) {
    box.replaceChildren(h('p', { class: 'help' }, 'This server offers nothing to choose here.'));
    return true;
  }
  box.replaceChildren(...offered.map((a) => {
    const id = `analysis-${a.name}`;
    return h('div', { class: 'check', title: a.summary },
      h('input', { type: 'checkbox', id, name: 'analyses', value: a.name, checked: a.offer === 'ticked' }),
      h('label', { for: id }, a.title || a.name));
  }));
  return true;
}

/** The names of `analyses` as people read them, where the server gave a title. */
function titled(analyses) {
  return analyses.map((n) => catalogue.get(n)?.title || n).join(', ');
}

function chooseFile(file) {
  const info = $('file-info');
  if (!file) return;
  const looksLikeVideo = file.type.startsWith('video/') || /\.(mp4|m4v|mov|webm|mkv)$/i.test(file.name);
  if (!looksLikeVideo) {
    info.textContent = `“${file.name}” is not a video. Choose an MP4, MOV, WebM or MKV file.`;
    info.className = 'help error';
    return;
  }
  chosen = file;
  info.className = 'help';
  info.textContent = `${file.name} · ${(file.size / 1048576).toFixed(1)} MB`;
  $('submit').disabled = false;
}

function wireDropZone() {
  const zone = $('drop-zone');
  const input = $('video-file');
  input.addEventListener('change', () => chooseFile(input.files[0]));
  for (const type of ['dragenter', 'dragover']) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add('over'); });
  }
  for (const type of ['dragleave', 'drop']) zone.addEventListener(type, () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    if (f) chooseFile(f);
  });
}

// --- submitting ------------------------------------------------------------------------------

async function submit(e) {
  e.preventDefault();
  const err = $('job-error');
  err.textContent = '';
  if (!chosen) { err.textContent = 'Choose a video first.'; return; }
  const analyses = [...document.querySelectorAll('input[name=analyses]:checked')].map((b) => b.value);
  if (!analyses.length) { err.textContent = 'Tick at least one thing to look at.'; return; }
  const options = {};
  const caption = $('caption').value.trim();
  if (caption) options.caption = caption;
  const creator = $('creator').value.trim();
  if (creator) {
    if (!/^[A-Za-z0-9._:@-]{1,128}$/.test(creator)) {
      err.textContent = 'Who is posting: use letters, digits and . _ : @ - only.';
      $('creator').focus();
      return;
    }
    options.creator = creator;
  }
  const button = $('submit');
  button.disabled = true;
  const box = $('upload-box');
  const bar = $('upload-progress');
  const text = $('upload-text');
  box.hidden = false;
  bar.value = 0;
  text.textContent = '0 %';
  try {
    const video = await api.upload(chosen, (f) => {
      bar.value = Math.round(f * 100);
      text.textContent = `${Math.round(f * 100)} %`;
    });
    text.textContent = 'Uploaded';
    localVideos.set(video.id, URL.createObjectURL(chosen));
    const job = await api.post('/v1/jobs', { video_id: video.id, analyses, options });
    follow(job);
    refreshHistory();
  } catch (ex) {
    err.textContent = ex.code === 'unknown_analysis' || ex.code === 'invalid_json'
      ? `The server does not offer one of the chosen analyses: ${ex.message}`
      : `Could not start: ${ex.message}`;
  } finally {
    button.disabled = false;
  }
}

// --- following a job -------------------------------------------------------------------------

function resetProgress() {
  const panel = $('progress-panel');
  panel.hidden = false;
  panel.dataset.events = '0';
  panel.dataset.status = '';
  panel.dataset.source = 'stream';
  $('stage-log').replaceChildren();
  $('job-stage').textContent = '';
  $('progress-title').textContent = 'Working on it';
}

function showProgress(p) {
  const panel = $('progress-panel');
  const value = Math.round((Number(p.progress) || 0) * 100);
  $('job-progress').value = value;
  $('job-percent').textContent = `${value} %`;
  panel.dataset.status = p.status;
  const label = p.status === 'queued' ? 'Waiting for a free worker'
    : p.status === 'succeeded' ? 'Done'
    : p.status === 'failed' ? 'Failed'
    : p.status === 'cancelled' ? 'Cancelled'
    : STAGES[p.stage] || (p.stage ? p.stage.replaceAll('_', ' ') : 'Working');
  // The live region changes only when the stage does, so screen readers are not flooded.
  if ($('job-stage').textContent !== label) {
    $('job-stage').textContent = label;
    $('stage-log').append(h('li', { dataset: { stage: p.stage || p.status } }, label));
  }
}

async function poll(id, signal, onEach) {
  for (;;) {
    if (signal.aborted) return null;
    try {
      const job = await api.get(`/v1/jobs/${id}`, signal);
      onEach(job);
      if (TERMINAL.has(job.status)) return job;
    } catch (e) {
      if (signal.aborted) return null;
      if (e.status === 404 || e.status === 401) throw e;
    }
    await sleep(2000, signal);
  }
}

/** Follows a job over its event stream, falling back to polling if the stream drops. */
async function watch(id, signal, onProgress) {
  let done = null;
  let count = 0;
  try {
    for await (const ev of api.events(id, signal)) {
      count += 1;
      if (ev.event === 'progress') onProgress(ev.data, count);
      else if (ev.event === 'done') { done = ev.data; break; }
    }
  } catch (e) {
    if (signal.aborted) return null;
  }
  if (done) return done;
  return poll(id, signal, (job) => onProgress(job, ++count, 'poll'));
}

async function follow(job) {
  following?.abort();
  const ctl = new AbortController();
  following = ctl;
  resetProgress();
  $('results').hidden = true;
  showProgress(job);
  const panel = $('progress-panel');
  const done = await watch(job.id, ctl.signal, (p, count, source) => {
    panel.dataset.events = String(count);
    if (source === 'poll' && panel.dataset.source !== 'poll') {
      panel.dataset.source = 'poll';
      $('stage-log').append(h('li', { class: 'note' }, 'Live updates were interrupted; checking every 2 seconds.'));
    }
    showProgress(p);
  }).catch((e) => { $('job-stage').textContent = `Lost track of the job: ${e.message}`; return null; });
  if (!done || ctl.signal.aborted) return;
  $('progress-title').textContent = done.status === 'succeeded' ? 'Finished' : 'Stopped';
  showProgress({ status: done.status, progress: done.status === 'succeeded' ? 1 : $('job-progress').value / 100 });
  try {
    showJob(await api.get(`/v1/jobs/${job.id}`));
  } catch (e) {
    $('job-error').textContent = `Could not load the results: ${e.message}`;
  }
  refreshHistory();
}

// --- results ---------------------------------------------------------------------------------

async function showJob(job, { focus = true } = {}) {
  shownJob = job;
  const section = $('results');
  const cards = $('cards');
  section.hidden = false;
  section.dataset.jobId = job.id;
  section.dataset.status = job.status;
  const when = new Date(job.created_at).toLocaleString();
  $('results-meta').textContent = `${when} · ${titled(job.analyses)} · ${job.status}`;

  const player = $('player');
  const url = localVideos.get(job.video_id);
  if (url) {
    if (player.src !== url) player.src = url;
    player.hidden = false;
  } else {
    player.removeAttribute('src');
    player.hidden = true;
  }

  if (job.status !== 'succeeded') {
    const msg = job.status === 'failed'
      ? `The analysis failed: ${job.error?.message || 'no reason given'}${job.error?.code ? ` (${job.error.code})` : ''}.`
      : job.status === 'cancelled' ? 'This job was cancelled.' : 'This job has not finished yet.';
    cards.replaceChildren(h('article', { class: 'card card-error' }, h('h3', {}, 'No results'), h('p', {}, msg)));
    if (focus) $('results-title').focus();
    return;
  }

  let savedTags = [];
  if (job.results?.hashtags) {
    try { savedTags = (await api.get(`/v1/jobs/${job.id}/feedback`)).hashtags; } catch { /* none saved yet */ }
  }
  if (shownJob !== job) return;
  const ctx = {
    player: url ? player : null,
    savedTags,
    saveFeedback: (tags) => api.post(`/v1/jobs/${job.id}/feedback`, { hashtags: tags }),
    hasAudio: () => Boolean($('audio-file').files[0]),
    makeIt: (track, out, button) => makeIt(job, track, out, button),
  };
  const rendered = renderResults(job.results, ctx);
  cards.replaceChildren(...(rendered.length ? rendered : [h('p', {}, 'This job produced no results.')]));
  suggestMusic(job, ctx, cards);
  // Moving focus to the results tells keyboard and screen-reader users they have arrived.
  if (focus) $('results-title').focus();
}

/**
 * Without a `music` result, asks the trends route for sounds that videos with the job's top
 * hashtags use. Quietly shows nothing where that route or its data is missing.
 */
async function suggestMusic(job, ctx, cards) {
  const suggestions = job.results?.music ? [] : job.results?.hashtags?.payload?.suggestions;
  const tags = Array.isArray(suggestions) ? suggestions.slice(0, 5).map((s) => String(s.tag || '').replace(/^#/, '')).filter(Boolean) : [];
  if (!tags.length) return;
  try {
    const found = await api.get(`/v1/music/recommendations?hashtags=${encodeURIComponent(tags.join(','))}&limit=5`);
    if (shownJob !== job || !Array.isArray(found?.music) || !found.music.length) return;
    cards.append(...renderResults({ music: { payload: { recommendations: found.music, hashtags: found.hashtags } } }, ctx));
  } catch { /* no trends here */ }
}

async function makeIt(job, track, out, button) {
  const audio = $('audio-file').files[0];
  if (!audio) { out.textContent = 'Choose a soundtrack file first.'; return; }
  button.disabled = true;
  try {
    out.textContent = 'Uploading your soundtrack…';
    const upload = await api.upload(audio, (f) => { out.textContent = `Uploading your soundtrack… ${Math.round(f * 100)} %`; });
    const mux = await api.post('/v1/jobs', { video_id: job.video_id, analyses: ['mux'], options: { mux: { audio_id: upload.id } } });
    out.textContent = 'Putting it together…';
    const ctl = new AbortController();
    const done = await watch(mux.id, ctl.signal, (p) => {
      out.textContent = `Putting it together… ${Math.round((Number(p.progress) || 0) * 100)} %`;
    });
    if (!done || done.status !== 'succeeded') throw new Error(done?.error?.message || `the job ended ${done?.status || 'unexpectedly'}`);
    // The finished job's result carries a fresh download link; the output route answers with a
    // redirect to the same kind of link, which a fetch here could not follow across origins.
    const finished = await api.get(`/v1/jobs/${mux.id}`);
    let href = finished.results?.mux?.payload?.url;
    if (!href) {
      const resp = await api.raw(`/v1/jobs/${mux.id}/output`);
      if ((resp.headers.get('content-type') || '').includes('json')) {
        const body = await resp.json();
        href = body.url || body.download_url;
      } else {
        href = URL.createObjectURL(await resp.blob());
      }
    }
    if (!href) throw new Error('the server gave no download link');
    const name = `${(track.name || 'reelq').replace(/[^\w-]+/g, '-')}.mp4`;
    out.replaceChildren(h('a', { href, download: name, rel: 'noopener' }, `Download your video with “${track.name || track.music_id}”`));
  } catch (e) {
    out.textContent = `Could not make it: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

// --- history ---------------------------------------------------------------------------------

function renderHistory(jobs) {
  const list = $('history-list');
  if (!jobs.length) {
    list.replaceChildren(h('li', { class: 'help' }, 'No jobs yet. Upload a video to start.'));
    return;
  }
  list.replaceChildren(...jobs.map((j) => h('li', {},
    h('button', {
      type: 'button', class: 'history-item', dataset: { jobId: j.id },
      onclick: () => openJob(j.id),
    },
      h('span', { class: 'when' }, new Date(j.created_at).toLocaleString()),
      h('span', { class: 'what' }, titled(j.analyses)),
      h('span', { class: `badge status-${j.status}` }, j.status)))));
}

async function refreshHistory() {
  if (!api) return;
  try { renderHistory((await api.get('/v1/jobs?limit=20')).jobs); } catch { /* keep the old list */ }
}

async function openJob(id) {
  try {
    const job = await api.get(`/v1/jobs/${id}`);
    if (TERMINAL.has(job.status)) {
      following?.abort();
      $('progress-panel').hidden = true;
      showJob(job);
    } else {
      follow(job);
    }
  } catch (e) {
    $('job-error').textContent = `Could not open the job: ${e.message}`;
  }
}

// --- start -----------------------------------------------------------------------------------

function start() {
  $('sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('api-key').value.trim();
    if (!key) { $('sign-in-error').textContent = 'Enter your API key.'; return; }
    signIn(key);
  });
  $('sign-out').addEventListener('click', signOut);
  $('job-form').addEventListener('submit', submit);
  $('refresh-history').addEventListener('click', refreshHistory);
  $('audio-file').addEventListener('change', () => { if (shownJob?.results?.music) showJob(shownJob, { focus: false }); });
  wireDropZone();
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) signIn(saved, { quiet: true });
  else $('api-key').focus();
}

start();
