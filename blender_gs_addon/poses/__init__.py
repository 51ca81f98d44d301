"""Camera poses from photos or a video (pycolmap SfM) into a NeRF-synthetic data set."""
