"""Feed-forward reconstruction networks (LGM) and what surrounds them.

This package imports nothing heavy by itself: :mod:`.lgm` (the network) needs torch at import,
while :mod:`.lgm_io` (rig, input building, output mapping) and :mod:`.weights` (finding and
loading checkpoints) import torch only inside the functions that need it, so the capture code
running inside Blender can use the rig description without torch.
"""
