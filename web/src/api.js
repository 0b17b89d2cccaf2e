// The REST client: one error type carrying the server's message and the field it names.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `the server answered ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.field = body?.error?.field;
  }
}

/** Not signed in (no session, or it ended): say how to sign in, once, above the page. */
export function signedOut() {
  if (document.getElementById('signin')) return;
  const d = document.createElement('div');
  d.id = 'signin';
  d.className = 'signin';
  d.innerHTML = '<strong>Sign in to see this.</strong> Open the login URL <code>tanren-control</code> printed when it '
    + 'started (<code>/login?token=…</code>; the admin token is in its data dir\'s <code>admin-token</code> file), '
    + 'or ask an admin for a token: <code>tanren token create --scope read</code>.';
  document.body.prepend(d);
}

async function handle(r) {
  const body = await r.json().catch(() => null);
  if (r.status === 401) signedOut();
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

export const get = (path) => fetch(path).then(handle);

export const post = (path, data) =>
  fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(data ?? {}),
  }).then(handle);

/** Multipart upload with progress (fetch cannot report upload progress; XHR can). */
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/datasets');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.upload.onload = () => onProgress(1);
    xhr.onerror = () => reject(new Error('upload failed: the connection to the control plane broke'));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 401) signedOut();
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

export const signOut = () => fetch('/logout', { method: 'POST' }).then(() => location.reload());

export function eventsUrl(studyId, since, stream) {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const q = since != null && stream != null ? `?since=${since}&stream=${stream}` : '';
  return `${proto}://${location.host}/api/v1/studies/${studyId}/events${q}`;
}
