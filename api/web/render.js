// Result cards for creators. Everything is built with DOM calls and textContent, never HTML
// strings, so nothing a video says can inject markup. Each renderer is defensive: a result whose
// shape it does not recognise falls back to formatted JSON.

/** `h('p', {class: 'x'}, 'text', child)`: a small element builder. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** `83` → `1:23`. */
export function clock(secs) {
  const s = Math.max(0, Math.floor(Number(secs) || 0));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

const pct = (x) => `${Math.round(Number(x) * 100)} %`;
const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const isObj = (x) => x && typeof x === 'object' && !Array.isArray(x);
const compact = (x) => new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 }).format(x);
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const tagList = (tags) => tags.map((t) => `#${String(t).replace(/^#/, '')}`).join(', ');

/** `{name, version}` of a model as `name version`. */
function modelName(m) {
  if (!isObj(m)) return null;
  return [m.name, m.version].filter(Boolean).join(' ') || null;
}

/** Copies text, with a fallback for browsers that refuse the async clipboard. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h('textarea', { 'aria-hidden': 'true', class: 'offscreen' });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    area.remove();
    return ok;
  }
}

let ids = 0;
const uid = (p) => `${p}-${++ids}`;

function card(key, title, ...body) {
  const titleId = uid('card');
  return h('article', { class: `card card-${key}`, 'aria-labelledby': titleId, dataset: { analysis: key } },
    h('h3', { id: titleId }, title), ...body);
}

function jsonBlock(value) {
  return h('pre', { class: 'json', tabindex: '0' }, JSON.stringify(value, null, 2));
}

function seekButton(secs, ctx) {
  const label = clock(secs);
  if (!ctx.player) return h('span', { class: 'time' }, label);
  return h('button', {
    type: 'button', class: 'time link', 'aria-label': `Play from ${label}`,
    onclick: () => { ctx.player.currentTime = Number(secs) || 0; ctx.player.play().catch(() => {}); ctx.player.focus(); },
  }, label);
}

// --- the cards -------------------------------------------------------------------------------

function quality(p) {
  if (!isObj(p) || num(p.overall) === null) return null;
  const grade = String(p.grade || '').replace('_', ' ');
  const scores = Array.isArray(p.scores) ? p.scores : [];
  const measured = scores.filter((s) => num(s.score) !== null);
  const skipped = scores.filter((s) => num(s.score) === null);
  const advice = Array.isArray(p.top_advice) ? p.top_advice : [];
  return card('quality', 'Quality',
    h('div', { class: 'score-head' },
      h('p', { class: `score-big grade-${p.grade}`, 'aria-label': `Overall quality ${p.overall} out of 100, ${grade}` },
        h('span', { class: 'score-num' }, p.overall), h('span', { class: 'score-of' }, '/100')),
      h('p', { class: `grade grade-${p.grade}` }, grade)),
    advice.length ? h('div', { class: 'advice' }, h('h4', {}, 'Fix these first'),
      h('ol', {}, advice.map((a) => h('li', {}, a)))) : null,
    measured.length ? h('details', { class: 'subscores', open: true },
      h('summary', {}, `All ${measured.length} scores`),
      h('ul', { class: 'score-list' }, measured.map((s) => {
        const id = uid('sub');
        return h('li', { class: `grade-${s.grade}` },
          h('div', { class: 'row' }, h('span', { id, class: 'sub-label' }, s.label || s.key),
            h('span', { class: 'sub-score' }, `${s.score}`)),
          h('meter', { min: 0, max: 100, low: 55, high: 80, optimum: 100, value: s.score, 'aria-labelledby': id }),
          s.advice ? h('p', { class: 'sub-advice' }, s.advice) : null);
      }))) : null,
    skipped.length ? h('p', { class: 'help' }, `Not measured: ${skipped.map((s) => s.label || s.key).join(', ')}.`) : null);
}

function hashtags(p, ctx) {
  const list = isObj(p) && Array.isArray(p.suggestions) ? p.suggestions.filter((s) => s && s.tag) : null;
  if (!list) return null;
  const saved = new Set(ctx.savedTags || []);
  const preselect = saved.size ? (t) => saved.has(t) : (_t, i) => i < 5;
  const status = h('p', { class: 'save-status', role: 'status', 'aria-live': 'polite' });
  const rows = h('ul', { class: 'tags' });
  const boxes = () => [...rows.querySelectorAll('input[type=checkbox]')];

  const addRow = (s, checked) => {
    const id = uid('tag');
    const score = num(s.score);
    const evidence = Array.isArray(s.evidence) ? s.evidence : [];
    const why = [
      Array.isArray(s.sources) && s.sources.length ? `from ${s.sources.join(', ').replaceAll('_', ' ')}` : null,
      ...evidence.slice(0, 3).map((e) => `${String(e.kind || '').replaceAll('_', ' ')}: “${e.text}”${num(e.time_secs) !== null ? ` at ${clock(e.time_secs)}` : ''}`),
    ].filter(Boolean);
    rows.append(h('li', { class: 'tag' },
      h('input', { type: 'checkbox', id, value: s.tag, checked }),
      h('label', { for: id }, h('span', { class: 'tag-name' }, s.tag),
        score !== null ? h('span', { class: 'tag-score', title: 'The chance that a creator would post this tag on such a video' }, `${Math.round(score * 100)} %`) : null),
      h('button', {
        type: 'button', class: 'secondary small', 'aria-label': `Copy ${s.tag}`,
        onclick: async (e) => { e.currentTarget.textContent = (await copyText(s.tag)) ? 'Copied' : 'Copy failed'; },
      }, 'Copy'),
      why.length ? h('p', { class: 'why' }, why.join(' · ')) : null));
  };
  list.forEach((s, i) => addRow(s, preselect(s.tag, i)));
  for (const t of saved) if (!list.some((s) => s.tag === t)) addRow({ tag: t }, true);

  const own = h('input', { id: uid('own'), type: 'text', placeholder: '#yourtag', autocomplete: 'off', spellcheck: 'false' });
  const addOwn = (e) => {
    e.preventDefault();
    const raw = own.value.trim();
    if (!raw) return;
    const tag = raw.startsWith('#') ? raw.toLowerCase() : `#${raw.toLowerCase()}`;
    if (!boxes().some((b) => b.value === tag)) addRow({ tag }, true);
    own.value = '';
    own.focus();
  };

  const save = h('button', {
    type: 'button', class: 'save-tags',
    onclick: async () => {
      const tags = boxes().filter((b) => b.checked).map((b) => b.value);
      if (!tags.length) { status.textContent = 'Tick at least one tag first.'; status.className = 'save-status error'; return; }
      save.disabled = true;
      status.className = 'save-status';
      status.textContent = 'Saving…';
      try {
        const stored = await ctx.saveFeedback(tags);
        status.textContent = `Saved ${stored.hashtags.length} tag${stored.hashtags.length === 1 ? '' : 's'}: ${stored.hashtags.join(' ')}. Thanks, this teaches reelq what works.`;
      } catch (e) {
        status.className = 'save-status error';
        status.textContent = `Not saved: ${e.message}`;
      } finally {
        save.disabled = false;
      }
    },
  }, 'Save the tags I’ll use');

  const copyAll = h('button', {
    type: 'button', class: 'secondary',
    onclick: async (e) => {
      const tags = boxes().filter((b) => b.checked).map((b) => b.value).join(' ');
      e.currentTarget.textContent = tags && (await copyText(tags)) ? 'Copied ticked tags' : 'Nothing copied';
    },
  }, 'Copy ticked tags');

  return card('hashtags', 'Hashtags',
    typeof p.notice === 'string' ? h('p', { class: 'lead' }, p.notice) : null,
    list.length ? h('p', { class: 'help' }, 'Tick the tags you will post with. The percentage is the chance that a creator would post the tag on a video like this.')
      : h('p', { class: 'help' }, 'No suggestions for this video. Add your own below.'),
    rows,
    h('form', { class: 'own-tag', onsubmit: addOwn },
      h('label', { for: own.id }, 'Add your own'), own, h('button', { type: 'submit', class: 'secondary' }, 'Add')),
    h('div', { class: 'actions' }, save, copyAll),
    status);
}

// Below this mean log-probability the model guessed a segment's words (on the hashtag
// benchmark, a third to a half of them right).
const UNSURE_LOGPROB = -0.8;

function segment(s, ctx) {
  const unsure = typeof s.avg_logprob === 'number' && s.avg_logprob < UNSURE_LOGPROB;
  return h('li', {}, seekButton(s.start, ctx), h('span', { class: 'seg-text' }, String(s.text || '').trim()),
    unsure ? h('span', { class: 'seg-unclear', title: 'The speech was unclear here: the model guessed these words.' }, 'unclear') : null);
}

function transcript(p, ctx) {
  if (!isObj(p)) return null;
  const segments = Array.isArray(p.segments) ? p.segments : [];
  const text = typeof p.text === 'string' ? p.text.trim() : '';
  return card('transcript', 'Transcript',
    p.language ? h('p', { class: 'help' }, `Language: ${p.language}`) : null,
    segments.length
      ? h('ol', { class: 'segments' }, segments.map((s) => segment(s, ctx)))
      : h('p', {}, text || 'No speech was recognised.'),
    text && segments.length ? h('details', {}, h('summary', {}, 'Full text'), h('p', { class: 'full-text' }, text),
      h('button', { type: 'button', class: 'secondary small', onclick: async (e) => { e.currentTarget.textContent = (await copyText(text)) ? 'Copied' : 'Copy failed'; } }, 'Copy text')) : null);
}

function ocr(p, ctx) {
  const texts = isObj(p) && Array.isArray(p.texts) ? p.texts.filter(isObj) : Array.isArray(p) ? p.filter(isObj) : null;
  if (!texts) return null;
  const frames = isObj(p) ? num(p.frames_read) : null;
  return card('ocr', 'On-screen text',
    texts.length
      ? h('ul', { class: 'ocr' }, texts.map((t) => {
        const first = Array.isArray(t.frames) && t.frames.length ? t.frames[0] : num(t.time_secs);
        return h('li', {}, first !== null && first !== undefined ? seekButton(first, ctx) : null, h('span', {}, String(t.text ?? '')));
      }))
      : h('p', {}, 'No text was found on screen.'),
    frames ? h('p', { class: 'help' }, `Read from ${plural(frames, 'sampled frame')}.`) : null);
}

function audio(p) {
  if (!isObj(p) || num(p.speech_ratio) === null) return null;
  if (p.has_audio === false) return card('audio', 'Speech', h('p', {}, 'This video has no audio track.'));
  const segs = Array.isArray(p.segments) ? p.segments.length : 0;
  const profile = isObj(p.profile) ? p.profile : null;
  const shares = profile ? [['speech', profile.speech], ['music or other sound', profile.music], ['silence', profile.silence]]
    .filter(([, v]) => num(v) !== null) : [];
  const tags = Array.isArray(p.tags) ? p.tags.filter((t) => isObj(t) && t.label).slice(0, 3) : [];
  return card('audio', 'Speech',
    h('p', { class: 'big' }, pct(p.speech_ratio)),
    h('p', { class: 'help' }, `of the video has someone speaking${segs ? `, in ${segs} stretch${segs === 1 ? '' : 'es'}` : ''}.`),
    shares.length ? h('p', {}, `Sound: ${shares.map(([k, v]) => `${pct(v)} ${k}`).join(', ')}.`) : null,
    tags.length ? h('p', { class: 'help' }, `Sounds like: ${tags.map((t) => t.label).join(', ')}.`) : null);
}

function probe(p) {
  if (!isObj(p) || !isObj(p.video)) return null;
  const v = p.video;
  const a = isObj(p.audio) ? p.audio : null;
  const w = v.display_width || v.width;
  const ht = v.display_height || v.height;
  const rows = [
    ['Length', num(p.duration_secs) !== null ? `${p.duration_secs.toFixed(1)} s` : null],
    ['Picture', w && ht ? `${w} × ${ht}${ht > w ? ' (vertical)' : w > ht ? ' (horizontal)' : ''}` : null],
    ['Frame rate', num(v.frame_rate) !== null ? `${Math.round(v.frame_rate * 100) / 100} fps` : null],
    ['Video codec', v.codec],
    ['Audio', a ? `${a.codec}, ${a.sample_rate} Hz, ${a.channels === 1 ? 'mono' : a.channels === 2 ? 'stereo' : `${a.channels} channels`}` : 'none'],
    ['File', num(p.size_bytes) !== null ? `${(p.size_bytes / 1048576).toFixed(1)} MB, ${p.container}` : p.container],
  ].filter(([, val]) => val);
  return card('probe', 'File', h('dl', { class: 'facts' }, rows.map(([k, val]) => [h('dt', {}, k), h('dd', {}, val)])));
}

function virality(p) {
  if (!isObj(p) || !('estimate' in p)) return null;
  const version = typeof p.model_version === 'string' && p.model_version ? p.model_version : null;
  const reason = typeof p.reason === 'string' && p.reason ? p.reason : null;
  const e = isObj(p.estimate) ? p.estimate : null;
  if (!e) {
    // No model at all means the scheduler has not pulled enough to train one; a model that
    // could not read this video says why.
    if (!version) {
      return card('virality', 'Reach estimate',
        h('p', { class: 'lead' }, 'Not enough pulled data yet: the scheduler trains this model once enough videos are pulled.'),
        reason ? h('p', { class: 'help' }, `Why: ${reason}.`) : null);
    }
    return card('virality', 'Reach estimate',
      h('p', { class: 'lead' }, `No estimate for this video${reason ? `: ${reason}` : ''}.`),
      h('p', { class: 'help' }, `Model ${version}. A caption with the job gives it text to read.`));
  }
  if (num(e.percentile) === null) return null;
  const share = Math.round(e.percentile);
  const views = isObj(e.expected_views) ? e.expected_views : null;
  const spearman = num(p.held_out_spearman);
  return card('virality', 'Reach estimate',
    h('p', { class: 'big' }, `Higher than ${share} %`),
    h('p', { class: 'help' }, `of pulled videos, by predicted virality (top ${Math.max(1, 100 - share)} %).`),
    views && num(views.low) !== null && num(views.high) !== null
      ? h('p', {}, `Expected views: ${compact(views.low)} to ${compact(views.high)}`,
        num(views.expected) !== null ? `, most likely about ${compact(views.expected)}` : '', '.')
      : null,
    h('p', { class: 'help' }, [
      version ? `Model ${version}` : 'The promoted model',
      spearman !== null ? `, which ranks videos it was not trained on with a Spearman correlation of ${spearman.toFixed(2)}` : '',
      '. Eight in ten videos it was tested on landed within a range like this.',
    ].join('')));
}

/** Why a music result has no tracks, in words, from what the worker says it looked at. */
function noTracksReason(p) {
  const tags = Array.isArray(p.hashtags) ? p.hashtags.filter(Boolean) : [];
  const where = typeof p.region === 'string' && p.region ? ` in ${p.region}` : '';
  if (!tags.length) {
    return 'No track suggestions: this video has no specific hashtags to match music by (generic tags such as #fyp are left out). A caption or clearer speech or on-screen text helps.';
  }
  if (num(p.videos_considered) === 0) {
    return `No track suggestions yet: no pulled videos with ${tagList(tags)}${where} so far. The scheduler pulls TikTok data; suggestions appear once videos with these hashtags are pulled.`;
  }
  return `No track suggestions among the videos pulled with ${tagList(tags)}${where}.`;
}

