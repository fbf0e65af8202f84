// The report's interactive 3D view (index.html, section #viewer): the run's GLB with orbit
// controls, a look selector (lods.js / looks.js) and LOD switching, lit by the capture's estimated
// light for the PBR look. Bundled with three.js into one classic script (viewer.bundle.js, see
// tools/web/build_report_bundle.mjs) because a page opened from disk (file://) may neither import
// ES modules nor fetch() files: the GLB and the .hdr come as base64 in scene.glb.js
// (window.NRC_GLB, window.NRC_HDR), written by nrconvert.report.assets.
//
// For tests: window.nrcViewer = {state(), setLook(name), setLod(mode), setDistance(factor)} once
// ready; a failure shows in #viewer-note and is thrown (a page error).
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { HDRLoader } from 'three/addons/loaders/HDRLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { RoomEnvironment } from 'three/addons/environments/RoomEnvironment.js';
import { NeuralMaterialPlugin } from '../../export/web/neural_material.js';
import { LodSwitch, loadLevels, lodChain } from './lods.js';
import { LOOK_NAMES, Looks } from './looks.js';

const BACKGROUND = 0x2b2d31;
const LOOK_ORDER = ['neural', 'captured', 'pbr'];

function bytesOf(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out.buffer;
}

function showNote(text) {
  const note = document.getElementById('viewer-note');
  note.textContent = text;
  note.hidden = !text;
}

/** scene.environment: the capture's estimated light (the .hdr written beside the GLB, in
 * three's equirectangular layout for Z-up captures, docs/format.md), else a neutral room. */
function environment(renderer) {
  if (typeof window.NRC_HDR === 'string') {
    const hdr = new HDRLoader().createDataTexture(bytesOf(window.NRC_HDR));
    hdr.mapping = THREE.EquirectangularReflectionMapping;
    return hdr;
  }
  const pmrem = new THREE.PMREMGenerator(renderer);
  const room = pmrem.fromScene(new RoomEnvironment(), 0.04).texture;
  pmrem.dispose();
  return room;
}

/** Looks at the asset from the first capture camera's side (the photos' view), far enough back
 * for the bounding sphere to fill about 90 % of the frame's height. */
function frameAsset(camera, controls, sphere, cameras) {
  const from = new THREE.Vector3(1, 0.6, 1);
  if (cameras.length) cameras[0].getWorldPosition(from).sub(sphere.center);
  const fov = THREE.MathUtils.degToRad(camera.fov);
  const distance = (sphere.radius / Math.sin(fov / 2)) * 1.1;
  camera.position.copy(sphere.center).addScaledVector(from.normalize(), distance);
  controls.target.copy(sphere.center);
  controls.minDistance = sphere.radius * 0.6;
  controls.maxDistance = sphere.radius * 400; // far enough for the coarsest LOD to show
  controls.update();
  return distance;
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => new Option(label, v, false, v === value)));
}

async function start() {
  if (typeof window.NRC_GLB !== 'string') {
    showNote('scene.glb.js did not load: keep it next to index.html to see the 3D view.');
    return;
  }
  const canvas = document.getElementById('view3d');
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setClearColor(BACKGROUND, 1);
  const loader = new GLTFLoader().register((parser) => new NeuralMaterialPlugin(parser));
  const gltf = await loader.parseAsync(bytesOf(window.NRC_GLB), '');
  gltf.scene.updateMatrixWorld(true);
  const chain = lodChain(gltf.parser.json);
  const lods = new LodSwitch(await loadLevels(gltf.parser, chain), chain.coverage);
  const looks = new Looks(gltf.parser, lods.group);
  const scene = new THREE.Scene();
  scene.add(lods.group);
  scene.environment = environment(renderer);
  const camera = new THREE.PerspectiveCamera(35, 1, 0.01, 100);
  const controls = new OrbitControls(camera, canvas);
  const home = frameAsset(camera, controls, lods.sphere, gltf.cameras);
  const ui = { look: document.getElementById('look'), lod: document.getElementById('lod'),
    status: document.getElementById('lod-status') };
  let look = LOOK_ORDER.find((name) => looks.available.includes(name));
  let frames = 0;

  const render = () => {
    const { width, height } = canvas.getBoundingClientRect();
    renderer.setSize(Math.max(1, Math.round(width)), Math.max(1, Math.round(height)), false);
    camera.aspect = Math.max(width, 1) / Math.max(height, 1);
    const d = camera.position.distanceTo(lods.sphere.center);
    camera.near = Math.max(d - lods.sphere.radius, lods.sphere.radius) * 0.05;
    camera.far = (d + lods.sphere.radius) * 2;
    camera.updateProjectionMatrix();
    const k = lods.update(camera);
    const level = lods.levels[k];
    ui.status.textContent = `showing ${level.name} (${level.triangles.toLocaleString('en-US')} triangles), ` +
      `screen coverage ${lods.lastCoverage === Infinity ? 'full' : lods.lastCoverage.toFixed(3)}`;
    renderer.render(scene, camera);
    frames += 1;
  };
  const setLook = async (name) => {
    await looks.apply(name);
    look = name;
    ui.look.value = name;
    showNote(looks.note);
    render();
  };
  const setLod = (mode) => {
    lods.mode = mode === 'auto' ? 'auto' : Number(mode);
    ui.lod.value = String(mode);
    render();
  };
  fillSelect(ui.look, looks.available.map((name) => [name, LOOK_NAMES[name]]), look);
  fillSelect(ui.lod, [['auto', 'auto (screen coverage)'],
    ...lods.levels.map((l, k) => [String(k), `${l.name} (${l.triangles.toLocaleString('en-US')} triangles)`])], 'auto');
  ui.look.addEventListener('change', () => setLook(ui.look.value).catch(fail));
  ui.lod.addEventListener('change', () => setLod(ui.lod.value));
  controls.addEventListener('change', render);
  new ResizeObserver(render).observe(canvas);
  await setLook(look);
  window.nrcViewer = {
    setLook, setLod,
    /** Moves the camera along its current direction to `factor` times the initial distance. */
    setDistance(factor) {
      const dir = camera.position.clone().sub(controls.target).normalize();
      camera.position.copy(controls.target).addScaledVector(dir, home * factor);
      controls.update();
      render();
    },
    state: () => ({ look, looks: looks.available, mode: lods.mode, lod: lods.current,
      levels: lods.levels.map((l) => ({ name: l.name, triangles: l.triangles })),
      coverage: lods.lastCoverage, note: looks.note, frames,
      renderer: renderer.getContext().getParameter(renderer.getContext().VERSION) }),
  };
}

function fail(err) {
  showNote(`The 3D view failed: ${err && err.message ? err.message : err}`);
  throw err;
}

start().catch(fail);
