"""Coverage problems, coverage shares per threshold and district, and siting comparisons.

Everything here works on a **cover matrix**: a boolean ``n_demand × n_candidates`` sparse
matrix whose entry ``(i, j)`` is true when a unit leaving candidate site ``j`` reaches
demand point ``i`` within the response threshold ``T``. How it was computed (road-network
travel times, a straight-line proxy) is the caller's business; :func:`cover_within` turns
a travel-time matrix into one. Demand points carry non-negative weights (population, past
incidents), and "coverage" always means the weight of the demand points that at least one
chosen site reaches.

The module is pure: arrays in, frozen results out, no I/O.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment

from anwang.core.errors import FieldError, ValidationFailed
from anwang.core.geo import haversine_m

__all__ = [
    "CoverageProblem",
    "DistrictCoverage",
    "Move",
    "SitingComparison",
    "ThresholdCoverage",
    "analyze",
    "as_cover",
    "compare",
    "cover_within",
    "coverage_counts",
    "coverage_share",
    "increment_values",
    "marginal_gains",
    "objective_value",
]

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

"""Mean Earth radius (IUGG) in metres, for great-circle distances between sites."""


# --------------------------------------------------------------------------------------
# cover matrices


def as_cover(matrix: object, *, field_name: str = "cover") -> sp.csr_array:
    """The cover matrix as a boolean CSR array with sorted indices and no stored zeros.

    Accepts any scipy sparse matrix or array, or a dense 2-D array (non-zero = covers).
    """
    try:
        if sp.issparse(matrix):
            if matrix.ndim != 2:  # type: ignore[attr-defined]
                raise ValueError("not 2-D")
            out = sp.csr_array(matrix)
        else:
            dense = np.asarray(matrix)
            if dense.ndim != 2:
                raise ValueError("not 2-D")
            if dense.dtype == object or not (
                np.issubdtype(dense.dtype, np.number) or dense.dtype == np.bool_
            ):
                raise ValueError("not numeric")
            out = sp.csr_array(dense != 0)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed.on(
            field_name, f"must be a 2-D matrix of demand points × candidates ({exc})"
        ) from None
    out = out.astype(np.bool_)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.sort_indices()
    out.indices = out.indices.astype(np.int32, copy=False)
    out.indptr = out.indptr.astype(np.int64, copy=False)
    return out


def cover_within(times_s: object, max_s: float) -> sp.csr_array:
    """Cover matrix from travel times: ``times_s[i, j] <= max_s``.

    ``times_s`` is ``n_demand × n_candidates`` seconds (or any unit, as long as ``max_s``
    uses it): dense with ``inf``/``nan`` where a candidate does not reach a point, or
    sparse, where only stored entries count as reachable (a stored ``0`` is a point at the
    site itself, and is covered). :class:`anwang.roads.routing.Reachability` holds times
    per source in rows, so pass its ``time_s.T``.
    """
    try:
        limit = float(max_s)
    except (TypeError, ValueError):
        limit = math.nan
    if not (math.isfinite(limit) and limit >= 0) or isinstance(max_s, bool):
        raise ValidationFailed.on("max_s", "must be a finite, non-negative number")
    if sp.issparse(times_s):
        coo = sp.coo_array(times_s)
        keep = coo.data <= limit
        return as_cover(
            sp.csr_array(
                (np.ones(int(keep.sum()), dtype=np.bool_), (coo.row[keep], coo.col[keep])),
                shape=coo.shape,
            ),
            field_name="times_s",
        )
    dense = np.asarray(times_s, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return as_cover(dense <= limit, field_name="times_s")


def _indicator(n: int, chosen: IntArray) -> FloatArray:
    x = np.zeros(n, dtype=np.float64)
    x[chosen] = 1.0
    return x


def _sites(chosen: ArrayLike, n_candidates: int, field_name: str) -> IntArray:
    """Candidate indices, checked and de-duplicated (sorted)."""
    arr = np.asarray(chosen)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer) or arr.ndim != 1:
        raise ValidationFailed.on(field_name, "must be a list of candidate indices (integers)")
    bad = arr[(arr < 0) | (arr >= n_candidates)]
    if bad.size:
        raise ValidationFailed.on(
            field_name,
            f"candidate index {int(bad[0])} is out of range 0..{n_candidates - 1}",
        )
    return np.unique(arr.astype(np.int64))


def coverage_counts(cover: sp.csr_array, chosen: IntArray) -> NDArray[np.int32]:
    """How many of the chosen sites reach each demand point (one sparse mat-vec)."""
    return np.asarray(cover @ _indicator(cover.shape[1], chosen)).round().astype(np.int32)


def objective_value(
    cover: sp.csr_array, weights: FloatArray, chosen: IntArray, backup_weight: float = 0.0
) -> float:
    """The siting objective: covered weight, plus ``backup_weight`` × doubly covered weight."""
    counts = coverage_counts(cover, chosen)
    value = float(weights[counts >= 1].sum())
    if backup_weight:
        value += backup_weight * float(weights[counts >= 2].sum())
    return value


def increment_values(counts: NDArray[np.integer], backup_weight: float) -> FloatArray:
    """Value of one more site at a point already reached ``counts`` times: 1 for the first
    reach, β for the second (backup), 0 after. Non-increasing in the count for β ≤ 1,
    which is what makes the objective submodular."""
    return np.where(counts <= 0, 1.0, np.where(counts == 1, backup_weight, 0.0))


def marginal_gains(
    cover: sp.csr_array, weights: FloatArray, counts: NDArray[np.integer], backup_weight: float
) -> FloatArray:
    """Objective gained by adding each candidate to a siting that reaches each point
    ``counts`` times (one sparse transposed mat-vec)."""
    return np.asarray(cover.T @ (weights * increment_values(counts, backup_weight)))


def coverage_share(cover: object, weights: ArrayLike, chosen: ArrayLike) -> float:
    """Share (0..1) of the total demand weight that at least one chosen site reaches.

    A city with no demand weight at all has a share of 0.
    """
    a = as_cover(cover)
    w = _weights(weights, a.shape[0])
    total = float(w.sum())
    if total <= 0:
        return 0.0
    return objective_value(a, w, _sites(chosen, a.shape[1], "chosen")) / total


def _weights(weights: ArrayLike | None, n_demand: int) -> FloatArray:
    if weights is None:
        return np.ones(n_demand, dtype=np.float64)
    errors = _weight_errors(weights, n_demand)
    if errors:
        raise ValidationFailed(errors[0].field + ": " + errors[0].reason, errors=errors)
    return np.asarray(weights, dtype=np.float64).ravel()


def _weight_errors(weights: ArrayLike, n_demand: int) -> list[FieldError]:
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        return [FieldError("weights", "must be numbers, one per demand point")]
    if w.ndim != 1 or w.size != n_demand:
        return [
            FieldError(
                "weights",
                f"has {w.size} entries, but cover has {n_demand} demand points (rows)",
            )
        ]
    if not np.all(np.isfinite(w)):
        return [FieldError("weights", f"must be finite (demand point {_first(~np.isfinite(w))})")]
    if np.any(w < 0):
        i = _first(w < 0)
        return [FieldError("weights", f"must not be negative (demand point {i} has {w[i]:g})")]
    return []


def _first(mask: NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


# --------------------------------------------------------------------------------------
# the problem


@dataclass(frozen=True, eq=False)
class CoverageProblem:
    """A maximal-covering siting problem: choose ``p`` sites to cover the most demand.

    Parameters
    ----------
    cover
        ``n_demand × n_candidates``: candidate ``j`` reaches demand point ``i`` within the
        threshold. Any scipy sparse matrix/array or dense array; stored as a boolean
        :class:`scipy.sparse.csr_array` with sorted indices.
    weights
        Demand weight per point (``n_demand``), finite and non-negative.
    p
        Number of sites to choose, fixed ones included (1 ≤ p ≤ n_candidates).
    fixed
        Candidates that must be chosen (existing posts to keep); at most ``p``, no repeats.
        Stored sorted.
    backup_weight
        β in [0, 1]: the objective adds β × the weight of points reached by two or more
        chosen sites (backup coverage, Hogan & ReVelle 1986). 0 is the plain MCLP. β
        above 1 would rank a second unit at a covered point above a first one at an
        uncovered point, which no dispatcher wants — and it would also break the
        continuous relaxation of the coverage variables (see :mod:`anwang.coverage.solve`).

    Raises
    ------
    ValidationFailed
        With one :class:`~anwang.core.errors.FieldError` per problem found (field and
        reason): no candidates or no demand points, shape mismatch, negative or
        non-finite weights, ``p`` out of range, fixed indices out of range or repeated,
        more fixed sites than ``p``, ``backup_weight`` outside [0, 1].
    """

    cover: sp.csr_array
    weights: FloatArray
    p: int
    fixed: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    backup_weight: float = 0.0

    def __post_init__(self) -> None:
        cover = as_cover(self.cover)
        n_demand, n_cand = cover.shape
        errors: list[FieldError] = []
        if n_cand == 0:
            errors.append(FieldError("cover", "the candidate list is empty (no columns)"))
        if n_demand == 0:
            errors.append(FieldError("cover", "there are no demand points (no rows)"))
        errors += _weight_errors(self.weights, n_demand)
        p = self.p
        try:
            if isinstance(p, bool | np.bool_):
                raise TypeError
            p = operator.index(p)
        except TypeError:
            errors.append(FieldError("p", "must be an integer number of sites"))
            p = -1
        else:
            if p < 1:
                errors.append(FieldError("p", "must be at least 1"))
            elif n_cand and p > n_cand:
                errors.append(
                    FieldError("p", f"asks for {p} sites but there are only {n_cand} candidates")
                )
        fixed_arr = np.asarray(self.fixed if self.fixed is not None else [])
        fixed = np.zeros(0, dtype=np.int64)
        if fixed_arr.size:
            if (
                fixed_arr.ndim != 1
                or fixed_arr.dtype == np.bool_
                or not np.issubdtype(fixed_arr.dtype, np.integer)
            ):
                errors.append(FieldError("fixed", "must be a list of candidate indices (integers)"))
            else:
                bad = fixed_arr[(fixed_arr < 0) | (fixed_arr >= n_cand)]
                uniq, counts = np.unique(fixed_arr, return_counts=True)
                if bad.size:
                    errors.append(
                        FieldError(
                            "fixed",
                            f"candidate index {int(bad[0])} is out of range 0..{n_cand - 1}",
                        )
                    )
                elif np.any(counts > 1):
                    errors.append(
                        FieldError(
                            "fixed", f"lists candidate {int(uniq[counts > 1][0])} more than once"
                        )
                    )
                elif p >= 1 and uniq.size > p:
                    errors.append(
                        FieldError("fixed", f"keeps {uniq.size} sites fixed, more than p = {p}")
                    )
                fixed = uniq.astype(np.int64)
        beta = self.backup_weight
        if not (
            isinstance(beta, int | float | np.floating | np.integer)
            and not isinstance(beta, bool)
            and math.isfinite(float(beta))
            and 0.0 <= float(beta) <= 1.0
        ):
            errors.append(FieldError("backup_weight", "must be a number between 0 and 1"))
            beta = 0.0
        if errors:
            first = errors[0]
            raise ValidationFailed(f"{first.field}: {first.reason}", errors=errors)
        w = np.array(self.weights, dtype=np.float64).ravel()
        w.setflags(write=False)
        fixed.setflags(write=False)
        object.__setattr__(self, "cover", cover)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "p", int(p))
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "backup_weight", float(beta))

    @classmethod
    def from_times(
        cls,
        times_s: object,
        max_s: float,
        weights: ArrayLike,
        p: int,
        *,
        fixed: ArrayLike = (),
        backup_weight: float = 0.0,
    ) -> CoverageProblem:
        """The problem for threshold ``max_s`` on a travel-time matrix (:func:`cover_within`)."""
        return cls(
            cover_within(times_s, max_s),
            np.asarray(weights, dtype=np.float64),
            p,
            np.asarray(fixed),
            backup_weight,
        )

    @property
    def n_demand(self) -> int:
        return int(self.cover.shape[0])

    @property
    def n_candidates(self) -> int:
        return int(self.cover.shape[1])

    @property
    def total_weight(self) -> float:
        return float(self.weights.sum())

    def sites(self, chosen: ArrayLike, *, field_name: str = "sites") -> IntArray:
        """``chosen`` checked against this problem's candidates (sorted, unique)."""
        return _sites(chosen, self.n_candidates, field_name)

    def objective(self, chosen: ArrayLike) -> float:
        """Objective value of a set of sites (fixed sites are not added implicitly)."""
        return objective_value(
            self.cover, self.weights, self.sites(chosen, field_name="chosen"), self.backup_weight
        )

    def covered_share(self, chosen: ArrayLike) -> float:
        """Share of the total weight reached by at least one of ``chosen`` (0 if no weight)."""
        total = self.total_weight
        if total <= 0:
            return 0.0
        sites = self.sites(chosen, field_name="chosen")
        return objective_value(self.cover, self.weights, sites) / total


