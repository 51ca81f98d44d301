"""The reconstruction worker: a process serving jobs over its stdin/stdout (server; what each
job does: jobs; their parameters: job_params), the handle on it from Blender or the command line
(client; whole runs from a terminal: offload), the line protocol they share (protocol), files
carried in-band (transfer) and the private job folders on each side (job_dirs). The pipe may be
a local subprocess's or an SSH connection's to another machine.

``python -m blender_gs_addon.worker`` runs the server.
"""
