"""Distributed linear algebra: SVD and PCA of row-sharded matrices."""

from hpcml.linalg.pca import PCA, TruncatedSVD
from hpcml.linalg.svd import METHODS, NotConverged, SVDResult, choose_method, svd

__all__ = ["METHODS", "PCA", "NotConverged", "SVDResult", "TruncatedSVD", "choose_method", "svd"]
