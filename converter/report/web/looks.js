// The report viewer's looks, per mesh of every LOD:
//   neural   - the captured material through NeuralMaterialPlugin (NRC_neural_material decoded);
//   captured - the same material as plain GLTFLoader reads it (unlit photo-lit texture);
//   pbr      - the default relightable material, lit by the environment.
// nrconvert maps `captured` with KHR_materials_variants when the default is PBR, and makes the
// captured material the default with --no-pbr; both layouts are read from the file's JSON.
import { EXTENSION, isNeuralMaterial, parseNeuralExtension } from '../../export/web/neural_material.js';

const UNLIT = 'KHR_materials_unlit';
const VARIANTS = 'KHR_materials_variants';
export const LOOK_NAMES = { neural: 'neural material', captured: 'captured (unlit texture)', pbr: 'PBR, relit' };

/** Per mesh {mesh, pbr, captured}: material indices of the default PBR material (null when the
 * default is unlit) and of the captured-look material (null when there is none). */
function slots(parser, root) {
  const json = parser.json;
  const variants = json.extensions?.[VARIANTS]?.variants ?? [];
  const variant = variants.findIndex((v) => v.name === 'captured');
  const out = [];
  root.traverse((o) => {
    const ref = o.isMesh ? parser.associations.get(o) : null;
    if (!ref || ref.meshes === undefined) return;
    const prim = json.meshes[ref.meshes].primitives[ref.primitives ?? 0];
    const unlit = (i) => Boolean(json.materials?.[i]?.extensions?.[UNLIT] || json.materials?.[i]?.extensions?.[EXTENSION]);
    const mapping = (prim.extensions?.[VARIANTS]?.mappings ?? []).find((m) => m.variants.includes(variant));
    const def = prim.material;
    out.push({ mesh: o, defaultMaterial: o.material, pbr: def !== undefined && !unlit(def) ? def : null,
      captured: mapping ? mapping.material : (def !== undefined && unlit(def) ? def : null) });
  });
  return out;
}

/** Why the file's neural material cannot be shown ('' when it can), from the same checks the
 * plugin runs; the plugin itself only warns on the console. */
function neuralProblem(ext) {
  try {
    parseNeuralExtension(ext);
    return 'the decoder refused it (see the console)';
  } catch (err) {
    return err.message;
  }
}

export class Looks {
  constructor(parser, root) {
    this.parser = parser;
    this.slots = slots(parser, root);
    this.plain = new Map(); // material index -> plain GLTFLoader material (no plugin)
    const json = parser.json;
    const has = (pick) => this.slots.length > 0 && this.slots.some(pick);
    this.available = [];
    if (has((s) => s.captured !== null && json.materials[s.captured].extensions?.[EXTENSION])) this.available.push('neural');
    if (has((s) => s.captured !== null)) this.available.push('captured');
    if (has((s) => s.pbr !== null)) this.available.push('pbr');
    this.note = '';
  }

  /** Puts look `name` on every mesh; sets this.note when the neural material fell back. */
  async apply(name) {
    if (!this.available.includes(name)) throw new Error(`look ${name} is not in this file`);
    const problems = new Set();
    await Promise.all(this.slots.map(async (s) => {
      if (s.captured === null || (name === 'pbr' && s.pbr !== null)) {
        s.mesh.material = s.defaultMaterial;
      } else if (name !== 'neural') { // captured, or pbr on a mesh without a PBR material
        s.mesh.material = await this.plainMaterial(s.captured);
      } else {
        s.mesh.material = await this.parser.getDependency('material', s.captured);
        const ext = this.parser.json.materials[s.captured].extensions?.[EXTENSION];
        if (ext !== undefined && !isNeuralMaterial(s.mesh.material)) problems.add(neuralProblem(ext));
      }
    }));
    this.note = problems.size ? `The neural material could not be decoded (${[...problems].join('; ')}): ` +
      'showing the unlit captured texture instead.' : '';
  }

  /** GLTFParser.loadMaterial is GLTFLoader's own reader, which the plugin falls back to. */
  plainMaterial(index) {
    if (!this.plain.has(index)) this.plain.set(index, this.parser.loadMaterial(index));
    return this.plain.get(index);
  }
}
