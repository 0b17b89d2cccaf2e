// Parallel coordinates on a plain canvas (Chart.js has none): one vertical axis per parameter plus
// validation accuracy, one polyline per complete trial coloured by accuracy, the best one on top.

function color(t) {
  // Light grey-blue for poor trials to dark green for the best.
  const a = [190, 200, 215], b = [20, 110, 40];
  return `rgba(${a.map((x, i) => Math.round(x + (b[i] - x) * t)).join(',')},${0.25 + 0.6 * t})`;
}

export function drawParallel(canvas, axes, trials, bestId) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, ht = canvas.clientHeight;
  if (!w || !ht) return;
  canvas.width = w * dpr;
  canvas.height = ht * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, ht);
  const top = 26, bottom = ht - 18, left = 40, right = w - 40;
  const n = axes.length;
  const xs = axes.map((_, i) => left + (n === 1 ? 0 : (i * (right - left)) / (n - 1)));
  const ys = axes.map((ax) => {
    const vals = trials.map((t) => ax.value(t)).filter((v) => v != null && isFinite(v));
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi === lo) { hi = lo + 1; }
    return (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
  });
  const accs = trials.map((t) => t.val_accuracy);
  const amin = Math.min(...accs), amax = Math.max(...accs);
  const norm = (a) => (amax > amin ? (a - amin) / (amax - amin) : 1);
  const order = [...trials].sort((a, b) => a.val_accuracy - b.val_accuracy);
  for (const t of order) {
    const best = t.id === bestId;
    g.strokeStyle = best ? '#6a1b9a' : color(norm(t.val_accuracy));
    g.lineWidth = best ? 2.5 : 1;
    g.beginPath();
    axes.forEach((ax, i) => {
      const v = ax.value(t);
      const y = v == null || !isFinite(v) ? bottom : ys[i](v);
      if (i === 0) g.moveTo(xs[i], y); else g.lineTo(xs[i], y);
    });
    g.stroke();
  }
  g.strokeStyle = '#444';
  g.fillStyle = '#222';
  g.lineWidth = 1;
  g.font = '11px sans-serif';
  g.textAlign = 'center';
  axes.forEach((ax, i) => {
    g.beginPath();
    g.moveTo(xs[i], top);
    g.lineTo(xs[i], bottom);
    g.stroke();
    g.fillText(ax.label, xs[i], top - 10);
  });
}
