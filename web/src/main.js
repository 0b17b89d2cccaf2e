// The dashboard's entry: a hash router over five pages. Each page's `mount(root, params)` returns a
// cleanup function (closing its WebSocket, timers) that runs when the route changes.
import * as datasets from './pages/datasets.js';
import * as newStudy from './pages/new-study.js';
import * as study from './pages/study.js';
import * as studies from './pages/studies.js';
import * as workers from './pages/workers.js';
import { signOut } from './api.js';

const routes = [
  [/^#\/datasets(?:\/(\d+))?$/, datasets, 'datasets', (m) => ({ id: m[1] && Number(m[1]) })],
  [/^#\/new(?:\?dataset=(\d*))?(?:&from=(\d+))?$/, newStudy, 'new', (m) => ({ dataset: m[1] && Number(m[1]), from: m[2] && Number(m[2]) })],
  [/^#\/studies\/(\d+)$/, study, 'studies', (m) => ({ id: Number(m[1]) })],
  [/^#\/workers$/, workers, 'workers', () => ({})],
  [/^(#\/?)?$/, studies, 'studies', () => ({})],
];

let cleanup = null;

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const root = document.getElementById('app');
  root.replaceChildren();
  const hash = location.hash;
  for (const [re, page, nav, params] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('[data-nav]')) {
      a.classList.toggle('active', a.dataset.nav === nav);
    }
    cleanup = page.mount(root, params(m)) || null;
    return;
  }
  location.hash = '#/';
}

window.addEventListener('hashchange', route);
document.getElementById('signout')?.addEventListener('click', signOut);
route();
