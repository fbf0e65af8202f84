// The neural-material view of neural.html. Query: ?glb=<url>, optional &lod=<node name suffix>
// (default _LOD0) and &camera=<JSON camera, below>; without a camera the GLB's first capture camera
// (node extras.nrconvert_camera) is used. Leaves {lod, material, view, ...} or {error} in
// window.__result and window.renderView(camera, transform) for tests, which returns the pixels.
//
// A camera is {fx, fy, cx, cy, width, height, c2w}: pinhole intrinsics in pixels (origin at the
// image's top-left corner) and the 4x4 camera-to-world matrix, row-major nested lists, OpenGL
// convention (looks down -Z, +Y up; the same as glTF's and three's cameras), in the glTF frame.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { NeuralMaterialPlugin, isNeuralMaterial, selectVariant } from '../../converter/export/web/neural_material.js';

const rowMajor = (m) => new THREE.Matrix4().set(...m.flat());

/** Points `camera` as `cam` says, after moving the world by `world` (a Matrix4). The principal
 * point goes in through setViewOffset: the fov spans the full height at focal length fy, the
 * aspect makes the width span W at fx, and the offset shifts the centre from (W/2, H/2) to
 * (cx, cy); WebGL samples pixel centres, as nrconvert's rasterizer does. */
function placeCamera(camera, cam, world, target) {
  const { fx, fy, cx, cy, width: w, height: h } = cam;
  camera.fov = THREE.MathUtils.radToDeg(2 * Math.atan(h / (2 * fy)));
  camera.setViewOffset(w, h, w / 2 - cx, h / 2 - cy, w, h);
  camera.aspect = (w * fy) / (h * fx); // after setViewOffset, which sets it to w / h
  const c2w = world.clone().multiply(rowMajor(cam.c2w));
  c2w.decompose(camera.position, camera.quaternion, camera.scale);
  camera.updateMatrixWorld(true);
  // near/far from the target's bounding sphere: depth precision where the object is
  const sphere = new THREE.Box3().setFromObject(target).getBoundingSphere(new THREE.Sphere());
  const dist = camera.position.distanceTo(sphere.center) / camera.scale.x;
  const r = sphere.radius / camera.scale.x;
  camera.near = Math.max((dist - r) * 0.5, (dist + r) * 1e-4);
  camera.far = (dist + r) * 2;
  camera.updateProjectionMatrix();
}

/** RGBA bytes of the canvas, rows top to bottom (readPixels gives them bottom-up), base64. */
function readCanvas(renderer) {
  const gl = renderer.getContext();
  const { width: w, height: h } = gl.canvas;
  const px = new Uint8Array(w * h * 4);
  gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
  const flipped = new Uint8Array(px.length);
  for (let y = 0; y < h; y++) flipped.set(px.subarray((h - 1 - y) * w * 4, (h - y) * w * 4), y * w * 4);
  let s = '';
  for (let i = 0; i < flipped.length; i += 0x8000) s += String.fromCharCode(...flipped.subarray(i, i + 0x8000));
  return btoa(s);
}

/** How a texture the material reads is sampled, for the test to check against the spec. */
const samplingOf = (t) => ({ minFilter: t.minFilter, magFilter: t.magFilter, mipmaps: t.generateMipmaps,
  wrap: [t.wrapS, t.wrapT], colorSpace: t.colorSpace, flipY: t.flipY, size: [t.image.width, t.image.height] });

function defaultCamera(gltf) {
  let found = null;
  gltf.scene.updateMatrixWorld(true);
  for (const cam of gltf.cameras) {
    const k = cam.userData?.nrconvert_camera;
    if (!found && k) found = { ...k, c2w: [0, 1, 2, 3].map((i) => [0, 1, 2, 3].map((j) => cam.matrixWorld.elements[j * 4 + i])) };
  }
  if (!found) throw new Error('no camera given and the GLB has no capture camera with intrinsics');
  return found;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const glbUrl = new URL(params.get('glb'), location.href).href;
  const canvas = document.getElementById('view');
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, alpha: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(1);
  renderer.setClearColor(0x000000, 0); // transparent black: alpha says which pixels the mesh covers
  const loader = new GLTFLoader().register((parser) => new NeuralMaterialPlugin(parser));
  const gltf = await loader.loadAsync(glbUrl);
  const suffix = params.get('lod') ?? '_LOD0';
  let lod = null;
  gltf.scene.traverse((o) => { if (!lod && o.name.endsWith(suffix)) lod = o; });
  if (!lod) throw new Error(`no node named *${suffix}`);
  const meshes = [];
  lod.traverse((o) => { if (o.isMesh) meshes.push(o); });
  const variants = gltf.parser.json.extensions?.KHR_materials_variants?.variants ?? [];
  // nrconvert puts the extension on the `captured` variant when the default is the PBR material
  if (!meshes.some((m) => isNeuralMaterial(m.material)) && variants.some((v) => v.name === 'captured')) {
    await selectVariant(gltf.parser, lod, 'captured');
  }
  gltf.scene.traverse((o) => { // only the chosen LOD is drawn (MSFT_lod is not built in)
    if (o.isMesh) {
      let inLod = o === lod; // the LOD node is often the mesh itself
      o.traverseAncestors((a) => { inLod ||= a === lod; });
      o.visible = inLod;
    }
  });
  const scene = new THREE.Scene();
  const world = new THREE.Group(); // the test moves the whole asset with it (object-space check)
  world.matrixAutoUpdate = false;
  world.add(gltf.scene);
  scene.add(world);
  const camera = new THREE.PerspectiveCamera();

  // `toneMapped`: render with ACES tone mapping and a linear output colour space, settings a
  // page showing PBR materials may well have; the neural material must ignore both.
  window.renderView = (cam, transform = null, toneMapped = false) => {
    world.matrix.copy(transform ? rowMajor(transform) : new THREE.Matrix4());
    world.updateMatrixWorld(true);
    renderer.setSize(cam.width, cam.height, false);
    placeCamera(camera, cam, world.matrix, lod);
    renderer.toneMapping = toneMapped ? THREE.ACESFilmicToneMapping : THREE.NoToneMapping;
    renderer.outputColorSpace = toneMapped ? THREE.LinearSRGBColorSpace : THREE.SRGBColorSpace;
    renderer.render(scene, camera);
    return { width: cam.width, height: cam.height, rgba: readCanvas(renderer) };
  };
  const cam = params.has('camera') ? JSON.parse(params.get('camera')) : defaultCamera(gltf);
  const material = meshes[0].material;
  const gl = renderer.getContext();
  return {
    lod: lod.name, view: window.renderView(cam), camera: cam,
    material: { type: material.type, name: material.name, neural: isNeuralMaterial(material),
      widths: material.userData?.neural?.widths ?? null,
      features: ['uFeatures0', 'uFeatures1'].map((k) => material.uniforms?.[k]?.value).filter(Boolean).map(samplingOf),
      environment: material.uniforms?.uEnvironment ? samplingOf(material.uniforms.uEnvironment.value) : null },
    variants: variants.map((v) => v.name), renderer: gl.getParameter(gl.VERSION),
  };
}

main().then((r) => { window.__result = r; }, (e) => {
  window.__result = { error: String(e && e.stack ? e.stack : e) };
  throw e;
});
