"""Embedded, procedurally generated benchmark scenes (no download needed).

Every method of the paper (Scaffold-GS, HAC, Predict-GS) can be trained and evaluated on these scenes on a
laptop CPU. Three families stand in for the paper's three real benchmarks:

``outdoor`` (Mip-NeRF 360-like)
    A group of a few textured primitives (marble sphere, brick block, striped column, ...) on a paved plaza
    inside a meadow, under a sky dome with clouds; cameras on a 360-degree orbit with jittered elevation and
    radius, all looking at the centre.
``indoor`` (Deep-Blending-like)
    A furnished room seen from inside (plank floor, painted/wallpapered/brick walls, sofa, table, shelf,
    lamp, rug, painting) lit by a ceiling point light; cameras on a ring inside the room looking outwards in
    varied directions, not at one point.
``object`` (Tanks-and-Temples-like)
    One large compound object (a small locomotive: boiler, cab, chimney, wheels, all richly textured) on a
    gravel ground, with a distant landscape backdrop; cameras on a closer orbit.

Ground truth comes from an exact analytic ray caster, not from Gaussians, so no splatting method is
favoured; textures are filtered by the pixel footprint and pixels are supersampled, so the images are
anti-aliased and the methods have a real rate/distortion trade-off to make.

Output (COLMAP text layout, one shared PINHOLE camera, horizontal FOV 65 degrees, principal point at the
image centre)::

    out_dir/images/view_000.png ...
    out_dir/sparse/0/cameras.txt, images.txt, points3D.txt
    out_dir/synth.json

The parts, in the order a scene is made:

- :mod:`.raycast`: exact ray casting against quadrics, slabs and planes; camera rays.
- :mod:`.texture`: footprint-filtered procedural patterns and gradient noise.
- :mod:`.materials`: the surface kinds (paint, marble, brick, wood, ..., sky) built from those patterns.
- :mod:`.scenes`: what each family contains (primitives, materials, lighting).
- :mod:`.poses`: where each family's cameras are.
- :mod:`.shading`: lighting of ray hits and anti-aliased rendering of a view.
- :mod:`.sfm`: sparse points with tracks imitating SfM, and their COLMAP model.
- :mod:`.generate`: :func:`generate_scene`, which checks the arguments, seeds and writes everything.
"""

from predictgs.data.synth.generate import (DEFAULT_NUM_POINTS, FAMILIES, MAX_IMAGE_SIDE, MAX_POINTS,
                                           MAX_SUPERSAMPLE, MAX_VIEWS, SYNTH_VERSION, generate_scene)
from predictgs.data.synth.poses import FOV_X_DEG

__all__ = ["DEFAULT_NUM_POINTS", "FAMILIES", "FOV_X_DEG", "MAX_IMAGE_SIDE", "MAX_POINTS", "MAX_SUPERSAMPLE",
           "MAX_VIEWS", "SYNTH_VERSION", "generate_scene"]
