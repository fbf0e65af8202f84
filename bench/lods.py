"""LOD chain quality: held-out PSNR per LOD, and how much of the decimation loss the normal map wins back.

    python bench/lods.py --object suzanne --preset balanced
    python bench/lods.py --glb PATH --capture DIR [--normal-lod 2]    # an existing GLB

Same capture and conversion as bench/relight.py. In Blender (Cycles, HDRI A, the held-out
`test` views, object pixels):

* per LOD k (node `*_LOD<k>`): the `captured` variant, i.e. the photo look, so the numbers show
  what decimation alone costs (a GLB without the variant is measured with its default material);
* at LOD `--normal-lod` (default 2, else the coarsest): the default PBR material with and without
  its normal map, and the PBR material at LOD0 for reference.

recovered = (psnr_with - psnr_without) / (psnr_LOD0 - psnr_without), all three PBR renders, so the
denominator is what decimation lost in the same material and the ratio is the share of it that
the normal map recovers (None when decimation lost under 0.05 dB or a render failed).
"""
from __future__ import annotations

import argparse
import json
import re
import struct
from pathlib import Path

from relight import add_common_args, diff, header, measure, prepare, result_name, save

LOD_NAME = re.compile(r"_LOD(\d+)$")
MIN_LOSS_DB = 0.05


def glb_json(path: Path) -> dict:
    """The JSON chunk of a GLB (the chunk right after the 12-byte header)."""
    data = Path(path).read_bytes()
    length, kind = struct.unpack_from("<I4s", data, 12)
    if data[:4] != b"glTF" or kind != b"JSON":
        raise ValueError(f"{path}: not a GLB")
    return json.loads(data[20:20 + length])


def lod_levels(doc: dict) -> list[int | None]:
    """LOD indices named in the nodes, or [None] for an asset without an LOD chain."""
    names = [n.get("name", "") for n in doc.get("nodes", [])]
    ks = sorted({int(m.group(1)) for name in names if (m := LOD_NAME.search(name))})
    return ks or [None]


def has_variant(doc: dict, name: str) -> bool:
    variants = (doc.get("extensions") or {}).get("KHR_materials_variants", {}).get("variants", [])
    return any(v.get("name") == name for v in variants)


def recovered(lod0: dict, with_map: dict, without: dict) -> float | None:
    """Share of the decimation loss that the normal map recovers (see the module docstring)."""
    gain, loss = diff(with_map, without), diff(lod0, without)
    if gain is None or loss is None or loss < MIN_LOSS_DB:
        return None
    return round(gain / loss, 3)


def per_lod(glb: Path, capture: Path, args: argparse.Namespace, levels: list[int | None],
            variant: str | None) -> dict:
    """PSNR of every LOD with the photo-look material."""
    return {str(k): measure(glb, capture, f"lod{k}_{variant or 'default'}", args, lod=k, variant=variant)
            for k in levels}


def normal_map_study(glb: Path, capture: Path, args: argparse.Namespace, levels: list[int | None]) -> dict:
    """PBR at LOD0, and at the study LOD with and without the normal map."""
    chain = [k for k in levels if k is not None]
    k = min(args.normal_lod, max(chain)) if chain else None
    lod0 = 0 if chain else None
    with_map = measure(glb, capture, f"pbr_lod{k}", args, lod=k)
    study = {"lod": k,
             "pbr_lod0": with_map if k == lod0 else measure(glb, capture, "pbr_lod0", args, lod=lod0),
             "pbr_with_normal_map": with_map,
             "pbr_without_normal_map": measure(glb, capture, f"pbr_lod{k}_flat", args, lod=k, normal_map=False)}
    study["normal_map_gain_db"] = diff(study["pbr_with_normal_map"], study["pbr_without_normal_map"])
    study["decimation_loss_db"] = diff(study["pbr_lod0"], study["pbr_without_normal_map"])
    study["recovered_fraction"] = recovered(study["pbr_lod0"], study["pbr_with_normal_map"],
                                            study["pbr_without_normal_map"])
    return study


def _row(record: dict) -> str:
    lods = " / ".join(f"{m['psnr_object']}" if "psnr_object" in m else "failed" for m in record["per_lod"].values())
    s = record["normal_map"]
    gain, loss, frac = (("n/a" if v is None else v) for v in
                        (s["normal_map_gain_db"], s["decimation_loss_db"], s["recovered_fraction"]))
    return (f"| {record['date']} | {record['object']} ({record['background']}) | {record['preset'] or 'glb'} "
            f"| {lods} dB | LOD{s['lod']}: {gain} dB of {loss} dB | {frac} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap)
    ap.add_argument("--normal-lod", type=int, default=2, help="LOD of the with/without normal map study")
    args = ap.parse_args()
    capture, glb, facts = prepare(args)
    doc = glb_json(glb)
    levels = lod_levels(doc)
    variant = "captured" if has_variant(doc, "captured") else None
    record = header(args, capture, glb, facts)
    record["lods"], record["photo_look_material"] = levels, variant or "default"
    record["per_lod"] = per_lod(glb, capture, args, levels, variant)
    record["normal_map"] = normal_map_study(glb, capture, args, levels)
    save(record, result_name("lods", record, capture, glb))
    print(_row(record))


if __name__ == "__main__":
    main()
