"""Views in, splats out: the reconstruction pipeline, the per-scene fit, and its evaluation."""
