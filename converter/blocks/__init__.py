"""Large scenes in overlapping blocks: split, per-block training/extraction/baking, stitching."""
