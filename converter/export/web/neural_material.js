// NRC_neural_material for three.js: a ShaderMaterial that decodes the extension
// (docs/neural_material.md) and a GLTFLoader plugin that uses it. ES module; its only import is
// 'three' (map it in the page's importmap). The reference decoder is nrconvert.export.neural.decode;
// tests/test_threejs_neural.py renders both at one camera in headless Chromium and compares them.
//
//   const loader = new GLTFLoader().register((parser) => new NeuralMaterialPlugin(parser));
//   const gltf = await loader.loadAsync(url);
//   await selectVariant(gltf.parser, gltf.scene, 'captured'); // nrconvert puts the extension there
//
// The output is sRGB written straight to the framebuffer: the shader includes neither
// <tonemapping_fragment> nor <colorspace_fragment>, so three.js (0.187) applies neither tone mapping
// nor renderer.outputColorSpace to it, whatever the renderer's settings.
import * as THREE from 'three';

export const EXTENSION = 'NRC_neural_material';
const N_FEATURES = 8;
const ENCODING_SIZE = { sh2: 9, raw: 3, sh2_reflected: 9, sh2_reflected_nv: 13, nv: 1 };
// the encodings that mirror the view about the NORMAL: the environment is looked up by the mirror
const MIRRORED = ['sh2_reflected', 'sh2_reflected_nv', 'nv'];
const ACTIVATIONS = ['relu', 'sigmoid', 'linear'];
const MAX_LAYERS = 8;
const MAX_WIDTH = 256;
// WebGL 2 guarantees 224 fragment uniform vectors; leave room for three's own uniforms and ours
// (feature and environment scale/offset: 6). The weights are packed 4 to a vec4 (rows padded to a
// multiple of 4), the biases too: 9-12-12-6 (nrconvert's nv material with an environment) needs
// 90 + 8 = 98, 21-12-12-3 (sh2_reflected_nv, without one) 117 + 7 = 124. A wider network falls
// back to the plain material with a warning.
export const MAX_UNIFORM_VEC4 = 200;

/** Checks the extension JSON as nrconvert.export.neural.from_json does; throws Error saying what
 * is wrong. Returns {scale, offset, encoding, layers: [{nIn, nOut, weights, bias, activation}],
 * environment: {index, scale, offset} or null}. */
export function parseNeuralExtension(ext) {
  if (ext === null || typeof ext !== 'object' || Array.isArray(ext)) {
    throw new Error(`${EXTENSION} must be a JSON object`);
  }
  const refs = ext.featureTextures;
  if (!Array.isArray(refs) || refs.length !== 2 || !refs.every((r) => Number.isInteger(r?.index))) {
    throw new Error('featureTextures must list two textures');
  }
  const encoding = ext.viewEncoding ?? 'sh2';
  if (!Object.prototype.hasOwnProperty.call(ENCODING_SIZE, encoding)) { // not 'toString'
    throw new Error(`viewEncoding ${JSON.stringify(encoding)} is not one of ${Object.keys(ENCODING_SIZE)}`);
  }
  if ((ext.viewSpace ?? 'object') !== 'object' || (ext.output ?? 'srgb') !== 'srgb') {
    throw new Error("only viewSpace 'object' and output 'srgb' are defined");
  }
  const scale = numbers(ext.featureScale, N_FEATURES, 'featureScale');
  const offset = numbers(ext.featureOffset, N_FEATURES, 'featureOffset');
  const env = ext.environment ?? null; // JSON null: none, as from_json reads it
  const layers = parseLayers(ext.layers, N_FEATURES + ENCODING_SIZE[encoding], env === null ? 3 : 6);
  const environment = env === null ? null : parseEnvironment(env, encoding, layers);
  return { scale, offset, encoding, layers, environment };
}

