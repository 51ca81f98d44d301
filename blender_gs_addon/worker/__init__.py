"""The reconstruction worker: a subprocess serving jobs over pipes (server), the Blender-side
handle on it (client), and the line protocol they share (protocol).

``python -m blender_gs_addon.worker`` runs the server.
"""
