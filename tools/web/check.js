// Reader-side check of an nrconvert GLB in three.js (see check.html). Query: ?glb=<url>.
// Everything the test asserts on is measured here and returned as plain JSON in window.__result;
// a failure anywhere lands in window.__result.error (and as a page error) instead.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { HDRLoader } from 'three/addons/loaders/HDRLoader.js';

const BACKGROUND = [255, 0, 255]; // magenta: no texture in the test assets has it

function pixels(renderer, scene, camera) {
  renderer.render(scene, camera);
  const gl = renderer.getContext();
  const { width, height } = gl.canvas;
  const px = new Uint8Array(width * height * 4);
  gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, px);
  let covered = 0;
  const sum = [0, 0, 0];
  const sq = [0, 0, 0];
  const blue = [];
  for (let i = 0; i < px.length; i += 4) {
    const d = Math.abs(px[i] - BACKGROUND[0]) + Math.abs(px[i + 1] - BACKGROUND[1]) +
      Math.abs(px[i + 2] - BACKGROUND[2]);
    if (d < 24) continue;
    covered += 1;
    for (let c = 0; c < 3; c++) {
      sum[c] += px[i + c];
      sq[c] += px[i + c] * px[i + c];
    }
    blue.push(px[i + 2]);
  }
  const mean = sum.map((s) => (covered ? s / covered : 0));
  const std = sq.map((s, c) => (covered ? Math.sqrt(Math.max(s / covered - mean[c] ** 2, 0)) : 0));
  blue.sort((a, b) => a - b);
  const median = blue.length ? blue[blue.length >> 1] : -1;
  return { covered: covered / (width * height), mean, std, medianBlue: median };
}

function describeMaterial(m) {
  const tex = (t) => (t ? { name: t.name, width: t.image?.width, height: t.image?.height,
    colorSpace: t.colorSpace } : null);
  return {
    type: m.type, name: m.name, map: tex(m.map), normalMap: tex(m.normalMap),
    roughnessMap: tex(m.roughnessMap), metalnessMap: tex(m.metalnessMap), aoMap: tex(m.aoMap),
    ormShared: Boolean(m.aoMap && m.aoMap === m.roughnessMap && m.aoMap === m.metalnessMap),
  };
}

async function main() {
  const glbUrl = new URL(new URLSearchParams(location.search).get('glb'), location.href);
  const canvas = document.getElementById('view');
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, preserveDrawingBuffer: true });
  renderer.setClearColor(new THREE.Color().setRGB(...BACKGROUND.map((v) => v / 255),
    THREE.SRGBColorSpace), 1);
  const gltf = await new GLTFLoader().loadAsync(glbUrl.href);
  const scene = new THREE.Scene(); // gltf.scene is a Group: it cannot hold an environment
  scene.add(gltf.scene);
  const meshes = [];
  gltf.scene.traverse((o) => { if (o.isMesh) meshes.push(o); });
  const env = gltf.asset.extras?.nrconvert?.environment;
  if (env?.uri) {
    const hdr = await new HDRLoader().loadAsync(new URL(env.uri, glbUrl).href);
    hdr.mapping = THREE.EquirectangularReflectionMapping;
    scene.environment = hdr; // Z-up capture: the capture-frame map is already three's layout
  }
  const camera = gltf.cameras[0];
  camera.aspect = canvas.width / canvas.height;
  camera.updateProjectionMatrix();
  scene.updateMatrixWorld(true);

  const lod0 = meshes[0];
  const parser = gltf.parser;
  const json = parser.json;
  const nodeIndex = json.nodes.findIndex((n) => n.name === lod0.name);
  const lodIds = json.nodes[nodeIndex]?.extensions?.MSFT_lod?.ids ?? [];
  const lods = [];
  for (const id of [nodeIndex, ...lodIds]) { // MSFT_lod is not built in: load the levels by id
    const node = await parser.getDependency('node', id);
    let mesh = null;
    node.traverse((o) => { if (o.isMesh && !mesh) mesh = o; });
    const g = mesh.geometry;
    lods.push({ name: node.name, triangles: g.index.count / 3,
      attributes: Object.keys(g.attributes).sort(), material: describeMaterial(mesh.material) });
  }
  const lit = pixels(renderer, scene, camera);

  const variants = json.extensions?.KHR_materials_variants?.variants ?? [];
  const captured = variants.findIndex((v) => v.name === 'captured');
  let unlit = null;
  let variantMaterial = null;
  if (captured >= 0) { // KHR_materials_variants is not built in either: apply the mapping
    const mapping = lod0.userData.gltfExtensions.KHR_materials_variants.mappings
      .find((m) => m.variants.includes(captured));
    const material = await parser.getDependency('material', mapping.material);
    lod0.material = material;
    variantMaterial = describeMaterial(material);
    unlit = pixels(renderer, scene, camera);
  }
  // Environment layout probe for the test: the red byte at the centre of a narrow view of the
  // environment (as background) looking along a glTF-frame direction.
  window.probeEnvironment = (dir) => {
    const probe = new THREE.Scene();
    probe.background = scene.environment;
    const look = new THREE.PerspectiveCamera(5, canvas.width / canvas.height, 0.1, 10);
    look.lookAt(new THREE.Vector3(...dir));
    renderer.render(probe, look);
    const gl = renderer.getContext();
    const px = new Uint8Array(4);
    gl.readPixels(canvas.width >> 1, canvas.height >> 1, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    return Array.from(px.slice(0, 3));
  };
  return {
    meshes: meshes.map((m) => m.name), lods, lit, unlit, variantMaterial,
    variants: variants.map((v) => v.name), environment: Boolean(scene.environment),
    cameras: gltf.cameras.map((c) => c.name), renderer: renderer.getContext().getParameter(
      renderer.getContext().VERSION),
  };
}

main().then((r) => { window.__result = r; }, (e) => {
  window.__result = { error: String(e && e.stack ? e.stack : e) };
  throw e;
});
