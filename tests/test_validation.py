"""Bad input raises a ValueError that names the argument."""
import jax
import numpy as np
import pytest

from sdrift_jax import drift_field, sinkhorn, sinkhorn_divergence

X = np.zeros((5, 2), np.float32)
Y = np.ones((4, 2), np.float32)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=np.zeros(5, np.float32)), r"x must have shape \[n, d\]"),
    (dict(x=np.zeros((2, 5, 2), np.float32)), r"x must have shape \[n, d\]"),
    (dict(y_pos=np.zeros((4, 3), np.float32)), "share the dimension d"),
    (dict(y_neg=np.zeros((4, 3), np.float32)), "y_neg has d=3"),
    (dict(x=np.zeros((0, 2), np.float32)), "x must be non-empty"),
    (dict(y_pos=np.zeros((0, 2), np.float32)), "y_pos must be non-empty"),
    (dict(x=np.zeros((5, 2), np.int32)), "x must have a floating dtype"),
    (dict(y_neg=np.zeros((5, 2), bool)), "y_neg must have a floating dtype"),
    (dict(tau=0.0), "tau must be positive"),
    (dict(tau=-1.0), "tau must be positive"),
    (dict(tau=float("nan")), "tau must be positive and finite"),
    (dict(tau=float("inf")), "tau must be positive and finite"),
    (dict(tau=1e300), r"got 1e\+300, which float32 cannot represent"),  # not "got inf"
    (dict(tau=[0.1, 1e-300]), r"got 1e-300, which float32 cannot represent"),
    (dict(tau=2**40), "got 1099511627776, which int32 cannot represent"),
    (dict(tau=[0.1, -0.2]), "tau must be positive"),
    (dict(tau=[]), "tau must not be an empty sequence"),
    (dict(tau=None), "tau must be"),
    (dict(tau=np.ones((2, 2))), "tau must be a scalar or a non-empty 1-D"),
    (dict(T=0), "T must be >= 1"),
    (dict(T=2.5), "T must be an int"),
    (dict(T=True), "T must be an int"),
    (dict(normalization="softmax"), "unknown normalization 'softmax'"),
    (dict(cost="cosine"), "unknown cost 'cosine'"),
    (dict(x=np.zeros((5, 3), np.float32), y_neg=Y),
     r"^point clouds must share the dimension d: x has d=3, y_pos has d=2, y_neg has d=2$"),
    (dict(mask_self=True, y_neg=Y),
     r"^mask_self=True masks the diagonal of the x-to-y_neg cost, so y_neg must be x "
     r"\(same number of rows, at least 2\); got x \(5, 2\), y_neg \(4, 2\)$"),
    (dict(mask_self=True, x=X[:1], y_neg=None), r"^mask_self=True .* got x \(1, 2\)"),
    (dict(mask_self="yes"), "mask_self must be a bool"),
    (dict(weights_pos=np.ones(3, np.float32)), r"weights_pos must have shape \[4\]"),
    (dict(weights_x=-np.ones(5, np.float32)), "weights_x must be finite, non-negative"),
    (dict(weights_neg=np.ones(5, np.int32)), "weights_neg must have a floating dtype"),
])
def test_drift_field_rejects(kwargs, match):
  args = dict(x=X, y_pos=Y, y_neg=X, tau=0.5, T=3)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    drift_field(**args)


def test_traced_T_is_rejected_inside_jit():
  with pytest.raises(ValueError, match="T must be a static Python int"):
    jax.jit(lambda T: drift_field(X, Y, X, 0.5, T))(3)


def test_sinkhorn_functions_reject_bad_input():
  with pytest.raises(ValueError, match="tau must be a single temperature"):
    sinkhorn(X, Y, [0.1, 0.2])
  with pytest.raises(ValueError, match="T must be >= 1"):
    sinkhorn_divergence(X, Y, 0.1, T=0)
  with pytest.raises(ValueError, match="y must have a floating dtype"):
    sinkhorn(X, np.ones((3, 2), np.int64), 0.1)
  with pytest.raises(ValueError, match=r"b must have shape \[4\]"):
    sinkhorn(X, Y, 0.1, b=np.ones(5, np.float32))


def test_aliases_are_accepted():
  v = drift_field(X + np.arange(5, dtype=np.float32)[:, None], Y, None, 0.5, cost="gaussian")
  w = drift_field(X + np.arange(5, dtype=np.float32)[:, None], Y, None, 0.5, cost="sqeuclidean")
  np.testing.assert_array_equal(v, w)


def test_mask_self_accepts_two_particles_and_one_dimension():
  """The smallest self-masked problem (N = 2) and d = 1 run: the self-mask needs two rows,
  not two dimensions."""
  x2 = np.array([[0.0, 0.0], [1.0, 0.5]], np.float32)
  assert np.all(np.isfinite(drift_field(x2, Y, None, 0.5, T=3, mask_self=True)))
  x1 = np.linspace(0.0, 1.0, 5, dtype=np.float32)[:, None]
  assert np.all(np.isfinite(drift_field(x1, Y[:, :1], None, 0.5, T=3, mask_self=True)))
