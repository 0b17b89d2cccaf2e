// New study: every tunable parameter from GET /api/v1/search-space with its default bounds, the budget,
// the sampler and the goal (accuracy, or accuracy vs inference latency, with an optional latency limit). The server validates; its message is shown on the field it names (`error.field`).
// "Suggest bounds" fills the rows from POST /api/v1/datasets/D/advice, each with its reason.
// `#/new?dataset=D&from=S` ("narrow the bounds and run again") prefills it from study S: the bounds
// narrowed around its best trials (GET /api/v1/studies/S/importance), its budget, sampler and pruner.
import { get, post } from '../api.js';
import { h } from '../dom.js';
import { estimatePanel } from './advice.js';

export function mount(root, { dataset, from }) {
  const form = h('form', { class: 'study-form', novalidate: true });
  root.append(h('h1', {}, 'New study'), form);
  load(form, dataset, from).catch((e) => form.replaceChildren(h('p', { class: 'error' }, e.message)));
}

function field(name, label, input, hint) {
  return h('div', { class: 'field', 'data-field': name }, h('label', {}, label, input), hint ? h('div', { class: 'hint muted' }, hint) : null, h('div', { class: 'field-error' }));
}

async function load(form, datasetId, from) {
  const [{ params }, { datasets }, source] = await Promise.all([
    get('/api/v1/search-space'), get('/api/v1/datasets'),
    from ? Promise.all([get(`/api/v1/studies/${from}`), get(`/api/v1/studies/${from}/importance`)]) : null,
  ]);
  const [study, importance] = source || [];
  if (study && !datasetId) datasetId = study.dataset_id;
  if (!datasets.length) {
    form.replaceChildren(h('p', {}, 'Upload a dataset first: ', h('a', { href: '#/datasets' }, 'Datasets')));
    return;
  }
  const ds = h('select', { name: 'dataset_id' }, datasets.map((d) => h('option', { value: d.id }, `${d.name} (#${d.id}, ${d.num_classes} classes)`)));
  ds.value = String(datasetId ?? datasets[datasets.length - 1].id);
  const name = h('input', { name: 'name', placeholder: 'optional' });
  const trials = h('input', { name: 'trials', type: 'number', min: 1, value: 20 });
  const minutes = h('input', { name: 'minutes', type: 'number', min: 0, step: 'any', placeholder: 'no limit' });
  const sampler = h('select', { name: 'sampler' }, h('option', { value: 'tpe' }, 'TPE (Bayesian)'), h('option', { value: 'random' }, 'Random'), h('option', { value: 'nsga2' }, 'NSGA-II (genetic)'));
  const goal = h('select', { name: 'objectives' },
    h('option', { value: 'accuracy' }, 'Most accurate model'),
    h('option', { value: 'accuracy,latency' }, 'Accuracy vs speed (Pareto front)'));
  const maxLatency = h('input', { name: 'max_latency_ms', type: 'number', min: 0, step: 'any', placeholder: 'no limit' });
  const pruner = h('select', { name: 'pruner' },
    h('option', { value: 'none' }, 'None (every trial runs all its epochs)'),
    h('option', { value: 'median' }, 'Median (stop below the median curve)'),
    h('option', { value: 'asha' }, 'ASHA (asynchronous successive halving)'),
    h('option', { value: 'hyperband' }, 'Hyperband'));
  const seed = h('input', { name: 'seed', type: 'number', value: 0 });
  const baseline = h('input', { name: 'baseline', type: 'checkbox', checked: true });

  const rows = params.map((p) => paramRow(p, importance?.narrowed?.[p.name]));
  let prefill = null;
  if (study) {
    name.value = `${study.name} (narrowed)`;
    if (study.budget?.trials) trials.value = study.budget.trials;
    if (study.budget?.minutes) minutes.value = study.budget.minutes;
    if (['random', 'nsga2'].includes(study.sampler?.type)) sampler.value = study.sampler.type;
    if (study.objectives?.includes('latency')) goal.value = 'accuracy,latency';
    if (study.max_latency_ms != null) maxLatency.value = study.max_latency_ms;
    if (['median', 'asha', 'hyperband'].includes(study.pruner?.type)) pruner.value = study.pruner.type;
    const imps = importance.importances || [];
    const narrowed = imps.filter((p) => p.narrowed).map((p) => p.label);
    const notable = imps.filter((p) => p.notable).map((p) => p.label);
    prefill = h('p', { class: 'prefill', id: 'prefill-note' },
      `Prefilled from study #${study.id} (${study.name}): `,
      narrowed.length
        ? `${narrowed.join(', ')} narrowed around its best ${importance.best_trials} trials; the rest keep that study’s bounds.`
        : notable.length
          ? `its best ${importance.best_trials} trials spread over the whole bounds of what mattered (${notable.join(', ')}), so these are that study’s bounds.`
          : imps.length
            ? 'no parameter stood out, so these are that study’s bounds.'
            : `no importances yet (${importance.note}), so these are that study’s bounds.`);
  }
  const size = h('div', { class: 'space-size', id: 'space-size' });
  const formError = h('div', { class: 'form-error error' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Start study');

  const updateSize = () => size.replaceChildren(spaceSize(params, rows));
  form.addEventListener('input', updateSize);
  const body = () => {
    const bounds = {};
    for (const r of rows) bounds[r.name] = r.value();
    const b = {
      dataset_id: Number(ds.value),
      bounds,
      budget: { trials: trials.value === '' ? null : Number(trials.value), minutes: minutes.value === '' ? null : Number(minutes.value) },
      sampler: sampler.value,
      pruner: pruner.value,
      objectives: goal.value.split(','),
      max_latency_ms: maxLatency.value === '' ? null : Number(maxLatency.value),
      seed: Number(seed.value || 0),
      baseline: baseline.checked,
    };
    if (name.value.trim()) b.name = name.value.trim();
    return b;
  };
  // "Suggest bounds": the advisor's bounds (probes on a free worker, else the dataset's statistics)
  // fill the rows, each with its reason under it; the budget's trials too.
  const adviceNote = h('p', { class: 'muted advice-note', id: 'advice-note' });
  const suggest = h('button', { type: 'button', id: 'suggest-bounds' }, 'Suggest bounds');
  suggest.addEventListener('click', async () => {
    suggest.disabled = true;
    adviceNote.textContent = 'Probing the data on a free worker (a learning-rate test, batch sizes, epoch times)…';
    try {
      const a = await post(`/api/v1/datasets/${ds.value}/advice`, {});
      for (const r of rows) {
        r.suggest(a.bounds[r.name], a.suggestions.find((x) => x.param === r.name)?.reason);
        // A filled row's old error was about the values just replaced.
        if (a.bounds[r.name]) {
          r.el.classList.remove('invalid');
          r.el.querySelector('.field-error').textContent = '';
        }
      }
      if (a.budget?.trials) trials.value = a.budget.trials;
      adviceNote.textContent = `Suggested bounds filled in: ${a.budget.reason}. ${a.probe.note[0].toUpperCase()}${a.probe.note.slice(1)}.`;
      updateSize();
      estimate.update();
    } catch (err) {
      adviceNote.textContent = `No advice: ${err.message}`;
    } finally {
      suggest.disabled = false;
    }
  });
  const estimate = estimatePanel(body);
  form.addEventListener('input', estimate.update);
  form.addEventListener('change', estimate.update);
  // An error belongs to the values it was about: editing the field clears it.
  form.addEventListener('input', (e) => {
    const f = e.target.closest('.field.invalid');
    if (f) {
      f.classList.remove('invalid');
      f.querySelector('.field-error').textContent = '';
    }
  });

  form.replaceChildren(
    prefill ?? '',
    h('div', { class: 'card' },
      h('h2', {}, 'Data and budget'),
      h('div', { class: 'grid3' },
        field('dataset_id', 'Dataset', ds),
        field('name', 'Name', name),
        field('sampler', 'Sampler', sampler),
        field('budget.trials', 'Trials', trials),
        field('budget.minutes', 'Minutes', minutes, 'stops starting trials after this long'),
        field('seed', 'Seed', seed),
        field('pruner', 'Pruner', pruner, 'stops weak trials early, from their per-epoch validation accuracy'),
        field('objectives', 'Goal', goal, 'accuracy vs speed also minimises inference ms per image (use pruner none)'),
        field('max_latency_ms', 'Max ms per image', maxLatency, 'slower models never become the best')),
      h('label', { class: 'check' }, baseline, ' Run the baseline configuration (the seed’s CNN, moved inside the bounds) first')),
    h('div', { class: 'card' },
      h('h2', {}, 'Search space'),
      h('div', { class: 'advice-bar' }, suggest, adviceNote),
      h('table', { class: 'space' },
        h('thead', {}, h('tr', {}, h('th', {}, 'parameter'), h('th', {}, 'scale'), h('th', {}, 'bounds'))),
        h('tbody', {}, rows.map((r) => r.el))),
      size),
    estimate.el,
    formError,
    submit,
  );
  updateSize();
  estimate.update();

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
    formError.textContent = '';
    submit.disabled = true;
    try {
      const study = await post('/api/v1/studies', body());
      location.hash = `#/studies/${study.id}`;
    } catch (err) {
      submit.disabled = false;
      const target = err.field && (form.querySelector(`[data-field="${err.field}"]`) || form.querySelector(`[data-field="${err.field.split('.')[0]}"]`));
      if (target) {
        target.classList.add('invalid');
        target.querySelector('.field-error').textContent = err.message;
        target.scrollIntoView({ block: 'center' });
      } else {
        formError.textContent = err.message;
      }
    }
  });
}

