// The trial drawer: everything about one trial from GET /api/v1/trials/{id}: params, per-epoch
// metrics, confusion matrix, timings, worker, device and the error if it failed.
import { get } from './api.js';
import { h, acc, num, duration, badge } from './dom.js';

const classNames = new Map();

async function classesOf(study) {
  if (!study) return [];
  if (!classNames.has(study.dataset_id)) {
    classNames.set(study.dataset_id, get(`/api/v1/datasets/${study.dataset_id}`).then((d) => (d.classes || []).map((c) => c.name)).catch(() => []));
  }
  return classNames.get(study.dataset_id);
}

export async function openTrial(id, study) {
  const body = h('div', { class: 'drawer-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const close = () => overlay.remove();
  const overlay = h('div', { class: 'overlay', id: 'trial-drawer', onclick: (e) => e.target === overlay && close() },
    h('div', { class: 'drawer' }, h('button', { class: 'close', onclick: close, 'aria-label': 'close' }, '×'), body));
  document.body.append(overlay);
  document.addEventListener('keydown', function esc(e) { if (e.key === 'Escape') { close(); document.removeEventListener('keydown', esc); } });
  try {
    const [t, classes] = await Promise.all([get(`/api/v1/trials/${id}`), classesOf(study)]);
    body.replaceChildren(render(t, classes));
  } catch (e) {
    body.replaceChildren(h('p', { class: 'error' }, e.message));
  }
}

function kv(rows) {
  return h('table', { class: 'kv' }, h('tbody', {}, rows.filter(Boolean).map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, v)))));
}

function render(t, classes) {
  const r = t.result || {};
  const confusion = r.confusion || [];
  const max = Math.max(1, ...confusion.flat());
  return h('div', {},
    h('h2', {}, `Trial #${t.number} `, badge(t.state)),
    t.error ? h('pre', { class: 'error' }, t.error) : null,
    h('div', { class: 'grid2' },
      h('div', {}, h('h3', {}, 'Parameters'), kv(Object.entries(t.params || {}).map(([k, v]) => [k, num(v)]))),
      h('div', {}, h('h3', {}, 'Results and timings'), kv([
        ['val accuracy', acc(t.val_accuracy)], ['test accuracy', acc(t.test_accuracy)],
        ['val loss', num(t.val_loss)], ['test loss', num(t.test_loss)],
        ['training', duration(t.train_seconds)], ['data preparation', duration(t.prepare_seconds)],
        ['inference', t.inference_ms == null ? '–' : `${num(t.inference_ms)} ms/image, ${num(t.inference_ips, 0)} images/s`],
        ['weights', t.parameter_count?.toLocaleString('en') ?? '–'], ['model size', t.model_bytes ? `${(t.model_bytes / 1024).toFixed(0)} KB` : '–'],
        ['worker', t.worker_id || '–'], ['device', t.device || '–'],
        ['queued', new Date(t.created_at).toLocaleString()],
        t.started_at && ['started', new Date(t.started_at).toLocaleString()],
        t.finished_at && ['finished', new Date(t.finished_at).toLocaleString()],
      ]))),
    h('h3', {}, 'Epochs'),
    (t.epochs || []).length
      ? h('table', { class: 'epochs' },
        h('thead', {}, h('tr', {}, ['epoch', 'train loss', 'val loss', 'val acc', 'elapsed'].map((x) => h('th', {}, x)))),
        h('tbody', {}, t.epochs.map((e) => h('tr', {}, h('td', {}, e.epoch), h('td', {}, num(e.train_loss, 4)), h('td', {}, num(e.val_loss, 4)), h('td', {}, acc(e.val_accuracy)), h('td', {}, duration(e.elapsed_seconds))))))
      : h('p', { class: 'muted' }, 'No epoch finished.'),
    confusion.length ? h('div', {},
      h('h3', {}, 'Confusion matrix (test split; rows true, columns predicted)'),
      h('table', { class: 'confusion' },
        h('thead', {}, h('tr', {}, h('th', {}, ''), confusion.map((_, j) => h('th', {}, classes[j] ?? j)))),
        h('tbody', {}, confusion.map((row, i) => h('tr', {}, h('th', {}, classes[i] ?? i),
          row.map((n, j) => h('td', { style: { background: `rgba(${i === j ? '46,125,50' : '198,40,40'},${(0.08 + 0.8 * n / max).toFixed(2)})` } }, n))))))) : null,
    r.per_class_accuracy ? h('p', { class: 'muted' }, `per-class test accuracy: ${r.per_class_accuracy.map((a, i) => `${classes[i] ?? i} ${acc(a)}`).join(' · ')}`) : null,
    h('p', {}, t.state === 'complete' ? h('a', { class: 'button', href: `/api/v1/trials/${t.id}/model`, download: '' }, 'Download this trial’s model') : null));
}