/** The dense layers, the first reading nIn values, the last giving nLast (3: RGB; 6: a and b). */
function parseLayers(raw, nIn, nLast) {
  if (!Array.isArray(raw) || raw.length < 1 || raw.length > MAX_LAYERS) {
    throw new Error(`layers must be a list of 1..${MAX_LAYERS} objects`);
  }
  const layers = raw.map((spec, i) => {
    if (spec === null || typeof spec !== 'object') throw new Error(`layers[${i}] must be an object`);
    const bias = numbers(spec.bias, null, `layers[${i}].bias`);
    const nOut = bias.length;
    if (nOut < 1 || nOut > MAX_WIDTH) throw new Error(`layers[${i}] has ${nOut} outputs (1..${MAX_WIDTH} allowed)`);
    const weights = numbers(spec.weights, nOut * nIn, `layers[${i}].weights`);
    const activation = spec.activation ?? 'linear';
    if (!ACTIVATIONS.includes(activation)) {
      throw new Error(`layers[${i}].activation ${JSON.stringify(activation)} is not one of ${ACTIVATIONS}`);
    }
    const layer = { nIn, nOut, weights, bias, activation };
    nIn = nOut;
    return layer;
  });
  if (nIn !== nLast) {
    const what = nLast === 3 ? '(RGB)' : '(a and b for sigmoid(a + b * environment))';
    throw new Error(`the last layer must have ${nLast} outputs ${what}, has ${nIn}`);
  }
  return layers;
}

/** The `environment` member (version 1.1), checked in from_json's order; the image itself is
 * checked once loaded (checkPng, createNeuralMaterial). */
function parseEnvironment(env, encoding, layers) {
  if (typeof env !== 'object' || Array.isArray(env)) throw new Error('environment must be a JSON object');
  const index = env.texture?.index;
  if (index === undefined) throw new Error('environment.texture.index is missing');
  if (!Number.isInteger(index) || index < 0) {
    throw new Error(`environment.texture.index must be a texture index, got ${JSON.stringify(index)}`);
  }
  if (!MIRRORED.includes(encoding)) {
    throw new Error(`an environment needs a mirrored view (viewEncoding one of ${MIRRORED}), not ${JSON.stringify(encoding)}`);
  }
  if (layers[layers.length - 1].activation !== 'linear') {
    throw new Error('with an environment the last layer must be linear (sigmoid(a + b * e) follows)');
  }
  const scale = numbers(env.scale, 3, 'environment.scale');
  return { index, scale, offset: numbers(env.offset, 3, 'environment.offset') };
}

function numbers(raw, n, what) {
  if (!Array.isArray(raw) || (n !== null && raw.length !== n)) {
    throw new Error(`${what} must be a list of ${n ?? 'some'} numbers`);
  }
  if (!raw.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new Error(`${what} must hold finite numbers only`);
  }
  return Float32Array.from(raw);
}

const vec4s = (n) => Math.ceil(n / 4);

/** Packs every layer's row-major [out][in] weights into vec4s (each row padded with zeros to a
 * multiple of 4, so a row is a run of dot products with the packed input) and the biases into a
 * second vec4 array. Returns the arrays and, per layer, where its rows and biases start. */
function packWeights(layers) {
  const nW = layers.reduce((s, l) => s + l.nOut * vec4s(l.nIn), 0);
  const nB = layers.reduce((s, l) => s + vec4s(l.nOut), 0);
  if (nW + nB > MAX_UNIFORM_VEC4) {
    throw new Error(`the MLP needs ${nW + nB} uniform vec4s, over this preview's ${MAX_UNIFORM_VEC4}`);
  }
  const w = new Float32Array(nW * 4);
  const b = new Float32Array(nB * 4);
  const at = [];
  let wAt = 0;
  let bAt = 0;
  for (const l of layers) {
    at.push({ w: wAt, b: bAt });
    const stride = vec4s(l.nIn);
    for (let o = 0; o < l.nOut; o++) {
      w.set(l.weights.subarray(o * l.nIn, (o + 1) * l.nIn), (wAt + o * stride) * 4);
    }
    b.set(l.bias, bAt * 4);
    wAt += l.nOut * stride;
    bAt += vec4s(l.nOut);
  }
  return { w, b, nW, nB, at };
}

