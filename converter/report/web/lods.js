// The report viewer's LOD chain: MSFT_lod is not built into three.js, so the levels are loaded by
// node id and one is shown at a time, chosen by screen coverage (the measure MSFT_lod and
// nrconvert's `MSFT_screencoverage` thresholds use, see docs/format.md) or by hand.
import * as THREE from 'three';

const MSFT_LOD = 'MSFT_lod';
const COVERAGE_KEY = 'MSFT_screencoverage';

/** Thresholds for a chain whose file gives none or bad ones (as the Blender add-on does): 4x less
 * screen area per level, the last 0 so the coarsest level never disappears. */
export function defaultCoverage(n) {
  return Array.from({ length: n }, (_, k) => (k === n - 1 ? 0 : 0.5 * 0.25 ** k));
}

function validCoverage(values, n) {
  return Array.isArray(values) && values.length === n
    && values.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1)
    && values.every((v, k) => k === 0 || v < values[k - 1]);
}

/** {indices, coverage}: node indices finest first and one threshold per level, from MSFT_lod on a
 * root node of the default scene; without it, the first root node alone (a single-LOD asset). */
export function lodChain(json) {
  const scene = json.scenes?.[json.scene ?? 0];
  const roots = scene?.nodes ?? [];
  for (const index of roots) {
    const def = json.nodes[index];
    const ext = def?.extensions?.[MSFT_LOD];
    if (ext && Array.isArray(ext.ids)) {
      const indices = [index, ...ext.ids];
      const given = def.extras?.[COVERAGE_KEY];
      return { indices, coverage: validCoverage(given, indices.length) ? given : defaultCoverage(indices.length) };
    }
  }
  const first = roots.find((i) => json.nodes[i]?.mesh !== undefined);
  if (first === undefined) throw new Error('the GLB has no mesh node in its scene');
  return { indices: [first], coverage: [0] };
}

/** Share of the frame the bounding sphere covers, seen by a perspective camera (Infinity with
 * the eye inside it): pi tan^2(a) / (4 tan(fovx/2) tan(fovy/2)), a the sphere's angular radius. */
export function screenCoverage(camera, sphere) {
  const d = camera.position.distanceTo(sphere.center);
  if (d <= sphere.radius) return Infinity;
  const sinA = sphere.radius / d;
  const tanA = sinA / Math.sqrt(1 - sinA * sinA);
  const halfY = Math.tan(THREE.MathUtils.degToRad(camera.fov) / 2) / camera.zoom;
  const halfX = halfY * camera.aspect;
  return (Math.PI * tanA * tanA) / (4 * halfX * halfY);
}

/** Level k shows while coverage > threshold k (MSFT_lod); below the last one, the coarsest. */
export function levelForCoverage(thresholds, coverage) {
  const k = thresholds.findIndex((c) => coverage > c);
  return k < 0 ? thresholds.length - 1 : k;
}

/** The loaded levels under one group, one visible at a time. `mode` is 'auto' or a level index. */
export class LodSwitch {
  constructor(levels, coverage) {
    this.levels = levels; // [{name, object, triangles}]
    this.coverage = coverage;
    this.group = new THREE.Group();
    for (const level of levels) this.group.add(level.object);
    this.sphere = new THREE.Box3().setFromObject(levels[0].object).getBoundingSphere(new THREE.Sphere());
    this.mode = 'auto';
    this.current = 0;
    this.lastCoverage = null;
  }

  /** Shows the level the mode asks for at this camera; returns its index. */
  update(camera) {
    this.lastCoverage = screenCoverage(camera, this.sphere);
    this.current = this.mode === 'auto' ? levelForCoverage(this.coverage, this.lastCoverage) : this.mode;
    this.levels.forEach((level, k) => { level.object.visible = k === this.current; });
    return this.current;
  }
}

/** Loads every level of the chain (the lower ones are not scene roots) with its triangle count. */
export async function loadLevels(parser, chain) {
  const objects = await Promise.all(chain.indices.map((i) => parser.getDependency('node', i)));
  return objects.map((object, k) => {
    let triangles = 0;
    object.traverse((o) => {
      if (o.isMesh) triangles += (o.geometry.index ? o.geometry.index.count : o.geometry.attributes.position.count) / 3;
    });
    return { name: object.name || `LOD${k}`, object, triangles };
  });
}
