"""The reference's embedding space: principal directions and topic clusters, fitted on half of it.

The reference embeddings are split in two at random (a seeded permutation, never by position:
traffic that arrives in a periodic order, such as routes served in turn, would otherwise put
whole segments in one half and none in the other). The *fit* half chooses the
principal directions, their whitening scales and the k-means topic clusters; the *held-out* half
provides the reference sample the windows are compared with (its whitened projections and its
cluster counts). Fitting and comparing on the same points would make the reference look closer to
its own clusters and directions than fresh data is (the NannyML pitfall); with the split, the
held-out half and a window are exchangeable under no drift, given the fitted space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftscope_llm.services.drift.codec import decode_array, encode_array
from driftscope_llm.services.errors import InsufficientDataError

__all__ = ["EmbeddingReference", "fit_embedding_reference", "kmeans"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class EmbeddingReference:
    """What the embedding detectors need of a reference (all arrays float64 unless noted).

    ``center`` (d), ``basis`` (d×r) and ``scale`` (r) define whitened coordinates
    ``y = ((x - center) @ basis) / scale``; ``projections`` (n×r) are the held-out half's
    whitened coordinates; ``centroids`` (k×d) the topic clusters; ``cluster_counts`` (k, int64)
    the held-out half's cluster sizes. ``components``/``clusters`` record the settings used.
    ``novelty`` (sorted) holds the held-out half's :meth:`novelty` scores: the null law of how
    unlike every reference topic a new output is (empty in references saved before it existed).
    """

    center: FloatArray
    basis: FloatArray
    scale: FloatArray
    projections: FloatArray
    centroids: FloatArray
    cluster_counts: IntArray
    components: int
    clusters: int
    n_total: int
    invalid: int = 0
    novelty: FloatArray = field(default_factory=lambda: np.zeros(0))
    _half_norms: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        c = self.centroids
        object.__setattr__(self, "_half_norms", 0.5 * np.einsum("ij,ij->i", c, c))

    @property
    def dim(self) -> int:
        return int(self.center.size)

    @property
    def n(self) -> int:
        return int(self.projections.shape[0])

    def project(self, x: FloatArray) -> FloatArray:
        """Whitened coordinates of one vector or of rows."""
        out: FloatArray = ((x - self.center) @ self.basis) / self.scale
        return out

    def assign(self, x: FloatArray) -> IntArray:
        """Nearest centroid (squared Euclidean) of each row of ``x``."""
        score = x @ self.centroids.T - self._half_norms[None, :]
        out: IntArray = np.argmax(score, axis=1).astype(np.int64)
        return out

    def novelty_of(self, x: FloatArray) -> FloatArray:
        """Squared distance of each row of ``x`` to its nearest centroid: large for outputs
        unlike every reference topic (a new subject), whatever direction they lie in."""
        rows = np.atleast_2d(x)
        score = rows @ self.centroids.T - self._half_norms[None, :]
        out: FloatArray = np.einsum("ij,ij->i", rows, rows) - 2.0 * np.max(score, axis=1)
        return out

    def summary(self) -> dict[str, Any]:
        total = max(1, int(self.cluster_counts.sum()))
        return {
            "n": self.n_total,
            "dim": self.dim,
            "cluster_shares": [round(int(c) / total, 6) for c in self.cluster_counts],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "embedding",
            "center": encode_array(self.center),
            "basis": encode_array(self.basis),
            "scale": encode_array(self.scale),
            "projections": encode_array(self.projections),
            "centroids": encode_array(self.centroids),
            "cluster_counts": encode_array(self.cluster_counts),
            "components": self.components,
            "clusters": self.clusters,
            "n_total": self.n_total,
            "invalid": self.invalid,
            "novelty": encode_array(self.novelty),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbeddingReference:
        return cls(
            center=decode_array(d["center"]),
            basis=decode_array(d["basis"]),
            scale=decode_array(d["scale"]),
            projections=decode_array(d["projections"]),
            centroids=decode_array(d["centroids"]),
            cluster_counts=decode_array(d["cluster_counts"]),
            components=int(d["components"]),
            clusters=int(d["clusters"]),
            n_total=int(d["n_total"]),
            invalid=int(d.get("invalid", 0)),
            novelty=decode_array(d["novelty"]) if "novelty" in d else np.zeros(0),
        )


def kmeans(x: FloatArray, k: int, rng: np.random.Generator, iters: int = 30) -> FloatArray:
    """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii 2007); returns centroids."""
    n = x.shape[0]
    k = max(1, min(k, n))
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(n)]
    d2 = np.sum((x - centroids[0]) ** 2, axis=1)
    for j in range(1, k):
        total = float(d2.sum())
        idx = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centroids[j] = x[idx]
        d2 = np.minimum(d2, np.sum((x - centroids[j]) ** 2, axis=1))
    for _ in range(iters):
        score = x @ centroids.T - 0.5 * np.einsum("ij,ij->i", centroids, centroids)[None, :]
        labels = np.argmax(score, axis=1)
        moved = False
        for j in range(k):
            members = x[labels == j]
            if members.shape[0] == 0:
                continue
            new = members.mean(axis=0)
            if not np.array_equal(new, centroids[j]):
                centroids[j] = new
                moved = True
        if not moved:
            break
    return centroids


def fit_embedding_reference(
    vectors: FloatArray, *, components: int, clusters: int, seed: int, invalid: int = 0
) -> EmbeddingReference:
    """Fit the reference space on a random half of ``vectors`` (``seed``) and hold out the
    other half; the split ignores the rows' order, so a periodic arrival order cannot bias it."""
    n = vectors.shape[0]
    if n < 8:
        raise InsufficientDataError("too few reference embeddings", needed=8, got=n)
    order = np.random.default_rng([seed, n]).permutation(n)
    fit = vectors[np.sort(order[: (n + 1) // 2])].astype(np.float64)
    held = vectors[np.sort(order[(n + 1) // 2 :])].astype(np.float64)
    center = fit.mean(axis=0)
    _, s, vt = np.linalg.svd(fit - center, full_matrices=False)
    var = s**2 / max(1, fit.shape[0] - 1)
    r = int(min(components, int(np.count_nonzero(var > var[0] * 1e-10)), fit.shape[0] - 2))
    r = max(1, r)
    basis = np.ascontiguousarray(vt[:r].T)
    scale = np.sqrt(np.maximum(var[:r], 1e-24))
    proj = ((held - center) @ basis) / scale
    k = max(2, min(clusters, fit.shape[0] // 5))
    centroids = kmeans(fit, k, np.random.default_rng(seed))
    ref = EmbeddingReference(center, basis, scale, proj, centroids,
                             np.zeros(centroids.shape[0], dtype=np.int64), components, clusters,
                             n_total=n, invalid=invalid)
    counts = np.bincount(ref.assign(held), minlength=centroids.shape[0]).astype(np.int64)
    novelty = np.sort(ref.novelty_of(held))
    return EmbeddingReference(center, basis, scale, proj, centroids, counts, components, clusters,
                              n_total=n, invalid=invalid, novelty=novelty)
