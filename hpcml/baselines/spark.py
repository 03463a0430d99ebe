"""The dataflow baseline: Apache Spark MLlib run on the same inputs as hpcml.

One :class:`SparkBaseline` holds a ``local[P]`` (or given master) session
started with fair settings — loopback address, no UI, no console progress,
Arrow on, one BLAS thread per core as hpcml's ranks have — and times its
start-up apart from loading and computing, so that a comparison can report
the JVM's start-up separately.

Matrices are handed to Spark as cached RDDs of rows.  A ``RowMatrix`` built
from a Python RDD would re-read its rows through the Python workers on every
ARPACK iteration (about 7× slower here); :meth:`SparkBaseline.row_matrix`
caches the rows on the JVM side, the way a Spark user with Scala code would
hold them, which is the fair baseline.
"""

import os
import shutil
import tempfile
import time

import numpy as np
import scipy.sparse as sp

from hpcml.errors import InputError

#: What to install when Java or pyspark is missing.
JAVA_HINT = "install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless) and set JAVA_HOME"
PYSPARK_HINT = "install the spark extra: pip install -e '.[spark]'"


def check_available():
    """Raise :class:`InputError` naming what to install when Spark cannot run here."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise InputError(f"Spark baseline: no Java found; {JAVA_HINT}")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise InputError(f"Spark baseline: pyspark is not installed; {PYSPARK_HINT}") from None


class SparkBaseline:
    """A Spark session for side-by-side runs; use as a context manager.

    Parameters
    ----------
    cores : int
        Cores of ``local[cores]`` (ignored when ``master`` is given).
    master : str, optional
        A Spark master URL (``spark://host:7077``, ``yarn``...).
    driver_memory : str
        ``spark.driver.memory``, e.g. ``"4g"``.

    Attributes
    ----------
    startup_s : float
        Seconds to start the JVM and the session.
    """

    def __init__(self, cores=2, master=None, driver_memory="4g"):
        check_available()
        self.cores = cores
        self.master = master or f"local[{cores}]"
        self.driver_memory = driver_memory
        self.spark = None
        self.startup_s = None
        self._checkpoints = None

    def __enter__(self):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")
        start = time.perf_counter()
        from pyspark.sql import SparkSession

        self.spark = (SparkSession.builder.master(self.master).appName("hpcml-baseline")
                      .config("spark.ui.enabled", "false")
                      .config("spark.ui.showConsoleProgress", "false")
                      .config("spark.driver.memory", self.driver_memory)
                      .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                      .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1")
                      .config("spark.default.parallelism", str(self.cores))
                      .getOrCreate())
        self.spark.sparkContext.setLogLevel("ERROR")
        # EM LDA's graph lineage grows with every iteration; without a
        # checkpoint directory its checkpointInterval is ignored and a long
        # run dies of a StackOverflowError in the JVM.
        self._checkpoints = tempfile.mkdtemp(prefix="hpcml-spark-checkpoints-")
        self.spark.sparkContext.setCheckpointDir(self._checkpoints)
        self.startup_s = time.perf_counter() - start
        return self

    def __exit__(self, *exc):
        if self.spark is not None:
            self.spark.stop()
            self.spark = None
        if self._checkpoints is not None:
            shutil.rmtree(self._checkpoints, ignore_errors=True)
            self._checkpoints = None

    @property
    def sc(self):
        return self.spark.sparkContext

    # -- inputs -------------------------------------------------------------------

    def _vectors(self, A):
        from pyspark.mllib.linalg import Vectors

        if sp.issparse(A):
            csr = sp.csr_matrix(A)
            n = csr.shape[1]
            return [Vectors.sparse(n, csr.indices[lo:hi], csr.data[lo:hi])
                    for lo, hi in zip(csr.indptr[:-1], csr.indptr[1:])]
        return [Vectors.dense(row) for row in np.asarray(A, dtype=np.float64)]

    def row_matrix(self, A):
        """A ``RowMatrix`` of ``A`` (dense or scipy sparse) with rows cached in the JVM.

        Returns
        -------
        matrix : pyspark.mllib.linalg.distributed.RowMatrix
        load_s : float
            Seconds to ship, convert and cache the rows.
        """
        from pyspark.mllib.linalg.distributed import RowMatrix

        start = time.perf_counter()
        rows = self.sc.parallelize(self._vectors(A), self.cores)
        matrix = RowMatrix(rows)
        java_rows = matrix._java_matrix_wrapper._java_model.rows()
        java_rows.cache()
        java_rows.count()
        return matrix, time.perf_counter() - start

    # -- the mapped computations --------------------------------------------------

    def svd(self, matrix, k, compute_u=False):
        """``RowMatrix.computeSVD(k, computeU)``; returns ``(s, V, seconds)``."""
        start = time.perf_counter()
        result = matrix.computeSVD(k, computeU=compute_u)
        s = result.s.toArray()
        V = result.V.toArray()
        if compute_u:
            result.U.rows.count()
        return s, V, time.perf_counter() - start

    def pca(self, matrix, k):
        """``computePrincipalComponentsAndExplainedVariance(k)`` through the JVM model.

        Returns
        -------
        components : numpy.ndarray
            ``n × k``.
        explained_variance_ratio : numpy.ndarray
            As Spark defines it.
        seconds : float
        """
        start = time.perf_counter()
        pair = matrix._java_matrix_wrapper._java_model.computePrincipalComponentsAndExplainedVariance(k)
        pc = pair._1()
        components = np.array(pc.toArray()).reshape(pc.numCols(), pc.numRows()).T
        ratio = np.array(pair._2().toArray())
        return components, ratio, time.perf_counter() - start

    def lasso(self, A, b, lam, fit_intercept=False, max_iter=100, tol=1e-6):
        """``LinearRegression(elasticNetParam=1, standardization=False)`` on ``(A, b)``.

        Spark minimises ``1/(2m) ‖b − A x‖² + regParam ‖x‖₁``; hpcml's LASSO
        ``½‖A x − b‖² + λ‖x‖₁`` has the same minimiser with
        ``regParam = λ / m``.

        Returns
        -------
        x : numpy.ndarray
        intercept : float
        load_s, compute_s : float
        """
        from pyspark.ml.linalg import Vectors as MLVectors
        from pyspark.ml.regression import LinearRegression

        start = time.perf_counter()
        m = A.shape[0]
        rows = [(float(label), MLVectors.dense(row)) for label, row in zip(b, np.asarray(A))]
        frame = self.spark.createDataFrame(rows, ["label", "features"]).repartition(self.cores).cache()
        frame.count()
        loaded = time.perf_counter()
        model = LinearRegression(elasticNetParam=1.0, regParam=lam / m, standardization=False,
                                 fitIntercept=fit_intercept, maxIter=max_iter, tol=tol,
                                 solver="auto").fit(frame)
        x = model.coefficients.toArray()
        done = time.perf_counter()
        frame.unpersist()
        return x, float(model.intercept), loaded - start, done - loaded

    def lda(self, counts, k, method="online", max_iter=20, alpha=None, beta=None, seed=0):
        """``pyspark.ml.clustering.LDA`` on a documents × words count matrix.

        Parameters
        ----------
        counts : scipy.sparse matrix
            Documents × words; the caller indexes the vocabulary to the words
            present, as a Spark user's ``CountVectorizer`` would.
        k : int
            Topics.
        method : {"online", "em"}
            Spark's optimiser: online variational Bayes or EM (MAP).
        alpha, beta : float, optional
            Dirichlet priors of the documents and the topics.  EM estimates
            the MAP, whose priors Spark requires to exceed 1: they are passed
            shifted by one (``alpha + 1``, ``beta + 1``), the MAP equivalent
            of the Gibbs sampler's posterior mean with ``alpha`` and ``beta``.

        Returns
        -------
        topic_word : numpy.ndarray
            ``words × k``: Spark's ``topicsMatrix`` (expected counts for EM,
            the variational parameters for online).
        load_s, compute_s : float
        """
        from pyspark.ml.clustering import LDA
        from pyspark.ml.linalg import Vectors as MLVectors

        if method not in ("online", "em"):
            raise InputError(f"Spark LDA: method must be 'online' or 'em', got {method!r}")
        start = time.perf_counter()
        csr = sp.csr_matrix(counts, dtype=np.float64)
        n = csr.shape[1]
        rows = [(MLVectors.sparse(n, csr.indices[lo:hi], csr.data[lo:hi]),)
                for lo, hi in zip(csr.indptr[:-1], csr.indptr[1:])]
        frame = self.spark.createDataFrame(rows, ["features"]).repartition(self.cores).cache()
        frame.count()
        loaded = time.perf_counter()
        shift = 1.0 if method == "em" else 0.0
        lda = LDA(k=k, maxIter=max_iter, optimizer=method, seed=seed)
        if alpha is not None:
            lda.setDocConcentration([float(alpha) + shift] * k)
        if beta is not None:
            lda.setTopicConcentration(float(beta) + shift)
        if method == "online":
            # Whole-corpus batches: each iteration sees every document, as a
            # Gibbs sweep does, so iterations mean the same work on both sides;
            # with whole batches the step size need not start small (Spark's
            # default offset of 1024 barely moves from the random start).
            lda.setSubsamplingRate(1.0).setOptimizeDocConcentration(False).setLearningOffset(1.0)
        model = lda.fit(frame)
        topics = model.topicsMatrix().toArray()
        done = time.perf_counter()
        frame.unpersist()
        return np.asarray(topics, dtype=np.float64), loaded - start, done - loaded