const ACTIVATE = { relu: (v) => `max(${v}, 0.0)`, sigmoid: (v) => `1.0 / (1.0 + exp(-${v}))`, linear: (v) => v };

/** The MLP as straight-line GLSL, generated from the layer sizes: activations live in vec4s
 * x<layer>_<k> (zero-padded), each output is a sum of dot products with its packed weight row. */
function mlpGlsl(layers, at) {
  const lines = [];
  layers.forEach((l, i) => {
    const src = `x${i}_`;
    const stride = vec4s(l.nIn);
    const sums = [];
    for (let o = 0; o < l.nOut; o++) {
      const row = at[i].w + o * stride;
      const dots = Array.from({ length: stride }, (_, k) => `dot(uW[${row + k}], ${src}${k})`);
      sums.push(`uB[${at[i].b + (o >> 2)}].${'xyzw'[o & 3]} + ${dots.join(' + ')}`);
    }
    for (let k = 0; k < vec4s(l.nOut); k++) {
      const lanes = [0, 1, 2, 3].map((j) => sums[4 * k + j] ?? '0.0');
      const v = `vec4(${lanes.join(',\n      ')})`;
      // padded lanes go through the activation too (sigmoid(0) = 0.5) but meet zero weights
      lines.push(`  vec4 x${i + 1}_${k} = ${ACTIVATE[l.activation](v)};`);
    }
  });
  return lines.join('\n');
}

const VERTEX = /* glsl */ `
varying vec2 vUv;
varying vec3 vView;
varying vec3 vNormal;
void main() {
  vUv = uv; // glTF TEXCOORD_0, images not flipped (flipY = false, as GLTFLoader loads them)
  vNormal = normal; // NORMAL in the node's local frame, as the view direction (sh2_reflected*)
  // The view direction in the node's local frame (spec step 4): camera -> surface point. It is
  // affine in position, so interpolating it per fragment is exact. Computed here rather than as
  // a per-object uniform so one material can serve many nodes.
  mat4 toLocal = inverse(modelMatrix);
  if (isOrthographic) {
    vView = mat3(toLocal) * -vec3(viewMatrix[0][2], viewMatrix[1][2], viewMatrix[2][2]);
  } else {
    vView = position - (toLocal * vec4(cameraPosition, 1.0)).xyz;
  }
  gl_Position = projectionMatrix * modelViewMatrix * vec4(position, 1.0);
}`;

/** Spec step 4 in GLSL, given the unit view direction d: the mirrored encodings replace d by its
 * mirror about the interpolated NORMAL n, after keeping n.v (v: surface -> camera) for the ones
 * that read it (sh2_reflected_nv, nv). */
function mirrorGlsl(encoding) {
  if (!MIRRORED.includes(encoding)) return '';
  const nv = encoding.endsWith('nv') ? '  float ndv = clamp(-dot(d, n), 0.0, 1.0);\n' : '';
  return `  vec3 n = normalize(vNormal);\n${nv}  d = normalize(reflect(d, n));\n`;
}

/** The MLP's inputs after the 8 features (x0_0, x0_1): vec4s x0_2... (spec step 5). */
function encodeGlsl(encoding) {
  if (encoding === 'raw') return '  vec4 x0_2 = vec4(d, 0.0);';
  if (encoding === 'nv') return '  vec4 x0_2 = vec4(ndv, 0.0, 0.0, 0.0); // only the environment reads the mirror';
  const nv = encoding === 'sh2_reflected_nv';
  return `  // real SH, degrees 0..2, instant-ngp's constants and signs (spec step 5)
  vec4 x0_2 = vec4(0.28209479177387814, -0.4886025119029199 * d.y, 0.4886025119029199 * d.z,
                   -0.4886025119029199 * d.x);
  vec4 x0_3 = vec4(1.0925484305920792 * d.x * d.y, -1.0925484305920792 * d.y * d.z,
                   0.31539156525252005 * (2.0 * d.z * d.z - d.x * d.x - d.y * d.y),
                   -1.0925484305920792 * d.x * d.z);
  vec4 x0_4 = vec4(0.5462742152960396 * (d.x * d.x - d.y * d.y), ${nv ? 'ndv, n.x, n.y' : '0.0, 0.0, 0.0'});${
  nv ? '\n  vec4 x0_5 = vec4(n.z, 0.0, 0.0, 0.0);' : ''}`;
}

