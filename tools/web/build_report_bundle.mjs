// Builds converter/report/viewer.bundle.js, the report's 3D view as ONE classic script: three.js,
// GLTFLoader, OrbitControls, HDRLoader, RoomEnvironment, our neural_material.js and the viewer
// (converter/report/web/*.js), minified. A page opened from disk (file://) can load a classic
// <script src>, but neither ES-module imports of other files nor fetch(), so the report cannot
// use the module sources directly. The bundle is committed and shipped as package data: users and
// CI never run this; run it after changing any of its inputs:
//
//   cd tools/web && npm ci && node build_report_bundle.mjs
//
// The first line records the SHA-256 of every input of ours (from esbuild's metafile) plus this
// script and package-lock.json (which pins three.js); tests/test_report_html.py checks them
// against the files, so a stale bundle fails the tests.
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const WEB = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(WEB, '..', '..');
const ENTRY = join(ROOT, 'converter', 'report', 'web', 'viewer.js');
const OUT = join(ROOT, 'converter', 'report', 'viewer.bundle.js');
const MARK = 'nrconvert report viewer bundle';

const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');
const rel = (path) => relative(ROOT, resolve(ROOT, path)).split('\\').join('/');

const result = await esbuild.build({
  entryPoints: [ENTRY],
  absWorkingDir: ROOT,
  bundle: true,
  format: 'iife',
  minify: true,
  target: 'es2020',
  nodePaths: [join(WEB, 'node_modules')],
  legalComments: 'none', // three.js's licence is written in full below instead
  metafile: true,
  write: false,
  logLevel: 'warning',
});
const ours = Object.keys(result.metafile.inputs).filter((p) => !p.includes('node_modules/')).map(rel);
const inputs = [...ours, rel(fileURLToPath(import.meta.url)), rel(join(WEB, 'package-lock.json'))].sort();
const record = Object.fromEntries(inputs.map((p) => [p, sha256(join(ROOT, p))]));
const three = JSON.parse(readFileSync(join(WEB, 'node_modules', 'three', 'package.json'), 'utf8')).version;
const licence = readFileSync(join(WEB, 'node_modules', 'three', 'LICENSE'), 'utf8').trim();
const header = `/*! ${MARK}; inputs: ${JSON.stringify(record)} */\n` +
  `/*! three.js ${three} (https://threejs.org), bundled here:\n${licence.replaceAll('*/', '* /')}\n*/\n`;
const tmp = `${OUT}.tmp-${process.pid}`;
writeFileSync(tmp, header + result.outputFiles[0].text);
renameSync(tmp, OUT);
console.log(`wrote ${rel(OUT)} (${(header.length + result.outputFiles[0].contents.length) / 1024 | 0} KiB) from ${inputs.length} inputs`);
