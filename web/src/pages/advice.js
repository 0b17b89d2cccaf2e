// Guidance on bounds: the new-study form's live cost estimate and warnings (POST /api/v1/studies/estimate
// as bounds change), and the warnings a study was created with, on its page.

import { post } from '../api.js';
import { h } from '../dom.js';

/** "45 s", "12 min", "3.5 h". */
export function seconds(s) {
  if (s == null) return '–';
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** A list of warnings ({param, message}), or nothing when there are none. */
export function warningList(warnings) {
  if (!warnings || !warnings.length) return null;
  return h('ul', { class: 'warnings' },
    warnings.map((w) => h('li', {}, h('strong', {}, w.param.replaceAll('_', ' ')), ': ', w.message)));
}

/** The estimate in numbers: per trial, and for the budget with its 80% range. */
export function estimateLine(e) {
  if (!e) return null;
  const parts = [`about ${seconds(e.trial_seconds)} per trial (at most ${seconds(e.worst_trial_seconds)})`];
  if (e.total_seconds != null) {
    const [lo, hi] = e.total_range_seconds || [e.total_seconds, e.total_seconds];
    parts.push(`${seconds(e.total_seconds)} for the budget (80%: ${seconds(lo)} – ${seconds(hi)}; at most ${seconds(e.worst_total_seconds)}) on ${e.workers} worker${e.workers === 1 ? '' : 's'}`);
  }
  if (!e.calibrated_on) parts.push('a rough guess until trials have been measured on this device');
  return h('p', { class: 'estimate' }, parts.join(' · '));
}

/**
 * The form's live estimate: `body()` builds the request the form would send. Returns the element and
 * an `update()` to call on input (debounced here; a late answer for old bounds is dropped).
 */
export function estimatePanel(body) {
  const el = h('div', { class: 'card', id: 'estimate' }, h('h2', {}, 'Cost and warnings'), h('p', { class: 'muted' }, 'Estimating…'));
  let timer = null;
  let seq = 0;
  const run = async () => {
    const mine = ++seq;
    try {
      const r = await post('/api/v1/studies/estimate', body());
      if (mine !== seq) return;
      el.replaceChildren(h('h2', {}, 'Cost and warnings'), estimateLine(r.estimate),
        warningList(r.warnings) || h('p', { class: 'muted' }, 'No warnings about these bounds.'));
    } catch (err) {
      if (mine !== seq) return;
      el.replaceChildren(h('h2', {}, 'Cost and warnings'), h('p', { class: 'error' }, err.message));
    }
  };
  return {
    el,
    update() {
      clearTimeout(timer);
      timer = setTimeout(run, 400);
    },
  };
}

/** The study page's card: what the bounds were warned about when the study was created. */
export function studyWarnings(study) {
  if (!study || !(study.warnings?.length || study.estimate)) return null;
  return h('div', { class: 'card', id: 'study-warnings' },
    h('h2', {}, 'Cost and warnings at creation'),
    estimateLine(study.estimate),
    warningList(study.warnings) || h('p', { class: 'muted' }, 'No warnings about these bounds.'));
}
