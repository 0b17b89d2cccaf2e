// Chart.js set-up and the study charts. Charts are rebuilt from the study state at most once per
// animation frame and with downsampled points, so 10,000 trials stay responsive.
import {
  Chart, ScatterController, LineController, BarController, PointElement, LineElement, BarElement, LinearScale,
  LogarithmicScale, CategoryScale, Tooltip, Legend, Filler,
} from 'chart.js';

Chart.register(ScatterController, LineController, BarController, PointElement, LineElement, BarElement, LinearScale, LogarithmicScale, CategoryScale, Tooltip, Legend, Filler);
Chart.defaults.animation = false;
Chart.defaults.font.size = 11;
Chart.defaults.color = '#555';
Chart.defaults.plugins.legend.labels.boxWidth = 10;

export const COLORS = { complete: '#2e7d32', pruned: '#ef6c00', failed: '#c62828', running: '#1565c0', queued: '#9e9e9e', best: '#6a1b9a' };

/** At most `max` items: the `keep` best by `score` plus an even stride over the rest. */
export function downsample(items, max, score, keep = 100) {
  if (items.length <= max) return items;
  const top = new Set([...items].sort((a, b) => score(b) - score(a)).slice(0, keep));
  const rest = items.filter((x) => !top.has(x));
  const stride = rest.length / (max - top.size);
  const out = [...top];
  for (let i = 0; i < rest.length; i += stride) out.push(rest[Math.floor(i)]);
  return out;
}

export function makeChart(canvas, config) {
  return new Chart(canvas, {
    ...config,
    options: {
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      plugins: { legend: { display: true, position: 'bottom' }, tooltip: { enabled: true }, ...(config.options?.plugins || {}) },
      ...config.options,
    },
  });
}

const pct = { callback: (v) => `${Math.round(v * 100)}%` };

export function historyChart(canvas) {
  return makeChart(canvas, {
    type: 'scatter',
    data: { datasets: [
      { label: 'trial val accuracy', data: [], backgroundColor: COLORS.complete, pointRadius: 2.5 },
      { label: 'best so far', type: 'line', data: [], borderColor: COLORS.best, stepped: true, pointRadius: 0, borderWidth: 2 },
    ] },
    options: { scales: { x: { title: { display: true, text: 'trial #' } }, y: { ticks: pct, title: { display: true, text: 'val accuracy' } } } },
  });
}

export function curvesChart(canvas) {
  return makeChart(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      plugins: { legend: { display: false } },
      scales: { x: { type: 'linear', title: { display: true, text: 'epoch' }, ticks: { stepSize: 1 } }, y: { ticks: pct, title: { display: true, text: 'val accuracy' } } },
    },
  });
}

/** Accuracy against `xLabel`; with `front`, a third dataset joins an accuracy-vs-latency Pareto front. */
export function scatterChart(canvas, xLabel, logX = false, front = false) {
  const datasets = [{ label: 'complete trials', data: [], backgroundColor: COLORS.complete, pointRadius: 2.5 }, { label: 'best', data: [], backgroundColor: COLORS.best, pointRadius: 5 }];
  if (front) datasets.push({ label: 'Pareto front', data: [], showLine: true, stepped: 'before', borderColor: COLORS.running, backgroundColor: COLORS.running, pointRadius: 3.5, borderWidth: 1.5 });
  return makeChart(canvas, {
    type: 'scatter',
    data: { datasets },
    options: { scales: { x: { type: logX ? 'logarithmic' : 'linear', title: { display: true, text: xLabel } }, y: { ticks: pct, title: { display: true, text: 'val accuracy' } } } },
  });
}

export function sliceChart(canvas) {
  return makeChart(canvas, {
    type: 'scatter',
    data: { datasets: [{ label: 'complete trials', data: [], backgroundColor: COLORS.complete, pointRadius: 2.5 }] },
    options: { plugins: { legend: { display: false } }, scales: { x: { type: 'linear' }, y: { ticks: pct, title: { display: true, text: 'val accuracy' } } } },
  });
}

/** Per trial state, the style of its learning curve: pruned ones end in a red cross (visibly cut). */
export function curveStyle(trial, isBest) {
  const state = trial?.state || 'running';
  const color = isBest ? COLORS.best : COLORS[state] || COLORS.queued;
  return {
    borderColor: color,
    backgroundColor: color,
    borderWidth: isBest ? 2.5 : state === 'running' ? 2 : 1,
    borderDash: state === 'pruned' ? [4, 3] : undefined,
    pointRadius: (ctx) => (state === 'pruned' && ctx.dataIndex === ctx.dataset.data.length - 1 ? 5 : 0),
    pointStyle: 'crossRot',
    order: isBest ? 0 : state === 'running' ? 1 : 2,
  };
}

/** Parameter importance: one horizontal bar per parameter, most important on top. */
export function importanceChart(canvas) {
  return makeChart(canvas, {
    type: 'bar',
    data: { labels: [], datasets: [{ label: 'share of importance', data: [], backgroundColor: COLORS.best }] },
    options: {
      indexAxis: 'y',
      parsing: true,
      plugins: { legend: { display: false } },
      scales: { x: { min: 0, max: 1, ticks: pct, title: { display: true, text: 'importance (PED-ANOVA)' } }, y: { type: 'category' } },
    },
  });
}
