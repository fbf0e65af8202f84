// SPDX-License-Identifier: Apache-2.0
// nrconvert: a large capture in blocks, as a Flamenco 3 custom job type.
//
// Install: copy this file into the `scripts/` folder next to the Flamenco Manager executable and
// restart the Manager; the job type `nrconvert-blocks` then appears for submission (from a custom
// submitter, or Flamenco's API with `"type": "nrconvert-blocks"`).
//
// Tasks: split -> train-N (one per block, after split) -> bake-N (after its own train-N) ->
// merge (after every bake). Each is one `exec` command running a plain `nrconvert` command line in
// the shared work folder OUTPUT.work/ beside the output, so the Workers need shared storage for the
// capture and the output (Flamenco's usual setup). Tasks are idempotent: a re-queued task reloads
// what is finished and resumes training from its checkpoint. Exit codes 75-79 are worth retrying
// (out of memory, disk full, stopped); 2-12 are not (docs/errors.md, docs/farm.md).

const JOB_TYPE = {
    label: "nrconvert blocks",
    description: "Photos to a glTF asset, trained and baked block by block, then stitched.",
    settings: [
        { key: "capture", type: "string", subtype: "dir_path", required: true,
          description: "Capture folder: transforms.json or a COLMAP model, with the images" },
        { key: "output", type: "string", subtype: "file_path", required: true,
          description: "The .glb to write; the work folder OUTPUT.work/ is made beside it" },
        { key: "blocks", type: "int32", default: 3, required: true,
          description: "Blocks the scene is split into (one train and one bake task each)" },
        { key: "preset", type: "string", default: "balanced", required: true,
          choices: ["tiny", "fast", "balanced", "quality"] },
        { key: "settings", type: "string", default: "threads=0",
          description: "Extra settings, key=value pairs separated by commas (nrconvert --set)" },
        { key: "tiles", type: "bool", default: false,
          description: "One GLB per block plus OUTPUT.index.json instead of one stitched GLB" },
        { key: "nrconvert", type: "string", default: "nrconvert",
          description: "The nrconvert executable on the Workers" },
    ],
};

function compileJob(job) {
    const s = job.settings;
    const blocks = parseInt(s.blocks, 10);
    if (!(blocks >= 1)) {
        throw `blocks must be a whole number >= 1, got ${s.blocks}`;
    }
    const common = ["-o", s.output, "--blocks", String(blocks), "--preset", s.preset,
                    "--set", s.settings || "threads=0", "--progress", "openjd"];
    const unit = (name, args) => {
        const task = author.Task(name, "misc");
        task.addCommand(author.Command("exec", { exe: s.nrconvert || "nrconvert", args: args }));
        job.addTask(task);
        return task;
    };

    const split = unit("split", ["split", s.capture].concat(common));
    const bakes = [];
    for (let b = 1; b <= blocks; b++) {
        const train = unit(`train-${b}`, ["train", s.capture, "--block", String(b)].concat(common));
        train.addDependency(split);
        const bake = unit(`bake-${b}`, ["bake", s.capture, "--block", String(b)].concat(common));
        bake.addDependency(train);
        bakes.push(bake);
    }
    const merge = unit("merge", ["merge", s.capture, s.tiles ? "--tiles" : "--no-tiles"].concat(common));
    for (const bake of bakes) {
        merge.addDependency(bake);
    }
}