/** The colour from the last layer's vec4s `out` (spec steps 7-8). With an environment they hold
 * a = (x0, x1, x2), b = (x3, x4, x5), linear, and the colour is sigmoid(a + b * e), e looked up
 * (equirect) by the mirrored d. The u seam needs no code: u jumps from 1 to 0 there, and REPEAT
 * filtering blends the last and the first column as the spec's wrap does. textureLod(0) because
 * that jump makes the screen-space derivatives huge along the seam: the lookup must not depend
 * on them. */
function outputGlsl(parsed, out) {
  if (parsed.environment === null) {
    const last = parsed.layers[parsed.layers.length - 1].activation;
    return `  vec3 srgb = ${last === 'sigmoid' ? `${out}0.rgb` : `clamp(${out}0.rgb, 0.0, 1.0)`};`;
  }
  return `  // GLSL's atan(y, x) is atan2(y, x)
  vec2 envUv = vec2(0.5 + atan(d.x, -d.z) * 0.15915494309189535, acos(clamp(d.y, -1.0, 1.0)) * 0.3183098861837907);
  vec3 e = textureLod(uEnvironment, envUv, 0.0).rgb * uEnvScale + uEnvOffset;
  vec3 srgb = 1.0 / (1.0 + exp(-(${out}0.xyz + vec3(${out}0.w, ${out}1.xy) * e)));`;
}

function fragmentGlsl(parsed, packed) {
  const { encoding, layers } = parsed;
  const env = parsed.environment === null ? ''
    : 'uniform sampler2D uEnvironment;\nuniform vec3 uEnvScale;\nuniform vec3 uEnvOffset;\n';
  return /* glsl */ `
uniform sampler2D uFeatures0;
uniform sampler2D uFeatures1;
uniform vec4 uScale[2];
uniform vec4 uOffset[2];
uniform vec4 uW[${packed.nW}];
uniform vec4 uB[${packed.nB}];
${env}varying vec2 vUv;
varying vec3 vView;
varying vec3 vNormal;
void main() {
  // Bilinear, no mipmaps, clamp to edge (the textures' settings); texture() returns byte / 255 and
  // filtering commutes with the affine dequantisation (spec steps 2-3).
  vec4 x0_0 = texture(uFeatures0, vUv) * uScale[0] + uOffset[0];
  vec4 x0_1 = texture(uFeatures1, vUv) * uScale[1] + uOffset[1];
  vec3 d = normalize(vView);
${mirrorGlsl(encoding)}${encodeGlsl(encoding)}
${mlpGlsl(layers, packed.at)}
${outputGlsl(parsed, `x${layers.length}_`)}
  gl_FragColor = vec4(srgb, 1.0); // sRGB as is: no tone mapping, no colour-space conversion
}`;
}

/** Makes a loaded feature texture sample as the spec says: linear data, bilinear, no mipmaps,
 * clamp to edge. Works on a clone, so a texture shared with other materials keeps its settings. */
export const featureTexture = (texture) => dataTexture(texture, THREE.ClampToEdgeWrapping);

/** The environment texture as the spec says: as a feature texture, but repeating in u (the
 * azimuth goes round) and clamped in v (the poles). */
export const environmentTexture = (texture) => dataTexture(texture, THREE.RepeatWrapping);

