"""What a capture is, without Blender: camera rigs around the framed object and their options."""
