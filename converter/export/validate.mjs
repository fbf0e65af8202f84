// Runs the Khronos glTF-Validator on one glTF/GLB file and prints its JSON report on stdout.
//
// usage: node validate.mjs NODE_MODULES_DIR FILE
//
// NODE_MODULES_DIR is where the npm package `gltf-validator` is installed; it is passed in
// (not resolved from this file's location) because this script ships inside the Python package.
// External resources (buffers/images beside a .gltf) are read from FILE's folder only: URIs that
// escape it are refused, so validating an untrusted file never reads elsewhere on the disk.
import { createRequire } from "node:module";
import { promises as fs } from "node:fs";
import path from "node:path";

function fail(message, code = 2) {
  process.stderr.write(`validate.mjs: ${message}\n`);
  process.exit(code);
}

const [nodeModules, file] = process.argv.slice(2);
if (!nodeModules || !file) fail("usage: node validate.mjs NODE_MODULES_DIR FILE");

let validator;
try {
  const require = createRequire(path.join(path.resolve(nodeModules), "noop.js"));
  validator = require("gltf-validator");
} catch (err) {
  fail(`cannot load gltf-validator from ${nodeModules}: ${err.message}`, 3);
}

const fullPath = path.resolve(file);
const folder = path.dirname(fullPath);

async function readResource(uri) {
  const target = path.resolve(folder, decodeURIComponent(uri));
  const rel = path.relative(folder, target);
  if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) {
    throw new Error(`refusing external resource outside the asset folder: ${uri}`);
  }
  const real = await fs.realpath(target);
  const realRel = path.relative(await fs.realpath(folder), real);
  if (realRel.startsWith("..") || path.isAbsolute(realRel)) {
    throw new Error(`refusing external resource linked outside the asset folder: ${uri}`);
  }
  return new Uint8Array(await fs.readFile(real));
}

let bytes;
try {
  bytes = new Uint8Array(await fs.readFile(fullPath));
} catch (err) {
  fail(`cannot read ${fullPath}: ${err.message}`, 4);
}

try {
  const report = await validator.validateBytes(bytes, {
    uri: path.basename(fullPath),
    maxIssues: 0, // unlimited: the caller decides what to show
    writeTimestamp: false,
    externalResourceFunction: readResource,
  });
  process.stdout.write(JSON.stringify(report));
  process.stdout.write("\n");
} catch (err) {
  // Rejection: the validator could not even detect the format (not glTF/GLB at all).
  fail(`validator rejected ${fullPath}: ${err}`, 5);
}
