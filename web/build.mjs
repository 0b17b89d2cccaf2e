// Bundle the dashboard into crates/tanren-control/assets/ (committed, so `cargo build` needs no Node).
// `node build.mjs --check` builds into a temp dir and fails if the committed bundle is out of date.
import * as esbuild from 'esbuild';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const assets = join(here, '..', 'crates', 'tanren-control', 'assets');
const check = process.argv.includes('--check');
const out = check ? mkdtempSync(join(tmpdir(), 'tanren-web-')) : assets;

await esbuild.build({
  entryPoints: { app: join(here, 'src', 'main.js') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  legalComments: 'none',
  outdir: out,
  logLevel: 'warning',
});
await esbuild.build({
  entryPoints: { app: join(here, 'src', 'style.css') },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: 'warning',
});
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));

if (check) {
  const stale = ['index.html', 'app.js', 'app.css'].filter(
    (f) => !readFileSync(join(out, f)).equals(readFileSync(join(assets, f))),
  );
  if (stale.length) {
    console.error(`dashboard bundle out of date: ${stale.join(', ')}; run \`npm run build\` in web/`);
    process.exit(1);
  }
  console.log('dashboard bundle is up to date');
}
