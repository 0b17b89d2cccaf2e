// The study page: live over the study's WebSocket (a snapshot, then deltas; resumes with ?since= after
// a drop), no polling. Progress with an honest ETA, the best trial, charts, a trials table and a trial
// drawer. Rendering is throttled and charts downsampled so 10,000 trials stay responsive. "What mattered"
// (parameter importance in bars and sentences, and "narrow the bounds and run again") is refetched from
// GET /api/v1/studies/{id}/importance whenever a trial completes. An accuracy-vs-latency study (or one with
// a latency limit) also shows its Pareto front and "the fastest model within X points of the best",
// refetched the same way from GET /api/v1/studies/{id} and /model/trial (the server decides; no copy here).
import { eventsUrl, get, post } from '../api.js';
import { h, acc, num, duration, badge, paramsText } from '../dom.js';
import { COLORS, downsample, historyChart, curvesChart, scatterChart, sliceChart, curveStyle, importanceChart } from '../charts.js';
import { drawParallel } from '../parallel.js';
import { openTrial } from '../trial.js';
import { studyWarnings } from './advice.js';

const PAGE = 50;
// Chart.js takes unparsed data (`parsing: false`) as sorted by x and reads the range from its ends.
const byX = (pts) => pts.sort((a, b) => a.x - b.x);
const MAX_POINTS = 2000;
const MAX_CURVES = 400;

