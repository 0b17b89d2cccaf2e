// Workers: each worker's device, torch/CUDA, its slots in use, the trials it runs, and its last heartbeat.
import { get } from '../api.js';
import { h, ago, badge } from '../dom.js';

export function mount(root) {
  const body = h('tbody');
  root.append(h('h1', {}, 'Workers'), h('div', { class: 'card' }, h('table', { class: 'workers', id: 'workers-table' },
    h('thead', {}, h('tr', {}, ['worker', 'state', 'slots', 'running', 'device', 'torch', 'CUDA', 'address', 'last heartbeat'].map((x) => h('th', {}, x)))), body)));
  const load = () => get('/api/v1/workers').then(({ workers }) => {
    body.replaceChildren(...(workers.length ? workers.map((w) =>
      h('tr', {}, h('td', {}, w.id), h('td', {}, badge(!w.alive ? 'down' : w.busy ? 'running' : 'idle')),
        h('td', {}, `${w.slots_in_use ?? 0} / ${w.slots ?? 1}`),
        h('td', {}, ...running(w)),
        h('td', {}, `${w.device}${w.device_name ? ` (${w.device_name})` : ''}`), h('td', {}, w.torch_version || '–'),
        h('td', {}, w.cuda_available ? 'yes' : 'no'), h('td', { class: 'muted' }, w.grpc_url), h('td', {}, ago(w.last_seen_at))))
      : [h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No worker has registered. Start one with tanren-worker.'))]));
  }).catch((e) => body.replaceChildren(h('tr', {}, h('td', { class: 'error', colspan: 9 }, e.message))));
  load();
  // Heartbeat ages change by themselves; a light refresh keeps them honest on this small page.
  const t = setInterval(load, 3000);
  return () => clearInterval(t);
}

// One link per trial the worker runs (a slot whose trial row is still being written shows nothing).
function running(w) {
  const trials = (w.running || []).filter((t) => t.trial_id > 0);
  if (!trials.length) return ['–'];
  return trials.flatMap((t, i) => [i ? ', ' : '', h('a', { href: `#/studies/${t.study_id}` }, `trial ${t.trial_id} of study ${t.study_id}`)]);
}