# --------------------------------------------------------------------------------------
# analysis per threshold and district


@dataclass(frozen=True)
class DistrictCoverage:
    district: str
    covered_weight: float
    total_weight: float
    share: float
    """``covered_weight / total_weight``; 0 where the district has no weight."""


@dataclass(frozen=True)
class ThresholdCoverage:
    minutes: float
    covered_weight: float
    total_weight: float
    share: float
    districts: tuple[DistrictCoverage, ...]
    """One entry per district label, sorted by label; empty if no labels were given."""
    covered: NDArray[np.bool_] = field(repr=False)
    """Per demand point: reached within the threshold by at least one site."""


def analyze(
    covers: Mapping[float, object],
    weights: ArrayLike | None = None,
    chosen: ArrayLike | None = None,
    *,
    districts: Sequence[str] | NDArray[np.str_] | None = None,
) -> tuple[ThresholdCoverage, ...]:
    """Share of demand reached within each threshold, city-wide and per district.

    ``covers`` maps a threshold in minutes (1, 3, 5 …) to its cover matrix
    (``n_demand × n_sites``, all with the same rows); ``chosen`` selects the sites
    (columns) to count — all columns when omitted, e.g. when the matrices already hold one
    column per existing post. ``weights`` default to 1 per demand point; ``districts``
    gives a label per demand point. Results are sorted by threshold.
    """
    if not covers:
        raise ValidationFailed.on("covers", "give at least one threshold")
    mats = {float(m): as_cover(c, field_name=f"covers[{m}]") for m, c in covers.items()}
    shapes = {m.shape[0] for m in mats.values()}
    if len(shapes) != 1:
        raise ValidationFailed.on("covers", "the matrices differ in their number of demand points")
    n_demand = shapes.pop()
    w = _weights(weights, n_demand)
    if districts is not None:
        labels = np.asarray(districts).astype(str)
        if labels.shape != (n_demand,):
            raise ValidationFailed.on(
                "districts", f"has {labels.size} labels for {n_demand} demand points"
            )
        names, group = np.unique(labels, return_inverse=True)
        district_total = np.bincount(group, weights=w, minlength=names.size)
    out: list[ThresholdCoverage] = []
    for minutes in sorted(mats):
        a = mats[minutes]
        sites = (
            np.arange(a.shape[1], dtype=np.int64)
            if chosen is None
            else _sites(chosen, a.shape[1], "chosen")
        )
        covered = coverage_counts(a, sites) > 0
        covered_w = float(w[covered].sum())
        total = float(w.sum())
        per: tuple[DistrictCoverage, ...] = ()
        if districts is not None:
            dc = np.bincount(group[covered], weights=w[covered], minlength=names.size)
            per = tuple(
                DistrictCoverage(str(name), float(c), float(t), float(c / t) if t > 0 else 0.0)
                for name, c, t in zip(names, dc, district_total, strict=True)
            )
        out.append(
            ThresholdCoverage(
                minutes, covered_w, total, covered_w / total if total > 0 else 0.0, per, covered
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------------------
# before / after


@dataclass(frozen=True)
class Move:
    """A post moved from one site to another; ``None`` on one side is a plain closure or
    opening. ``distance_m`` is set when coordinates were given and both sides exist."""

    from_site: int | None
    to_site: int | None
    distance_m: float | None = None


@dataclass(frozen=True)
class SitingComparison:
    kept: IntArray
    removed: IntArray
    added: IntArray
    newly_covered: IntArray
    """Demand points reached after but not before."""
    no_longer_covered: IntArray
    """Demand points reached before but not after."""
    moves: tuple[Move, ...]
    share_before: float
    share_after: float


def _distances(coords: FloatArray, a: IntArray, b: IntArray, latlon: bool) -> FloatArray:
    pa, pb = coords[a][:, None, :], coords[b][None, :, :]
    if not latlon:
        return np.asarray(np.sqrt(((pa - pb) ** 2).sum(axis=2)), dtype=np.float64)
    return np.asarray(
        haversine_m(pa[..., 0], pa[..., 1], pb[..., 0], pb[..., 1]), dtype=np.float64
    )


def compare(
    before: ArrayLike,
    after: ArrayLike,
    *,
    cover: object,
    weights: ArrayLike | None = None,
    coordinates: ArrayLike | None = None,
    latlon: bool = False,
) -> SitingComparison:
    """What changes between two sitings on the same candidates.

    ``before`` and ``after`` are candidate indices (today's posts, the optimised ones).
    Demand points newly covered and no longer covered come from ``cover``; the shares use
    ``weights`` (1 per point when omitted).

    With ``coordinates`` (``n_candidates × 2``: planar metres, or ``(lat, lon)`` degrees
    with ``latlon=True``), removed sites are paired with added ones by a minimum-total-
    distance assignment (the Hungarian method, :func:`scipy.optimize.linear_sum_assignment`)
    — the moves a commander would make — and surplus sites on either side become plain
    closures or openings. Without coordinates every removal and addition is listed alone.
    """
    a = as_cover(cover)
    n_demand, n_cand = a.shape
    w = _weights(weights, n_demand)
    s_before = _sites(before, n_cand, "before")
    s_after = _sites(after, n_cand, "after")
    cov_b = coverage_counts(a, s_before) > 0
    cov_a = coverage_counts(a, s_after) > 0
    total = float(w.sum())
    kept = np.intersect1d(s_before, s_after)
    removed = np.setdiff1d(s_before, s_after)
    added = np.setdiff1d(s_after, s_before)
    moves: list[Move] = []
    if coordinates is not None and removed.size and added.size:
        xy = np.asarray(coordinates, dtype=np.float64)
        if xy.shape != (n_cand, 2) or not np.all(np.isfinite(xy)):
            raise ValidationFailed.on(
                "coordinates", f"must be {n_cand} finite pairs, one per candidate"
            )
        dist = _distances(xy, removed, added, latlon)
        rows, cols = linear_sum_assignment(dist)
        moves = [
            Move(int(removed[r]), int(added[c]), float(dist[r, c]))
            for r, c in zip(rows, cols, strict=True)
        ]
        left_r = np.setdiff1d(np.arange(removed.size), rows)
        left_a = np.setdiff1d(np.arange(added.size), cols)
        moves += [Move(int(removed[r]), None) for r in left_r]
        moves += [Move(None, int(added[c])) for c in left_a]
    else:
        moves = [Move(int(r), None) for r in removed] + [Move(None, int(c)) for c in added]
    return SitingComparison(
        kept=kept,
        removed=removed,
        added=added,
        newly_covered=np.flatnonzero(cov_a & ~cov_b).astype(np.int64),
        no_longer_covered=np.flatnonzero(cov_b & ~cov_a).astype(np.int64),
        moves=tuple(moves),
        share_before=float(w[cov_b].sum()) / total if total > 0 else 0.0,
        share_after=float(w[cov_a].sum()) / total if total > 0 else 0.0,
    )