// A row per parameter: prefilled with its default bounds (`choices`, `low`/`high`) or the `bound` given
// (`{low, high}` or `{choices}`), offering its allowed range (`allowed`). Parameters pinned by default
// keep the seed's behaviour until widened.
function paramRow(def, bound) {
  const p = bound ? { ...def, ...bound } : def;
  const name = p.name;
  const err = h('div', { class: 'field-error' });
  const allowed = p.allowed || p;
  const when = p.condition ? `only when ${p.condition.parent} is ${p.condition.values.join(' or ')}` : null;
  const hint = (p.help || when) ? h('div', { class: 'hint muted' }, [p.help, when && !(p.help || '').includes(' only') ? `(${when})` : null].filter(Boolean).join(' ')) : null;
  const label = h('td', {}, h('code', { title: p.help || '' }, name));
  if (p.type === 'categorical') {
    const all = allowed.choices || p.choices;
    const boxes = all.map((c) => h('input', { type: 'checkbox', value: c, checked: p.choices.includes(c), name: `${name}.${c}` }));
    const why = h('div', { class: 'advice-reason', 'data-reason': name });
    const el = h('tr', { class: 'field', 'data-field': `bounds.${name}` },
      label, h('td', {}, h('span', { class: 'scale' }, 'choice')),
      h('td', {}, h('div', { class: 'choices' }, all.map((c, i) => h('label', { class: 'check' }, boxes[i], ` ${c}`))), why, hint, err));
    const suggest = (b, reason) => {
      if (b?.choices) for (const box of boxes) box.checked = b.choices.includes(box.value);
      why.textContent = b?.choices && reason ? `Suggested: ${reason}` : '';
    };
    return { name, el, kind: 'cat', suggest, value: () => ({ choices: boxes.filter((b) => b.checked).map((b) => b.value) }), count: () => boxes.filter((b) => b.checked).length };
  }
  const step = p.type === 'int' ? (p.step || 1) : 'any';
  const limits = allowed.low != null ? { min: allowed.low, max: allowed.high } : {};
  const low = h('input', { type: 'number', step, ...limits, value: p.low, name: `${name}.low`, 'aria-label': `${name} low` });
  const high = h('input', { type: 'number', step, ...limits, value: p.high, name: `${name}.high`, 'aria-label': `${name} high` });
  const range = allowed.low != null ? h('span', { class: 'muted' }, ` allowed ${allowed.low}…${allowed.high}`) : null;
  const why = h('div', { class: 'advice-reason', 'data-reason': name });
  const el = h('tr', { class: 'field', 'data-field': `bounds.${name}` },
    label,
    h('td', {}, h('span', { class: `scale ${p.log ? 'log' : ''}` }, `${p.type === 'int' ? 'integer' : 'float'}, ${p.log ? 'log' : 'linear'}`)),
    h('td', {}, h('div', { class: 'range' }, low, h('span', {}, '…'), high, range), why, hint, err));
  // Floats keep three significant digits: the advisor's 6.6667e-4 reads as 0.000667.
  const show = (x) => (p.type === 'int' ? String(Math.round(x)) : String(Number(x.toPrecision(3))));
  return {
    name, el, kind: p.type,
    suggest: (b, reason) => {
      if (b?.low != null && b?.high != null) {
        low.value = show(b.low);
        high.value = show(b.high);
      }
      why.textContent = b?.low != null && reason ? `Suggested: ${reason}` : '';
    },
    value: () => ({ low: Number(low.value), high: Number(high.value) }),
    count: () => {
      const a = Number(low.value), b = Number(high.value);
      if (!(b >= a)) return NaN;
      if (a === b) return 1;
      return p.type === 'int' ? Math.floor((b - a) / (p.step || 1)) + 1 : Infinity;
    },
  };
}

// A conditional parameter counts only while its parent can take a value that switches it on.
function active(p, rows) {
  if (!p.condition) return true;
  const parent = rows.find((r) => r.name === p.condition.parent);
  if (!parent || parent.kind !== 'cat') return true;
  return parent.value().choices.some((c) => p.condition.values.includes(c));
}

function spaceSize(params, rows) {
  const counts = rows.filter((r, i) => active(params[i], rows)).map((r) => [r.name, r.count()]);
  const continuous = counts.filter(([, c]) => c === Infinity).map(([n]) => n);
  const grid = counts.filter(([, c]) => isFinite(c)).reduce((a, [, c]) => a * c, 1);
  if (counts.some(([, c]) => Number.isNaN(c))) return 'Space size: some bounds are inverted.';
  const g = grid.toLocaleString('en');
  return continuous.length
    ? `Space: ${g} combinations of the discrete parameters × ${continuous.length} continuous (${continuous.join(', ')}), so effectively unbounded.`
    : `Space: ${g} distinct configurations (a finite grid).`;
}