function dataTexture(texture, wrapS) {
  const t = texture.clone();
  t.minFilter = THREE.LinearFilter;
  t.magFilter = THREE.LinearFilter;
  t.wrapS = wrapS;
  t.wrapT = THREE.ClampToEdgeWrapping;
  t.generateMipmaps = false;
  t.colorSpace = THREE.NoColorSpace;
  t.flipY = false;
  t.premultiplyAlpha = false; // alpha is feature channel 3 (or 7), not coverage; the environment's is unused
  t.anisotropy = 1;
  t.needsUpdate = true;
  return t;
}

/** A THREE.ShaderMaterial (WebGL 2) decoding the extension `ext` (its JSON) with the two feature
 * textures and (when `ext` has one) the environment texture as loaded. Throws Error when the
 * JSON or the textures are malformed. */
export function createNeuralMaterial(ext, texture0, texture1, environment = null) {
  const parsed = parseNeuralExtension(ext);
  const [a, b] = [texture0?.image, texture1?.image];
  if (!a || !b || a.width !== b.width || a.height !== b.height) {
    throw new Error(`feature textures must be two images of one size, got ${a?.width}x${a?.height} and ${b?.width}x${b?.height}`);
  }
  const packed = packWeights(parsed.layers);
  const uniforms = {
    uFeatures0: { value: featureTexture(texture0) },
    uFeatures1: { value: featureTexture(texture1) },
    uScale: { value: [vec4At(parsed.scale, 0), vec4At(parsed.scale, 4)] },
    uOffset: { value: [vec4At(parsed.offset, 0), vec4At(parsed.offset, 4)] },
    uW: { value: packed.w },
    uB: { value: packed.b },
  };
  if (parsed.environment !== null) Object.assign(uniforms, environmentUniforms(parsed.environment, environment));
  const material = new THREE.ShaderMaterial({
    name: EXTENSION,
    vertexShader: VERTEX,
    fragmentShader: fragmentGlsl(parsed, packed),
    uniforms,
  });
  material.toneMapped = false; // documents intent; the shader has no tone-mapping include anyway
  material.userData.neural = { encoding: parsed.encoding, widths: parsed.layers.map((l) => l.nOut),
    environment: parsed.environment !== null };
  return material;
}

/** uEnvironment, uEnvScale, uEnvOffset from the parsed member and the loaded texture, which the
 * spec wants at least 2 x 2 (bilinear needs 2 texels each way). */
function environmentUniforms(env, texture) {
  const img = texture?.image;
  if (!img || img.width < 2 || img.height < 2) {
    const got = img ? `${img.width}x${img.height}` : 'none';
    throw new Error(`the environment texture must be an image of at least 2 x 2 texels, got ${got}`);
  }
  return {
    uEnvironment: { value: environmentTexture(texture) },
    uEnvScale: { value: new THREE.Vector3(...env.scale) },
    uEnvOffset: { value: new THREE.Vector3(...env.offset) },
  };
}

const vec4At = (arr, i) => new THREE.Vector4(arr[i], arr[i + 1], arr[i + 2], arr[i + 3]);

export const isNeuralMaterial = (m) => Boolean(m?.isShaderMaterial && m.userData?.neural);

// PNG colour types (IHDR byte 25) a texture may have
const RGBA = { name: 'RGBA', colourTypes: [6] };
const RGB_OR_RGBA = { name: 'RGB or RGBA', colourTypes: [2, 6] };

/** GLTFLoader plugin: materials carrying NRC_neural_material load as the neural ShaderMaterial.
 * A malformed extension warns (console.warn) and loads the material as GLTFLoader would (for
 * nrconvert files: the unlit captured texture), as the spec's conformance section asks. */
export class NeuralMaterialPlugin {
  constructor(parser) {
    this.parser = parser;
    this.name = EXTENSION;
  }

