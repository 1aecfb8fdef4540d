"""WiSE-FT's weight average against the same average of two open_clip state dicts (torch)."""
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.errors import WeightsError
from remoteclip_jax.weights.interpolate import interpolate
from tests.helpers.openclip import build_openclip

torch = pytest.importorskip("torch")


def torch_average(zero_shot, finetuned, alpha):
    """mlfoundations/wise-ft's rule on two open_clip state dicts, in float64 (float entries)."""
    a, b = zero_shot.state_dict(), finetuned.state_dict()
    return {k: ((1 - alpha) * a[k].double() + alpha * b[k].double()).numpy()
            for k in a if a[k].is_floating_point()}


@pytest.mark.parametrize("cfg", [rc.models.TINY_VIT, rc.models.TINY_RESNET], ids=["vit", "resnet"])
def test_interpolation_equals_the_weighted_average_of_open_clip_state_dicts(cfg):
    zero_shot, finetuned = build_openclip(cfg, seed=0), build_openclip(cfg, seed=1)
    v0 = rc.load_openclip({k: v.numpy() for k, v in zero_shot.state_dict().items()}, cfg)
    v1 = rc.load_openclip({k: v.numpy() for k, v in finetuned.state_dict().items()}, cfg)
    alpha = 0.3
    ours = rc.to_openclip(interpolate(v0, v1, alpha), cfg)
    want = torch_average(zero_shot, finetuned, alpha)
    # Every float entry, BatchNorm statistics included (the converter adds BatchNorm's integer
    # num_batches_tracked, which WiSE-FT's float average does not touch).
    assert set(want) <= set(ours)
    assert all(k.endswith("num_batches_tracked") for k in set(ours) - set(want))
    for k in want:
        v = ours[k]
        assert v.dtype == np.float32
        np.testing.assert_allclose(v, want[k], rtol=1e-6, atol=1e-7, err_msg=k)
    # The ends are the two models exactly.
    for end, model in ((0.0, zero_shot), (1.0, finetuned)):
        same = rc.to_openclip(interpolate(v0, v1, end), cfg)
        for k, v in model.state_dict().items():
            if k in same:
                np.testing.assert_array_equal(same[k], v.numpy(), err_msg=k)


def test_models_of_two_architectures_are_refused():
    a = {"params": {"w": np.zeros((2, 3)), "b": np.zeros(3)}}
    with pytest.raises(WeightsError, match=r"different shapes: \['params'\]\['w'\]"):
        interpolate(a, {"params": {"w": np.zeros((3, 3)), "b": np.zeros(3)}}, 0.5)
    with pytest.raises(WeightsError, match=r"only in the zero-shot model: \[\"\['params'\]\['b'\]\"\]"):
        interpolate(a, {"params": {"w": np.zeros((2, 3))}}, 0.5)
