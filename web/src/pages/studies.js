// Studies: every study with its state, progress and best accuracy.
import { get } from '../api.js';
import { h, acc, badge } from '../dom.js';

export function mount(root) {
  const body = h('tbody');
  root.append(
    h('div', { class: 'row spread' }, h('h1', {}, 'Studies'), h('a', { class: 'button primary', href: '#/new' }, 'New study')),
    h('div', { class: 'card' }, h('table', { class: 'studies' },
      h('thead', {}, h('tr', {}, ['#', 'name', 'state', 'progress', 'best val acc', 'created'].map((x) => h('th', {}, x)))), body)));
  get('/api/v1/studies').then(({ studies }) => {
    if (!studies.length) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No study yet: upload a dataset, then start one.')));
      return;
    }
    body.replaceChildren(...studies.reverse().map((s) => {
      const p = s.progress;
      const pct = p.total ? Math.min(100, (100 * p.done) / p.total) : 0;
      return h('tr', { class: 'link', onclick: () => { location.hash = `#/studies/${s.id}`; } },
        h('td', {}, s.id), h('td', {}, h('a', { href: `#/studies/${s.id}` }, s.name)), h('td', {}, badge(s.state)),
        h('td', {}, h('div', { class: 'bar mini' }, h('div', { class: 'bar-fill', style: { width: `${pct}%` } })), ` ${p.done}/${p.total ?? '∞'}`),
        h('td', {}, acc(s.best_trial?.val_accuracy)), h('td', {}, new Date(s.created_at).toLocaleString()));
    }));
  }).catch((e) => body.replaceChildren(h('tr', {}, h('td', { class: 'error', colspan: 6 }, e.message))));
}
