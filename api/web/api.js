// Talking to the reelq API: JSON calls, uploads with progress, and the job event stream.
// Every call carries the creator's key in `Authorization: Bearer`.

/** Files above this go straight to storage through a presigned URL. */
export const PRESIGN_ABOVE_BYTES = 64 * 1024 * 1024;

/** An API refusal, carrying the problem+json `code` and `detail`. */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || `request failed (${status})`);
    this.status = status;
    this.code = code || 'http_' + status;
  }
}

async function problem(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  return new ApiError(resp.status, body && body.code, body && body.detail);
}

/** A client bound to one key. */
export function client(key) {
  const auth = { Authorization: `Bearer ${key}` };

  async function call(method, path, body, signal) {
    const init = { method, headers: { ...auth, Accept: 'application/json' }, signal };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
    }
    if (!resp.ok) throw await problem(resp);
    return resp.status === 204 ? null : resp.json();
  }

  return {
    key,
    get: (path, signal) => call('GET', path, undefined, signal),
    post: (path, body, signal) => call('POST', path, body, signal),

    /** Fetches a path with the key and returns the raw response (downloads). */
    raw: async (path) => {
      const resp = await fetch(path, { headers: auth });
      if (!resp.ok) throw await problem(resp);
      return resp;
    },

    /**
     * Uploads a file, reporting progress as a fraction. Small files are streamed through the
     * API; large ones are PUT to storage with a presigned URL and then completed.
     */
    upload: async (file, onProgress) => {
      // The api recognises the container from the bytes; the type only has to be a media one.
      const type = /^(video|audio)\/[\w.+-]+$/.test(file.type) ? file.type : 'application/octet-stream';
      if (file.size <= PRESIGN_ABOVE_BYTES) {
        const text = await send('POST', '/v1/videos', { ...auth, 'Content-Type': type }, file, onProgress);
        return JSON.parse(text);
      }
      // No sha256 is declared: the browser can hash a file only whole in memory (SubtleCrypto
      // has no streaming digest), so completion reads the object back to hash it instead.
      const slot = await call('POST', '/v1/uploads', { content_type: type, size_bytes: file.size });
      // The URL is signed for the file's exact length; the browser sends that Content-Length
      // itself and refuses to let a script set it.
      const { 'content-length': _length, ...headers } = slot.headers || {};
      await send(slot.method || 'PUT', slot.upload_url, headers, file, onProgress);
      return call('POST', slot.complete_url);
    },

    /**
     * The job's events as they come: yields `{event, data}` with `data` parsed. Ends when the
     * server ends the stream; throws when it drops.
     */
    events: async function* (jobId, signal) {
      const resp = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
        headers: { ...auth, Accept: 'text/event-stream' },
        signal,
        cache: 'no-store',
      });
      if (!resp.ok) throw await problem(resp);
      if (!resp.body) throw new ApiError(0, 'no_stream', 'This browser cannot read event streams.');
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const ev = parseEvent(block);
          if (ev) yield ev;
        }
      }
    },
  };
}

/** One SSE block to `{event, data}`; comments (keep-alives) give null. */
export function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length) return null;
  const text = data.join('\n');
  try { return { event, data: JSON.parse(text) }; } catch { return { event, data: text }; }
}

// XMLHttpRequest, because fetch cannot report upload progress.
function send(method, url, headers, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        if (onProgress) onProgress(1);
        resolve(xhr.responseText);
        return;
      }
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      reject(new ApiError(xhr.status, body && body.code, body && body.detail));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network', 'The upload was interrupted. Check your connection and try again.')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'The upload was cancelled.')));
    xhr.send(body);
  });
}
