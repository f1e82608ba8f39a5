"""Image analysis shared by the services: pure numpy/OpenCV code, no transport.

:mod:`services.common.analysis.garment` cuts garments out of flat-lay photos, tells their
category, sleeve and length from the cut-out's shape, and finds their landmarks; try-on and
the catalog adapter both use it.
"""