/** The sound the video already uses, as the music card tells it. */
function currentSound(p) {
  const c = isObj(p) && isObj(p.current_sound) ? p.current_sound : null;
  return c && typeof c.advice === 'string' ? h('p', { class: 'lead' }, c.advice) : null;
}

function music(p, ctx) {
  const recs = isObj(p) && Array.isArray(p.recommendations) ? p.recommendations.filter(isObj) : null;
  if (!recs) return null;
  if (!recs.length) return card('music', 'Music that fits', currentSound(p), h('p', {}, noTracksReason(p)));
  const tags = Array.isArray(p.hashtags) ? p.hashtags.filter(Boolean) : [];
  const considered = num(p.videos_considered);
  const items = recs.map((r) => {
    const out = h('div', { class: 'mux-out', role: 'status', 'aria-live': 'polite' });
    const title = r.name || r.music_id || 'Untitled';
    const make = h('button', {
      type: 'button', class: 'secondary small', disabled: !ctx.hasAudio(),
      'aria-label': `Make it with ${title}`,
      onclick: () => ctx.makeIt(r, out, make),
    }, 'Make it');
    const why = [
      num(r.videos) !== null ? `used by ${plural(r.videos, 'pulled video')}` : null,
      num(r.score) !== null ? `engagement ${compact(r.score)}` : null,
    ].filter(Boolean);
    return h('li', { class: 'track' },
      h('div', { class: 'row' }, h('span', {}, h('strong', {}, title), r.author ? ` · ${r.author}` : ''), make),
      why.length ? h('p', { class: 'why' }, why.join(' · ')) : null,
      out);
  });
  return card('music', 'Music that fits',
    currentSound(p),
    h('p', { class: 'help' },
      `Sounds of pulled videos${tags.length ? ` tagged ${tagList(tags)}` : ''}${typeof p.region === 'string' && p.region ? ` in ${p.region}` : ''}`,
      considered ? ` (${plural(considered, 'video')} looked at)` : '',
      ', best first. Engagement counts views, and likes, comments and shares at 2, 3 and 4 times.'),
    h('ol', { class: 'tracks' }, items),
    !ctx.hasAudio() ? h('p', { class: 'help' }, 'To make a version with a track, choose its audio file under “Soundtrack” above.') : null);
}

