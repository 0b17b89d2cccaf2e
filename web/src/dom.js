// Tiny DOM and formatting helpers shared by every page.

/** h('div', {class: 'x', onclick: f}, child, ...) → element. Strings become text nodes (never HTML). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function acc(x) {
  return x == null ? '–' : `${(x * 100).toFixed(1)}%`;
}

export function num(x, digits = 3) {
  if (x == null) return '–';
  if (typeof x !== 'number') return String(x);
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) < 0.01 ? x.toExponential(2) : x.toFixed(digits);
}

export function duration(s) {
  if (s == null || !isFinite(s)) return '–';
  if (s < 10) return `${Math.max(0, s).toFixed(1)}s`;
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function ago(ms) {
  return `${duration((Date.now() - ms) / 1000)} ago`;
}

export function bytes(n) {
  if (n == null) return '–';
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function paramsText(p) {
  return Object.entries(p || {}).map(([k, v]) => `${k}=${num(v)}`).join(' ');
}

export function badge(state) {
  return h('span', { class: `badge ${state}` }, state);
}