  loadMaterial(materialIndex) {
    const def = this.parser.json.materials?.[materialIndex];
    const ext = def?.extensions?.[EXTENSION];
    if (ext === undefined) return null; // not ours: GLTFLoader's own loadMaterial runs
    return this.loadNeural(materialIndex, def, ext).catch((err) => {
      console.warn(`${EXTENSION}: materials[${materialIndex}] (${def.name ?? ''}) is ignored, ` +
        `showing its fallback: ${err.message}`);
      return this.parser.loadMaterial(materialIndex);
    });
  }

  async loadNeural(materialIndex, def, ext) {
    const parsed = parseNeuralExtension(ext); // fail before fetching anything
    const parser = this.parser;
    // [texture index, what its PNG must be]: the two feature textures, then the environment's
    const wanted = ext.featureTextures.map((r) => [r.index, RGBA]);
    if (parsed.environment !== null) wanted.push([parsed.environment.index, RGB_OR_RGBA]);
    await Promise.all(wanted.map(([i, kind]) => this.checkPng(i, kind)));
    const textures = await Promise.all(wanted.map(([i]) => parser.getDependency('texture', i)));
    const material = createNeuralMaterial(ext, ...textures);
    material.name = def.name ?? EXTENSION;
    if (def.doubleSided === true) material.side = THREE.DoubleSide;
    // Opaque: the spec takes alpha from the base material, and nrconvert's is opaque; a file
    // with alphaMode BLEND/MASK on a neural material would show opaque here.
    material.userData.gltfExtensions = { ...(def.extensions ?? {}) };
    if (def.extras) Object.assign(material.userData, def.extras);
    parser.associations.set(material, { materials: materialIndex });
    return material;
  }

  /** Feature textures must be 8-bit RGBA PNGs, the environment 8-bit RGB or RGBA (spec): an
   * ImageBitmap is RGBA whatever the file held, so the file's own IHDR header is what can tell
   * (bit depth 8, colour type 6 RGBA or 2 RGB). */
  async checkPng(textureIndex, kind) {
    const json = this.parser.json;
    const source = json.textures?.[textureIndex]?.source;
    const image = json.images?.[source];
    if (!image) throw new Error(`textures[${textureIndex}] has no image`);
    let bytes;
    if (image.bufferView !== undefined) {
      bytes = new Uint8Array(await this.parser.getDependency('bufferView', image.bufferView));
    } else {
      const url = THREE.LoaderUtils.resolveURL(image.uri ?? '', this.parser.options.path);
      bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    }
    const png = [137, 80, 78, 71, 13, 10, 26, 10].every((v, i) => bytes[i] === v);
    if (!png || bytes.length < 26 || bytes[24] !== 8 || !kind.colourTypes.includes(bytes[25])) {
      throw new Error(`images[${source}] is not an 8-bit ${kind.name} PNG`);
    }
  }
}

/** KHR_materials_variants is not built into three.js: shows variant `name` (null: the default
 * materials) on every mesh under `root` that maps it, loading its materials through `parser` (so
 * the plugin above decodes the neural one). Meshes without a mapping for it keep their default. */
export async function selectVariant(parser, root, name) {
  const variants = parser.json.extensions?.KHR_materials_variants?.variants ?? [];
  const index = name === null ? -1 : variants.findIndex((v) => v.name === name);
  if (name !== null && index < 0) throw new Error(`no material variant named ${JSON.stringify(name)}`);
  const jobs = [];
  root.traverse((o) => {
    const mappings = o.isMesh ? o.userData.gltfExtensions?.KHR_materials_variants?.mappings : null;
    if (!mappings) return;
    if (!o.userData.defaultMaterial) o.userData.defaultMaterial = o.material;
    const m = mappings.find((mp) => mp.variants.includes(index));
    jobs.push(m ? parser.getDependency('material', m.material).then((mat) => { o.material = mat; })
      : Promise.resolve().then(() => { o.material = o.userData.defaultMaterial; }));
  });
  await Promise.all(jobs);
}