function embeddings(p) {
  if (!isObj(p) || !('text' in p || 'image' in p)) return null;
  const SOURCES = { transcript: 'the transcript', on_screen_text: 'on-screen text', caption: 'the caption', frames: 'frames' };
  const line = (label, v) => {
    if (!isObj(v) || num(v.dim) === null) return null;
    const from = Array.isArray(v.sources) ? v.sources.map((s) => SOURCES[s] || String(s).replaceAll('_', ' ')) : [];
    const items = num(v.items) !== null && from.includes('frames') ? ` (${plural(v.items, 'frame')})` : '';
    const model = modelName(v.model);
    return h('li', {}, `${label}: ${v.dim} numbers from ${from.join(', ') || 'the video'}${items}${model ? `, by ${model}` : ''}.`);
  };
  const lines = [line('Text', p.text), line('Picture', p.image)].filter(Boolean);
  return card('embeddings', 'Embeddings',
    lines.length ? h('ul', { class: 'plain' }, lines) : h('p', {}, 'Nothing to embed: no speech, on-screen text or caption was found.'),
    h('p', { class: 'help' }, 'Kept for search and to train reelq’s models; there is nothing here to act on.'));
}

function mux(p) {
  if (!isObj(p)) return null;
  const link = typeof p.url === 'string' && /^https?:\/\//.test(p.url) ? p.url : null;
  if (!link && typeof p.output_key !== 'string') return null;
  const size = [
    num(p.duration_secs) !== null ? `${p.duration_secs.toFixed(1)} s` : null,
    num(p.bytes) !== null ? `${(p.bytes / 1048576).toFixed(1)} MB` : null,
    p.mode === 'mix' ? 'the track mixed under your sound' : p.mode === 'replace' ? 'the track replacing your sound' : null,
  ].filter(Boolean).join(' · ');
  if (typeof p.expired_at === 'string') {
    return card('mux', 'Your video with a new soundtrack',
      h('p', {}, 'This file was removed when its retention period ended. Run the soundtrack again to make a new one.'),
      size ? h('p', { class: 'help' }, `${size}.`) : null);
  }
  return card('mux', 'Your video with a new soundtrack',
    link ? h('p', {}, h('a', { href: link, rel: 'noopener' }, 'Download the MP4'))
      : h('p', {}, 'Your video is ready, but no download link could be made just now. Open the job again for one.'),
    size ? h('p', { class: 'help' }, `${size}.${link ? ' The link works for a limited time; reopen the job for a fresh one.' : ''}`) : null);
}

