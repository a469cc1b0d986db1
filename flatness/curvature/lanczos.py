"""The Lanczos names under their path from before the split (kept for old imports).

The Lanczos kernel (the three-term recurrence, its Gram–Schmidt helpers and the warm
start) lives in :mod:`flatness.curvature.lanczos_kernel`; the thick-restart eigensolver
built on it in :mod:`flatness.curvature.thick_restart`. Code written before the split
(``from flatness.curvature.lanczos import lanczos_eigenpairs``) keeps working: this
module only re-exports both, and neither imports it back.
"""

from flatness.curvature.lanczos_kernel import (
    ROUNDOFF_FACTOR,
    Tridiagonalization,
    lanczos_tridiagonal,
    new_direction,
    project_out,
    random_vector,
    start_vector,
)
from flatness.curvature.thick_restart import (
    WHICH,
    RitzPairs,
    Which,
    check_which,
    default_basis_size,
    lanczos_eigenpairs,
    order_by_which,
    residual_bounds,
    thick_restart_lanczos,
)

__all__ = [
    "ROUNDOFF_FACTOR",
    "WHICH",
    "RitzPairs",
    "Tridiagonalization",
    "Which",
    "check_which",
    "default_basis_size",
    "lanczos_eigenpairs",
    "lanczos_tridiagonal",
    "new_direction",
    "order_by_which",
    "project_out",
    "random_vector",
    "residual_bounds",
    "start_vector",
    "thick_restart_lanczos",
]
