// Datasets: upload a zip (drop or pick) with a progress bar, then classes, counts per split, example
// thumbnails per class and the files that were skipped and why.
import { get, upload } from '../api.js';
import { h, bytes } from '../dom.js';

const THUMBS_PER_CLASS = 6;

export function mount(root, { id }) {
  const input = h('input', { type: 'file', accept: '.zip,application/zip', id: 'dataset-file', hidden: true });
  const bar = h('div', { class: 'bar-fill' });
  const status = h('div', { class: 'upload-status muted' }, 'Drop a .zip here or click to choose one: train/<class>/* and test/<class>/*, or only <class>/* folders.');
  const progress = h('div', { class: 'bar upload-bar', hidden: true }, bar);
  const zone = h('div', { class: 'dropzone', id: 'dropzone', tabindex: 0, onclick: () => input.click() }, status, progress);
  const list = h('div', { class: 'dataset-list' });
  const detail = h('div', { class: 'dataset-detail' });
  root.append(h('h1', {}, 'Datasets'), zone, input, h('div', { class: 'cols' }, list, detail));

  async function send(file) {
    progress.hidden = false;
    zone.classList.remove('error');
    bar.style.width = '0%';
    status.textContent = `Uploading ${file.name} (${bytes(file.size)})…`;
    try {
      const ds = await upload(file, (f) => {
        bar.style.width = `${(f * 100).toFixed(1)}%`;
        status.textContent = f < 1 ? `Uploading ${file.name}: ${(f * 100).toFixed(0)}%` : `Checking and extracting ${file.name}…`;
      });
      status.textContent = `Uploaded ${ds.name}: ${ds.num_classes} classes, ${ds.num_train} train / ${ds.num_test} test images.`;
      await refresh(ds.id);
      // Update the address without a hashchange, which would remount the page and its progress bar.
      history.replaceState(null, '', `#/datasets/${ds.id}`);
    } catch (e) {
      zone.classList.add('error');
      status.textContent = `Upload refused: ${e.message}`;
    }
  }

  input.addEventListener('change', () => input.files[0] && send(input.files[0]));
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const f = e.dataTransfer.files[0];
    if (f) send(f);
  });

  async function refresh(selected) {
    const { datasets } = await get('/api/v1/datasets');
    list.replaceChildren(
      h('h2', {}, 'Uploaded'),
      ...(datasets.length ? [] : [h('p', { class: 'muted' }, 'None yet.')]),
      ...datasets.map((d) =>
        h('a', { class: `dataset-item ${d.id === selected ? 'active' : ''}`, href: `#/datasets/${d.id}` },
          h('strong', {}, d.name), h('span', { class: 'muted' }, ` #${d.id} · ${d.num_classes} classes · ${d.num_train + d.num_test} images`))),
    );
    const d = datasets.find((x) => x.id === selected) || (selected == null ? datasets[datasets.length - 1] : null);
    detail.replaceChildren(d ? show(d) : h('p', { class: 'muted' }, 'Upload a dataset to see it here.'));
  }

  refresh(id).catch((e) => detail.replaceChildren(h('p', { class: 'error' }, e.message)));
}

function show(d) {
  const classes = d.classes || [];
  const skipped = d.skipped || [];
  return h('div', { class: 'card' },
    h('div', { class: 'row spread' },
      h('h2', {}, d.name),
      h('a', { class: 'button primary', href: `#/new?dataset=${d.id}` }, 'New study with this dataset')),
    h('p', { class: 'muted' }, `sha256 ${d.sha256.slice(0, 16)}… · ${bytes(d.size_bytes)} · layout ${d.layout}`),
    h('table', { class: 'classes' },
      h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'class'), h('th', {}, 'train'), h('th', {}, 'test'), h('th', {}, 'examples'))),
      h('tbody', {}, classes.map((c) =>
        h('tr', {},
          h('td', {}, c.index), h('td', {}, c.name), h('td', {}, c.train), h('td', {}, c.test),
          h('td', { class: 'thumbs' },
            Array.from({ length: Math.min(THUMBS_PER_CLASS, c.train + c.test) }, (_, k) =>
              h('img', { loading: 'lazy', width: 48, height: 48, alt: `${c.name} example ${k + 1}`,
                src: `/api/v1/datasets/${d.id}/classes/${c.index}/thumbnails/${k}?size=64` }))))))),
    h('h3', {}, `Skipped files (${skipped.length})`),
    skipped.length
      ? h('table', { class: 'skipped' }, h('tbody', {}, skipped.slice(0, 200).map((s) => h('tr', {}, h('td', {}, s.path), h('td', { class: 'muted' }, s.reason)))))
      : h('p', { class: 'muted' }, 'Nothing was skipped.'));
}