function safety(p) {
  if (!isObj(p) || num(p.score) === null || typeof p.flagged !== 'boolean') return null;
  const worst = Array.isArray(p.worst_frames) ? p.worst_frames.filter((f) => isObj(f) && num(f.time_secs) !== null && num(f.score) !== null) : [];
  const frames = num(p.frames_scored) ?? 0;
  return card('safety', 'Content safety',
    h('p', { class: 'lead' }, p.flagged
      ? 'Flagged: some moments may not be safe for work. Check them before posting.'
      : 'Nothing here looks unsafe for work.'),
    h('p', { class: 'help' }, `Worst moment scores ${p.score.toFixed(2)} (flagged at ${num(p.threshold) !== null ? p.threshold.toFixed(2) : '?'} or more), over ${frames} frame${frames === 1 ? '' : 's'}.`),
    p.flagged && worst.length
      ? h('ul', { class: 'plain' }, worst.map((f) => h('li', {}, `${clock(f.time_secs)}: ${f.score.toFixed(2)}`)))
      : null);
}

function song(p, ctx) {
  if (!isObj(p) || !('track' in p)) return null;
  const refusals = Array.isArray(p.unavailable) ? p.unavailable.filter(isObj) : [];
  const note = refusals.length
    ? h('p', { class: 'help' }, refusals.map((r) => `${r.recognizer} could not answer (${String(r.code).replaceAll('_', ' ')}).`).join(' '))
    : null;
  const t = isObj(p.track) ? p.track : null;
  if (!t) {
    const why = typeof p.reason === 'string' ? `Nothing to listen to: ${p.reason}.`
      : `No known song: ${num(p.listened_secs) !== null ? `${Math.round(p.listened_secs)} s` : 'the sound'} heard, and no catalogue track matched.`;
    return card('song', 'Song under the video', h('p', {}, why), note);
  }
  const name = `${t.title || 'Untitled'}${t.artist ? ` · ${t.artist}` : ''}`;
  const where = num(t.track_offset_secs) !== null ? `, ${clock(t.track_offset_secs)} into the track` : '';
  const link = typeof t.link === 'string' && /^https?:\/\//.test(t.link) ? h('a', { href: t.link, rel: 'noopener' }, 'About this track') : null;
  return card('song', 'Song under the video',
    h('p', { class: 'lead' }, h('strong', {}, name)),
    h('p', {}, 'Heard from ', num(t.video_secs) !== null ? seekButton(t.video_secs, ctx) : 'the video', where,
      num(t.confidence) !== null ? ` (confidence ${t.confidence.toFixed(2)}, ${t.source === 'catalogue' ? 'song catalogue' : t.source})` : ''),
    link, note);
}

const RENDERERS = { quality, hashtags, transcript, virality, music, song, safety, mux, ocr, audio, probe, embeddings };

/** Cards for every result of a job, known kinds first, the rest as formatted JSON. */
export function renderResults(results, ctx) {
  const out = [];
  const entries = Object.entries(results || {});
  for (const key of Object.keys(RENDERERS)) {
    const r = entries.find(([k]) => k === key);
    if (!r) continue;
    let el = null;
    try { el = RENDERERS[key](r[1] && r[1].payload, ctx); } catch (e) { console.error(`rendering ${key}`, e); }
    out.push(el || card(key, key, jsonBlock(r[1] && r[1].payload)));
  }
  for (const [key, r] of entries) {
    if (key in RENDERERS) continue;
    out.push(card(key, key.charAt(0).toUpperCase() + key.slice(1), jsonBlock(r && r.payload)));
  }
  return out;
}
