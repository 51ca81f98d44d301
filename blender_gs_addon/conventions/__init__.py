"""Every frame and camera convention of the project, defined once; everything else imports it.

=========================  =================================================================
what                       convention (and where it is defined)
=========================  =================================================================
Blender world              Z up, −Y towards the viewer of the front view, metres.
3DGS file frame            .ply / .splat / compressed .ply: the COLMAP/OpenCV world, +X right,
                           +Y down, +Z forward; shown upright in Blender by a −90° turn about X
                           (:func:`.frames.file_to_blender_matrix`, up axis "-Y").
                           Reconstructions are written in it (:data:`.frames.FILE_TO_WORLD_UP`).
.spz (Niantic)             stored right-up-back: :data:`.frames.RUB_FROM_RDF` (180° about X)
                           from the 3DGS file frame; the reader and writer convert.
Y-up world                 OpenGL, glTF and LGM: (x, y, z)_yup = (x, z, −y)_blender
                           (:data:`.frames.Y_UP_FROM_BLENDER`; up axis "+Y" for files), what
                           Blender's glTF importer and exporter use.
glTF splats                .glb/.gltf ↔ 3DGS file frame: the file frame upright in Blender, then
                           Blender's world in glTF's Y-up: :data:`.frames.GLTF_FROM_RDF`
                           = Y_UP_FROM_BLENDER · file_to_blender_matrix(FILE_TO_WORLD_UP)
                           = diag(1, −1, −1), a 180° turn about X (computed and checked);
                           splat-transform's .glb differ from it by 180° about the up axis.
camera axes                camera-to-world matrices with OpenGL axes (+X right, +Y up, looking
                           down −Z), as Blender cameras and NeRF-synthetic files; the rasterizer
                           takes OpenCV world-to-camera ``viewmats`` (+Y down, +Z forward)
                           (:data:`.frames.OPENCV_FROM_OPENGL`,
                           :func:`.frames.opengl_c2w_to_viewmat`).
pixels                     (0, 0) is the top-left corner of the top-left pixel, rows go down;
                           a centred principal point is (W/2, H/2) (:mod:`.intrinsics`).
Blender camera intrinsics  sensor fit (AUTO/HORIZONTAL/VERTICAL), shift and pixel aspect as
                           Blender's view plane
                           (:func:`.intrinsics.intrinsics_from_blender_camera`).
LGM rig                    4 views at azimuth 0/90/180/270°, elevation 0, radius 1.5, fovy 49.1°
                           (:mod:`.lgm_rig`).
=========================  =================================================================

Modules: :mod:`.frames` (world frames and camera axes), :mod:`.intrinsics` (pinhole matrices and
Blender's sensor fit), :mod:`.lgm_rig` (the LGM capture rig). numpy only; no bpy, no torch.
"""
