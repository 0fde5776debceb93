"""Classical (non-neural) MI estimators: a finite sample in, an estimate in nats out.

* ``ksg``: the first k-nearest-neighbour estimator of Kraskov, Stögbauer & Grassberger (2004),
  on a kd-tree (CPU) or by exact batched distances in torch (GPU, or CPU on request); in the
  max-norm throughout (the paper's choice) or, as BMI's KSG, Euclidean within x and within y;
* ``ksg_ensemble``: the mean of ``ksg`` over several neighbourhood sizes k;
* ``gaussian_cca``: the Gaussian plug-in from the sample covariance (canonical correlations);
* ``histogram``: equal-width binning of 1- or 2-dimensional x and y, with or without the
  Miller-Madow correction.

Inputs are numpy arrays or torch tensors of shape (N,) or (N, d), paired row by row; they are
read as float64. None of these estimators trains anything, so they serve as reference lines for
the neural bounds: exact or nearly so on the easy tasks, and biased in known ways on the hard ones
(high MI, high dimension, nonlinear transforms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma

# The torch path of ``ksg`` works on blocks of at most this many rows: a block of c rows holds
# three (c, N) float64 distance matrices. 256 rows keep one in the cache for N up to a few
# thousand; on N = 5,000 points they ran 1.2-2x faster than blocks of 1,024. For large N the
# block shrinks so that each matrix stays within TORCH_BLOCK_ELEMENTS (2**25 float64 = 256 MiB).
TORCH_BLOCK_ROWS = 256
TORCH_BLOCK_ELEMENTS = 2**25


def _as_numpy_2d(a, name: str) -> np.ndarray:
    """``a`` as a float64 numpy array of shape (N, d); a 1-d input becomes one column."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (N,) or (N, d), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _as_tensor_2d(a, name: str, device: torch.device) -> torch.Tensor:
    """``a`` as a float64 tensor of shape (N, d) on ``device``."""
    if not isinstance(a, torch.Tensor):
        a = torch.from_numpy(np.asarray(a))
    a = a.detach().to(device=device, dtype=torch.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (N,) or (N, d), got {tuple(a.shape)}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _check_pair(n_x: int, n_y: int, k: int) -> None:
    if n_x != n_y:
        raise ValueError(f"x and y must have the same number of rows, got {n_x} and {n_y}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n_x <= k:
        raise ValueError(f"ksg needs more than k = {k} points, got N = {n_x}")


def _torch_device(x, y, device) -> torch.device | None:
    """The device of the torch path, or None for the kd-tree path."""
    if device is not None:
        return torch.device(device)
    for a in (x, y):
        if isinstance(a, torch.Tensor) and a.device.type != "cpu":
            return a.device
    return None


def _ksg_counts_kdtree(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """n_x(i), n_y(i) of KSG's first estimator, from kd-trees in the max-norm."""
    z = np.hstack([x, y])
    # The k + 1 nearest include the point itself (distance 0), so the last one is the k-th
    # nearest other point, also when several points coincide.
    dist, _ = cKDTree(z).query(z, k=k + 1, p=np.inf, workers=-1)
    eps = dist[:, -1]
    # query_ball_point counts distances <= r; the largest float below eps turns that into < eps.
    radius = np.nextafter(eps, 0)
    counts = []
    for marginal in (x, y):
        inside = cKDTree(marginal).query_ball_point(marginal, radius, p=np.inf, workers=-1,
                                                    return_length=True)
        # Minus the point itself; with eps = 0 no point is strictly closer, the point included.
        counts.append(np.where(eps > 0, inside - 1, 0))
    return counts[0], counts[1]


def _distances(a: torch.Tensor, rows: slice, metric: str) -> torch.Tensor:
    """Exact distances from a[rows] to every row of a: (rows, N), in the max-norm or the
    Euclidean norm. ``torch.cdist``'s direct path sums the squared differences (it never takes
    the matmul shortcut ||a||^2 + ||b||^2 - 2 a.b, whose rounding would put equal points at a
    small non-zero distance) without materialising the (rows, N, d) differences, which made it
    10-40x faster than forming them (N = 5,000, d = 1-25, one thread)."""
    p = math.inf if metric == "max" else 2.0
    return torch.cdist(a[rows], a, p=p, compute_mode="donot_use_mm_for_euclid_dist")


def _ksg_counts_torch(x: torch.Tensor, y: torch.Tensor, k: int,
                      metric: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """n_x(i), n_y(i) of KSG's first estimator, from exact pairwise distances within x and
    within y (``metric``: "max" or "euclidean"); the distance in z = (x, y) is the larger one."""
    n = x.shape[0]
    block = max(1, min(TORCH_BLOCK_ROWS, TORCH_BLOCK_ELEMENTS // n))
    n_x, n_y = [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = torch.arange(stop - start, device=x.device)
        d_x = _distances(x, slice(start, stop), metric)        # (rows, N)
        d_y = _distances(y, slice(start, stop), metric)
        # A point is not its own neighbour.
        d_x[rows, rows + start] = math.inf
        d_y[rows, rows + start] = math.inf
        d_z = torch.maximum(d_x, d_y)
        eps = torch.topk(d_z, k, dim=1, largest=False).values[:, -1:]       # k-th nearest
        n_x.append((d_x < eps).sum(dim=1))
        n_y.append((d_y < eps).sum(dim=1))
    return torch.cat(n_x).cpu().numpy(), torch.cat(n_y).cpu().numpy()


KSG_METRICS = ("max", "euclidean")


def standardized(a: np.ndarray) -> np.ndarray:
    """Each column minus its mean, over its standard deviation (ddof 0); a constant column is
    only centred. What BMI does to x and to y before its estimators (scikit-learn's
    StandardScaler)."""
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def ksg(x, y, *, k: int = 3, metric: str = "max", standardize: bool = False, clip: bool = False,
        device: str | torch.device | None = None) -> float:
    """I(X; Y) in nats by the first estimator of Kraskov, Stögbauer & Grassberger (2004), eq. 8.

    eps_i is the distance from z_i = (x_i, y_i) to its k-th nearest other point, where the
    distance in z is the larger of the distances in x and in y; n_x(i) is the number of points
    j != i with ||x_j - x_i|| < eps_i (strictly), n_y(i) likewise, and

        I = psi(k) + psi(N) - mean_i [psi(n_x(i) + 1) + psi(n_y(i) + 1)].

    metric: the norm within x and within y. "max" (the default) is the paper's max-norm, so the
    distance in z is the max-norm of z. "euclidean" is BMI's choice (``KSGEnsembleFirstEstimator``
    of benchmark-mi): Euclidean within each side, the larger of the two in z. The two are
    different estimators; on tens of dimensions they differ by far more than a seed's spread.

    standardize: z-score every coordinate of x and of y first (``standardized``), as BMI does.
    Without it the estimate depends on the scale of x relative to y (the distance in z compares
    them directly), so it is not invariant to rescaling one side.

    clip: return max(0, I), as BMI does (MI is never negative). Without it the value is
    returned as computed: it may be slightly negative when X and Y are (nearly) independent.

    Duplicate points: if at least k other points coincide with z_i, then eps_i = 0, no point is
    strictly closer, and n_x(i) = n_y(i) = 0; such points push the estimate up (they are the
    finite-sample image of a discrete component, where the continuous formula does not apply).
    Add a little noise to data with ties if that is not wanted.

    device: None runs a kd-tree (scipy) on the CPU for the max-norm, unless x or y is a CUDA
    tensor, which runs the torch path on that tensor's device. Any device (e.g. "cuda",
    "cuda:1" or "cpu") runs the torch path there: exact distances in blocks of rows, in float64
    (so not on "mps"). The Euclidean metric always takes the torch path (on the CPU when no
    device is given): no kd-tree finds neighbours in the larger of two Euclidean distances.
    """
    if metric not in KSG_METRICS:
        raise ValueError(f"ksg: metric must be one of {', '.join(KSG_METRICS)}, got {metric!r}")
    torch_device = _torch_device(x, y, device)
    if torch_device is None and metric == "max":
        xs, ys = _as_numpy_2d(x, "x"), _as_numpy_2d(y, "y")
        _check_pair(xs.shape[0], ys.shape[0], k)
        if standardize:
            xs, ys = standardized(xs), standardized(ys)
        n_x, n_y = _ksg_counts_kdtree(xs, ys, k)
    else:
        torch_device = torch_device or torch.device("cpu")
        xt, yt = _as_tensor_2d(x, "x", torch_device), _as_tensor_2d(y, "y", torch_device)
        _check_pair(xt.shape[0], yt.shape[0], k)
        if standardize:
            xt, yt = (torch.from_numpy(standardized(a.cpu().numpy())).to(torch_device) for a in (xt, yt))
        n_x, n_y = _ksg_counts_torch(xt, yt, k, metric)
    n = n_x.shape[0]
    value = float(digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1)))
    return max(0.0, value) if clip else value


def ksg_ensemble(x, y, *, ks: Sequence[int] = (5, 10), metric: str = "max", standardize: bool = False,
                 clip: bool = False, device: str | torch.device | None = None) -> float:
    """The mean of ``ksg`` over the neighbourhood sizes ``ks`` (Kraskov, Stögbauer & Grassberger
    2004, first estimator), as in the KSG ensemble of Czyż et al. (2023, BMI). ``metric``,
    ``standardize`` and ``clip`` as in ``ksg`` (with ``clip``, each k's estimate is clipped
    before the mean, as BMI does). BMI's "KSG-10" is ``ksg(x, y, k=10, metric="euclidean",
    standardize=True, clip=True)``."""
    ks = list(ks)
    if not ks:
        raise ValueError("ksg_ensemble needs at least one k")
    if standardize:
        x, y = standardized(_as_numpy_2d(x, "x")), standardized(_as_numpy_2d(y, "y"))
    return float(np.mean([ksg(x, y, k=k, metric=metric, clip=clip, device=device) for k in ks]))


def gaussian_cca(x, y) -> float:
    """I(X; Y) in nats of the Gaussian with the sample's covariance (Gelfand & Yaglom 1957; the
    canonical correlations are Hotelling's, 1936):

        I = 1/2 (log det S_x + log det S_y - log det S),

    S the joint sample covariance and S_x, S_y its diagonal blocks; this equals
    -1/2 sum_i log(1 - rho_i^2) over the canonical correlations rho_i. It is consistent for
    jointly Gaussian data and otherwise measures only the linear dependence: under nonlinear
    transforms it is a biased (usually low) reference line.
    """
    xs, ys = _as_numpy_2d(x, "x"), _as_numpy_2d(y, "y")
    n, d_x, d_y = xs.shape[0], xs.shape[1], ys.shape[1]
    if ys.shape[0] != n:
        raise ValueError(f"x and y must have the same number of rows, got {n} and {ys.shape[0]}")
    if n <= d_x + d_y:
        raise ValueError(f"gaussian_cca needs N > dx + dy = {d_x + d_y} points for a nonsingular "
                         f"sample covariance, got N = {n}")
    cov = np.cov(np.hstack([xs, ys]), rowvar=False).reshape(d_x + d_y, d_x + d_y)
    logdets = []
    for block in (cov[:d_x, :d_x], cov[d_x:, d_x:], cov):
        sign, logdet = np.linalg.slogdet(block)
        if sign <= 0:
            raise ValueError("gaussian_cca: the sample covariance is singular (a constant or "
                             "linearly dependent coordinate)")
        logdets.append(logdet)
    return float(0.5 * (logdets[0] + logdets[1] - logdets[2]))


def _bin_codes(a: np.ndarray, bins: int) -> np.ndarray:
    """One integer per row: the cell of an equal-width grid (``bins`` per coordinate, over the
    sample's range of each coordinate) holding that row."""
    codes = np.zeros(a.shape[0], dtype=np.int64)
    for column in a.T:
        low, high = column.min(), column.max()
        width = (high - low) / bins
        if width > 0:
            index = np.clip(np.floor((column - low) / width).astype(np.int64), 0, bins - 1)
        else:                                   # a constant coordinate: one bin
            index = np.zeros(a.shape[0], dtype=np.int64)
        codes = codes * bins + index
    return codes


def _entropy(codes: np.ndarray, miller_madow: bool) -> float:
    """Plug-in entropy in nats of the cell frequencies, plus (m - 1) / (2N) if ``miller_madow``
    (m the number of non-empty cells)."""
    _, counts = np.unique(codes, return_counts=True)
    p = counts / codes.shape[0]
    h = float(-np.sum(p * np.log(p)))
    if miller_madow:
        h += (counts.shape[0] - 1) / (2 * codes.shape[0])
    return h


def histogram(x, y, *, bins: int = 16, correction: str = "miller-madow") -> float:
    """I(X; Y) = H(X) + H(Y) - H(X, Y) in nats from an equal-width histogram, with ``bins`` bins
    per coordinate over the sample's range. ``correction="miller-madow"`` adds (m - 1) / (2N) to
    each entropy, m its number of non-empty cells (Miller 1955); ``"none"`` gives the plug-in.

    x and y may have 1 or 2 coordinates each (the joint grid has bins^(dx + dy) cells).
    The estimate is of the binned variables, so coarse bins bias it down, and sparse cells bias
    the plug-in up; Miller-Madow removes the first-order part of the latter.
    """
    xs, ys = _as_numpy_2d(x, "x"), _as_numpy_2d(y, "y")
    d_x, d_y = xs.shape[1], ys.shape[1]
    if d_x not in (1, 2) or d_y not in (1, 2):
        raise ValueError(f"histogram estimator: x and y must have 1 or 2 dimensions each, "
                         f"got dx={d_x}, dy={d_y}")
    if xs.shape[0] != ys.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, got {xs.shape[0]} and {ys.shape[0]}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if correction not in ("miller-madow", "none"):
        raise ValueError(f"correction must be 'miller-madow' or 'none', got {correction!r}")
    miller_madow = correction == "miller-madow"
    code_x, code_y = _bin_codes(xs, bins), _bin_codes(ys, bins)
    code_xy = code_x * bins**d_y + code_y
    return (_entropy(code_x, miller_madow) + _entropy(code_y, miller_madow)
            - _entropy(code_xy, miller_madow))