export function mount(root, { id }) {
  const S = { id, study: null, trials: new Map(), curves: new Map(), progress: null, best: null, seq: null, stream: null, progressAt: Date.now(), omitted: 0 };
  const T = { sort: 'number', dir: -1, state: '', text: '', page: 0 };
  const el = {
    title: h('h1', {}, `Study ${id}`),
    state: h('span'),
    stop: h('button', { id: 'stop', class: 'danger', onclick: stop }, 'Stop'),
    conn: h('span', { class: 'conn muted', id: 'connection' }, 'connecting…'),
    bar: h('div', { class: 'bar progress', id: 'progress-bar' }),
    text: h('div', { id: 'progress-text' }),
    eta: h('div', { id: 'eta', class: 'muted' }),
    best: h('div', { class: 'card best', id: 'best-card' }, h('h2', {}, 'Best so far'), h('p', { class: 'muted' }, 'No complete trial yet.')),
    error: h('div', { class: 'error' }),
    warnings: h('div', { id: 'warnings-slot' }),
    tbody: h('tbody'),
    pager: h('div', { class: 'pager' }),
    count: h('span', { class: 'muted' }),
    slice: h('select', { id: 'slice-param' }),
    omitted: h('span', { class: 'muted' }),
    sentences: h('ul', { class: 'sentences', id: 'importance-sentences' }),
    importanceNote: h('p', { class: 'muted', id: 'importance-note' }, 'Loading…'),
    narrow: h('button', { id: 'narrow-rerun', class: 'primary', hidden: true, onclick: narrowAndRerun }, 'Narrow the bounds and run again'),
    tradeoff: h('div', { class: 'card', id: 'tradeoff-card', hidden: true }),
    frontNote: h('p', { class: 'muted', id: 'pareto-note' }),
    front: h('tbody', { id: 'pareto-front' }),
    within: h('input', { id: 'within-points', type: 'number', min: 0, max: 100, step: 'any', value: 1, style: { width: '6em' }, 'aria-label': 'points of accuracy' }),
    maxMs: h('input', { id: 'max-ms', type: 'number', min: 0, step: 'any', placeholder: 'any', style: { width: '6em' }, 'aria-label': 'ms per image' }),
    choice: h('div', { id: 'fastest-choice' }),
  };
  el.tradeoff.append(
    h('h2', {}, 'Accuracy vs speed'),
    el.frontNote,
    h('table', { class: 'trials' }, h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'val acc'), h('th', {}, 'ms/img'), h('th', {}, ''))), el.front),
    h('div', { class: 'row' }, 'The fastest model within ', el.within, ' points of the best, at most ', el.maxMs, ' ms per image:'),
    el.choice);
  el.within.addEventListener('input', () => refreshTradeoff());
  el.maxMs.addEventListener('input', () => refreshTradeoff());
  const canvas = () => h('canvas');
  const cv = { history: canvas(), curves: canvas(), time: canvas(), latency: canvas(), slice: canvas(), importance: canvas(), parallel: h('canvas', { class: 'parallel' }) };
  const chartBox = (title, c, extra) => h('div', { class: 'card chart' }, h('h3', {}, title, extra || null), h('div', { class: 'chart-wrap' }, c));
  const head = (key, label) => h('th', { class: 'sortable', 'data-key': key, onclick: () => { T.dir = T.sort === key ? -T.dir : -1; T.sort = key; renderTable(); } }, label);
  const filterState = h('select', { id: 'filter-state', onchange: (e) => { T.state = e.target.value; T.page = 0; renderTable(); } },
    ['', 'complete', 'running', 'queued', 'pruned', 'failed'].map((s) => h('option', { value: s }, s || 'all states')));
  const filterText = h('input', { id: 'filter-text', placeholder: 'filter params, worker, error…', oninput: (e) => { T.text = e.target.value.toLowerCase(); T.page = 0; renderTable(); } });

  root.append(
    h('div', { class: 'row spread' }, h('div', { class: 'row' }, el.title, el.state), h('div', { class: 'row' }, el.conn, el.stop)),
    el.error,
    el.warnings,
    h('div', { class: 'card' }, el.bar, h('div', { class: 'row spread' }, el.text, el.eta)),
    h('div', { class: 'grid2' },
      el.best,
      chartBox('Optimization history', cv.history)),
    el.tradeoff,
    h('div', { class: 'card', id: 'importance-card' },
      h('div', { class: 'row spread' }, h('h2', {}, 'What mattered'), el.narrow),
      h('div', { class: 'grid2 importance' },
        h('div', {}, el.importanceNote, el.sentences),
        h('div', { class: 'chart-wrap' }, cv.importance))),
    h('div', { class: 'grid2' },
      chartBox('Learning curves', cv.curves, el.omitted),
      chartBox('Accuracy vs training time', cv.time)),
    h('div', { class: 'grid2' },
      chartBox('Accuracy vs inference latency (ms/image)', cv.latency),
      chartBox('Parameter slice ', cv.slice, el.slice)),
    chartBox('Parallel coordinates', cv.parallel),
    h('div', { class: 'card' },
      h('div', { class: 'row spread' }, h('h2', {}, 'Trials ', el.count), h('div', { class: 'row' }, filterState, filterText)),
      h('table', { class: 'trials', id: 'trials-table' },
        h('thead', {}, h('tr', {}, head('number', '#'), head('state', 'state'), head('val_accuracy', 'val acc'), head('test_accuracy', 'test acc'),
          head('train_seconds', 'train'), head('inference_ms', 'ms/img'), head('parameter_count', 'weights'), head('worker_id', 'worker'), h('th', {}, 'params'))),
        el.tbody),
      el.pager),
  );

  const charts = {
    history: historyChart(cv.history), curves: curvesChart(cv.curves),
    time: scatterChart(cv.time, 'training seconds'), latency: scatterChart(cv.latency, 'ms per image', true, true), slice: sliceChart(cv.slice),
    importance: importanceChart(cv.importance),
  };
  el.slice.addEventListener('change', () => renderCharts());

  // ---- the stream ----
  let ws = null, closed = false, retry = 0, retryTimer = null;
  function connect() {
    ws = new WebSocket(eventsUrl(id, S.seq, S.stream));
    ws.onopen = () => { retry = 0; el.conn.textContent = 'live'; el.conn.className = 'conn live'; };
    ws.onmessage = (e) => { apply(JSON.parse(e.data)); schedule(); };
    ws.onclose = (e) => {
      if (closed) return;
      el.conn.className = 'conn muted';
      if (S.study && S.study.state !== 'running' && e.code === 1000) { el.conn.textContent = 'finished'; return; }
      // Dropped (slow, restarted, network): resume from the last seq seen; the server replays or snapshots.
      const wait = Math.min(10000, 500 * 2 ** retry++);
      el.conn.textContent = `reconnecting in ${Math.round(wait / 1000)}s${e.reason ? ` (${e.reason})` : ''}`;
      retryTimer = setTimeout(connect, wait);
    };
  }

  function apply(m) {
    if (m.type === 'snapshot') {
      S.study = m.study; S.progress = m.study.progress; S.best = m.study.best_trial; S.progressAt = Date.now();
      S.trials = new Map(m.trials.map((t) => [t.id, t]));
      S.curves = new Map(m.curves.map((c) => [c.trial_id, c.points]));
      S.omitted = m.curves_omitted; S.stream = m.stream; S.seq = m.seq;
      setupSlice();
      refreshImportance();
      refreshTradeoff();
      return;
    }
    S.seq = m.seq;
    switch (m.type) {
      case 'trial_queued': case 'trial_started': case 'trial_completed': case 'trial_pruned': case 'trial_failed':
        S.trials.set(m.trial.id, m.trial);
        if (m.type === 'trial_completed') { refreshImportance(); refreshTradeoff(); }
        break;
      case 'trial_epoch': {
        const pts = S.curves.get(m.trial_id) || [];
        const i = pts.findIndex((p) => p[0] === m.metrics.epoch);
        const p = [m.metrics.epoch, m.metrics.val_accuracy];
        if (i >= 0) pts[i] = p; else pts.push(p);
        S.curves.set(m.trial_id, pts);
        trimCurves();
        break;
      }
      case 'progress':
        S.progress = m.progress; S.best = m.best_trial; S.progressAt = Date.now();
        break;
      case 'study_finished':
        if (S.study) { S.study.state = m.state; S.study.error = m.error; S.study.end_reason = m.end_reason; S.study.end_reason_text = null; }
        break;
      default: break; // worker_up / worker_down: shown on the Workers page
    }
  }

  function trimCurves() {
    if (S.curves.size <= MAX_CURVES) return;
    for (const tid of S.curves.keys()) {
      const t = S.trials.get(tid);
      if (t && t.state !== 'running' && tid !== S.best?.id) { S.curves.delete(tid); S.omitted++; }
      if (S.curves.size <= MAX_CURVES) break;
    }
  }

  // ---- rendering, throttled: cheap parts often, charts less often when the study is big ----
  let timer = null, chartsAt = 0;
  function schedule() {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      renderHeader();
      renderTable();
      const every = S.trials.size > 2000 ? 2000 : 300;
      if (Date.now() - chartsAt >= every) { chartsAt = Date.now(); renderCharts(); } else schedule();
    }, 100);
  }
  const ticker = setInterval(renderEta, 1000);

  function renderHeader() {
    const s = S.study;
    if (!s) return;
    el.title.textContent = `${s.name} (#${s.id})`;
    el.state.replaceChildren(badge(s.state));
    el.stop.hidden = s.state !== 'running';
    el.error.textContent = s.error ? `Study error: ${s.error}` : '';
    el.warnings.replaceChildren(...[studyWarnings(s)].filter(Boolean));
    const p = S.progress;
    const failed = p.failed - p.interrupted;
    const total = p.total ?? Math.max(p.done + p.running + p.queued, 1);
    const seg = (n, cls, label) => n > 0 ? h('div', { class: `seg ${cls}`, title: `${n} ${label}`, style: { width: `${(100 * n) / total}%` } }) : null;
    el.bar.replaceChildren(...[seg(p.complete, 'complete', 'complete'), seg(p.pruned, 'pruned', 'pruned'), seg(failed, 'failed', 'failed'), seg(p.running, 'running', 'running'), seg(p.queued, 'queued', 'queued')].filter(Boolean));
    el.text.replaceChildren(
      h('strong', {}, `${p.done} / ${p.total ?? '∞'} done`),
      ` · ${p.complete} complete · ${p.running} running · ${p.queued} queued · ${p.pruned} pruned · ${failed} failed`,
      p.interrupted ? ` (${p.interrupted} interrupted, retried)` : '',
      ` · elapsed ${duration(p.elapsed_seconds + (s.state === 'running' ? (Date.now() - S.progressAt) / 1000 : 0))}`);
    renderEta();
    renderBest();
  }

  function renderEta() {
    const p = S.progress;
    if (!p || !S.study) return;
    if (S.study.state !== 'running') {
      // Why it ended (trial budget, minutes budget, ...); a failed study's reason is the error above.
      const why = S.study.state === 'failed' ? null : (S.study.end_reason_text || S.study.end_reason?.replaceAll('_', ' '));
      el.eta.textContent = `study ${S.study.state}${why ? ` · ${why}` : ''}`;
      return;
    }
    if (p.eta_seconds == null) { el.eta.textContent = 'time left: estimating (after the first trial)…'; return; }
    const gone = (Date.now() - S.progressAt) / 1000;
    const left = (x) => Math.max(0, x - gone);
    const [lo, hi] = p.eta_range_seconds || [p.eta_seconds, p.eta_seconds];
    el.eta.textContent = hi - lo > 0.25 * Math.max(p.eta_seconds, 1)
      ? `time left: ${duration(left(lo))} – ${duration(left(hi))}`
      : `time left: ~${duration(left(p.eta_seconds))}`;
  }

  function renderBest() {
    const b = S.best;
    if (!b) return;
    el.best.replaceChildren(
      h('div', { class: 'row spread' }, h('h2', {}, 'Best so far'),
        h('a', { class: 'button primary', id: 'download-model', href: `/api/v1/studies/${id}/model`, download: '' }, 'Download model')),
      h('div', { class: 'big' }, acc(b.val_accuracy), h('span', { class: 'muted' }, ' val'), '  ', acc(b.test_accuracy), h('span', { class: 'muted' }, ' test')),
      h('p', { class: 'muted' }, `trial #${b.number} · ${duration(b.train_seconds)} training · ${num(b.inference_ms)} ms/image · ${(b.parameter_count ?? 0).toLocaleString('en')} weights`),
      h('table', { class: 'kv' }, h('tbody', {}, Object.entries(b.params || {}).map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, num(v)))))),
      h('p', { class: 'muted', id: 'model-files' },
        'The zip holds model.safetensors (weights), model.json (architecture, class names, input size and normalisation, metrics) and model.onnx (FP32). ',
        h('a', { id: 'download-int8', href: `/api/v1/studies/${id}/model?int8=true`, download: '' }, 'Download with INT8'),
        ' adds model.int8.onnx (QDQ, calibrated on training images: TensorRT builds int8 engines from it).'),
      h('p', { class: 'muted' }, 'Serve it (dynamic batching, Open Inference Protocol v2):'),
      h('pre', { class: 'cmd', id: 'serve-command' }, `tanren-serve --control-url ${location.origin} --study ${id}`),
      h('button', { onclick: () => openTrial(b.id, S.study) }, 'Details'));
  }

  function rowsFiltered() {
    let rows = [...S.trials.values()];
    if (T.state) rows = rows.filter((t) => t.state === T.state);
    if (T.text) rows = rows.filter((t) => `${paramsText(t.params)} ${t.worker_id || ''} ${t.error || ''}`.toLowerCase().includes(T.text));
    const k = T.sort;
    rows.sort((a, b) => {
      const x = a[k], y = b[k];
      if (x == null && y == null) return 0;
      if (x == null) return 1;
      if (y == null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * T.dir;
    });
    return rows;
  }

  function renderTable() {
    const rows = rowsFiltered();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    T.page = Math.min(T.page, pages - 1);
    el.count.textContent = `(${rows.length.toLocaleString('en')} of ${S.trials.size.toLocaleString('en')})`;
    el.tbody.replaceChildren(...rows.slice(T.page * PAGE, (T.page + 1) * PAGE).map((t) =>
      h('tr', { class: `trial ${t.id === S.best?.id ? 'is-best' : ''}`, 'data-id': t.id, onclick: () => openTrial(t.id, S.study) },
        h('td', {}, t.number), h('td', {}, badge(t.state)), h('td', {}, acc(t.val_accuracy)), h('td', {}, acc(t.test_accuracy)),
        h('td', {}, duration(t.train_seconds)), h('td', {}, num(t.inference_ms)), h('td', {}, t.parameter_count?.toLocaleString('en') ?? '–'),
        h('td', {}, t.worker_id || '–'), h('td', { class: 'params' }, t.error ? h('span', { class: 'error' }, t.error) : paramsText(t.params)))));
    for (const th of document.querySelectorAll('#trials-table th.sortable')) {
      th.classList.toggle('sorted', th.dataset.key === T.sort);
      th.dataset.dir = T.dir > 0 ? '▲' : '▼';
    }
    el.pager.replaceChildren(
      h('button', { disabled: T.page === 0, onclick: () => { T.page--; renderTable(); } }, '‹ newer'),
      h('span', { class: 'muted' }, ` page ${T.page + 1} of ${pages} `),
      h('button', { disabled: T.page >= pages - 1, onclick: () => { T.page++; renderTable(); } }, 'older ›'));
  }

  function spaceDefs() {
    return (S.study?.space?.space || []);
  }

  function setupSlice() {
    const cur = el.slice.value;
    el.slice.replaceChildren(...spaceDefs().map((p) => h('option', { value: p.name }, p.name)));
    if (cur) el.slice.value = cur;
  }

  function renderCharts() {
    const all = [...S.trials.values()].sort((a, b) => a.number - b.number);
    const done = all.filter((t) => t.state === 'complete' && t.val_accuracy != null);
    const best = S.best?.id;
    // Optimization history: every complete trial (downsampled) and the best-so-far step line (exact).
    let run = -Infinity;
    const bestLine = [];
    for (const t of done) if (t.val_accuracy > run) { run = t.val_accuracy; bestLine.push({ x: t.number, y: run }); }
    if (bestLine.length && all.length) bestLine.push({ x: all[all.length - 1].number, y: run });
    const pts = downsample(done, MAX_POINTS, (t) => t.val_accuracy);
    charts.history.data.datasets[0].data = byX(pts.map((t) => ({ x: t.number, y: t.val_accuracy })));
    charts.history.data.datasets[1].data = bestLine;
    charts.history.update('none');

    charts.curves.data.datasets = [...S.curves.entries()].map(([tid, points]) => ({
      label: `trial ${S.trials.get(tid)?.number ?? tid}`,
      data: points.map(([x, y]) => ({ x, y })),
      ...curveStyle(S.trials.get(tid), tid === best),
    }));
    charts.curves.update('none');
    el.omitted.textContent = S.omitted ? ` (${S.omitted} older curves not shown)` : '';

    for (const [c, key] of [[charts.time, 'train_seconds'], [charts.latency, 'inference_ms']]) {
      const ok = pts.filter((t) => t[key] > 0);
      c.data.datasets[0].data = byX(ok.map((t) => ({ x: t[key], y: t.val_accuracy })));
      const b = S.trials.get(best);
      c.data.datasets[1].data = b && b[key] > 0 ? [{ x: b[key], y: b.val_accuracy }] : [];
      c.update('none');
    }

    const def = spaceDefs().find((p) => p.name === el.slice.value) || spaceDefs()[0];
    if (def) {
      const cat = def.type === 'categorical';
      const x = (t) => (t.params[def.name] === undefined ? null : cat ? def.choices.indexOf(t.params[def.name]) + (((t.number * 7919) % 100) / 100 - 0.5) * 0.3 : t.params[def.name]);
      charts.slice.data.datasets[0].data = byX(pts.filter((t) => x(t) !== null).map((t) => ({ x: x(t), y: t.val_accuracy })));
      charts.slice.options.scales.x = cat
        ? { type: 'linear', min: -0.5, max: def.choices.length - 0.5, ticks: { stepSize: 1, callback: (v) => def.choices[v] ?? '' }, title: { display: true, text: def.name } }
        : { type: def.log ? 'logarithmic' : 'linear', title: { display: true, text: `${def.name} (${def.log ? 'log' : 'linear'})` } };
      charts.slice.update('none');
    }

    const axes = spaceDefs().map((p) => ({
      label: p.name,
      value: (t) => {
        const v = t.params[p.name];
        if (v === undefined) return null; // a conditional parameter this trial did not use
        if (p.type === 'categorical') return p.choices.indexOf(v);
        return p.log && v > 0 ? Math.log10(v) : v;
      },
    }));
    axes.push({ label: 'val acc', value: (t) => t.val_accuracy });
    drawParallel(cv.parallel, axes, downsample(done, 1000, (t) => t.val_accuracy), best);
  }

  // Refetched when a trial completes: at most one request in flight and one waiting.
  function throttled(run) {
    let busy = false, again = false;
    const go = async () => {
      if (busy) { again = true; return; }
      busy = true;
      try { await run(); } finally {
        busy = false;
        if (again && !closed) { again = false; setTimeout(go, 500); }
      }
    };
    return go;
  }

  // ---- what mattered ----
  let importance = null;
  const refreshImportance = throttled(async () => {
    try {
      importance = await get(`/api/v1/studies/${id}/importance`);
      renderImportance();
    } catch (e) {
      el.importanceNote.textContent = `Importance unavailable: ${e.message}`;
    }
  });

  // ---- accuracy vs speed: the front and the fastest-within-X choice, as the server computes them ----
  const refreshTradeoff = throttled(async () => {
    const s = S.study;
    if (!s || !(s.objectives?.includes('latency') || s.max_latency_ms != null)) return;
    el.tradeoff.hidden = false;
    const q = new URLSearchParams();
    if (el.within.value !== '') q.set('within_points', el.within.value);
    if (el.maxMs.value !== '') q.set('max_latency_ms', el.maxMs.value);
    const [study, chosen] = await Promise.all([
      get(`/api/v1/studies/${id}`),
      get(`/api/v1/studies/${id}/model/trial?${q}`).catch((e) => ({ error: e.message })),
    ]);
    const front = study.pareto_front || [];
    const limit = study.max_latency_ms != null ? ` Trials slower than ${study.max_latency_ms} ms per image never count.` : '';
    el.frontNote.textContent = study.pareto_front
      ? `${front.length} trial(s) on the Pareto front: no other trial is both more accurate and faster.${limit}`
      : `This study maximises accuracy.${limit}`;
    el.front.replaceChildren(...front.map((p) => h('tr', { class: 'trial', 'data-id': p.trial_id, onclick: () => openTrial(p.trial_id, S.study) },
      h('td', {}, p.number), h('td', {}, acc(p.val_accuracy)), h('td', {}, num(p.inference_ms)),
      h('td', {}, h('a', { href: `/api/v1/trials/${p.trial_id}/model`, download: '', onclick: (e) => e.stopPropagation() }, 'download')))));
    charts.latency.data.datasets[2].data = front.map((p) => ({ x: p.inference_ms, y: p.val_accuracy }));
    charts.latency.update('none');
    el.choice.replaceChildren(chosen.error
      ? h('p', { class: 'muted' }, chosen.error)
      : h('p', {}, `trial #${chosen.number}: ${acc(chosen.val_accuracy)} val, ${num(chosen.inference_ms)} ms/image `,
        h('a', { class: 'button', id: 'download-fastest', href: `/api/v1/studies/${id}/model?${q}`, download: '' }, 'Download this model')));
  });

  function renderImportance() {
    const r = importance;
    const imps = r.importances || [];
    el.importanceNote.textContent = r.note
      ? r.note
      : `From ${r.trials_used} complete trials: how much each parameter separated the best ${r.top_trials} from the rest (PED-ANOVA).`;
    el.sentences.replaceChildren(...(r.sentences || []).map((t) => h('li', {}, t)));
    el.narrow.hidden = !imps.length;
    charts.importance.data.labels = imps.map((p) => p.label);
    charts.importance.data.datasets[0].data = imps.map((p) => p.importance);
    charts.importance.update('none');
  }

  function narrowAndRerun() {
    // The form reads the narrowed bounds from this study's importance itself (a shareable URL).
    location.hash = `#/new?dataset=${S.study?.dataset_id ?? ''}&from=${id}`;
  }

  async function stop() {
    if (!confirm('Stop this study? Running trials are cancelled.')) return;
    el.stop.disabled = true;
    try {
      await post(`/api/v1/studies/${id}/stop`);
    } catch (e) {
      el.error.textContent = e.message;
      el.stop.disabled = false;
    }
  }

  const onResize = () => renderCharts();
  window.addEventListener('resize', onResize);
  connect();
  get(`/api/v1/studies/${id}`).catch((e) => { el.error.textContent = e.message; });

  return () => {
    closed = true;
    clearTimeout(timer); clearTimeout(retryTimer); clearInterval(ticker);
    window.removeEventListener('resize', onResize);
    if (ws) ws.close(1000);
    for (const c of Object.values(charts)) c.destroy();
  };
}

export { COLORS };
