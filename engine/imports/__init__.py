"""Labels from other tools' files into the engine: gold labels from COCO, Label Studio, CoNLL."""
