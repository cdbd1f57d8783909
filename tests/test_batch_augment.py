"""The batched training path must match Albumentations: same pixels for the same
parameters, and the same distribution of outputs for the same spec."""
import json

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import cv2
import numpy as np
import pytest

from playground.specs.augment import AugSpec, build_pipeline, default_aug, make_transform
from playground.training.batch_augment import BatchAugment, affine_matrices

MEAN = (0.49, 0.48, 0.45)


def _image(seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric test image: flips, shifts and rotations all change it."""
    yy, xx = np.mgrid[0:32, 0:32]
    rng = np.random.default_rng(seed)
    img = np.stack([xx * 7, yy * 5 + xx * 2, (xx * yy) % 97 + 60], -1) + rng.integers(0, 20, (32, 32, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_affine_matrix_and_pixels_equal_albumentations():
    rng = np.random.default_rng(0)
    img = _image()
    aff = A.Affine(translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), keep_ratio=True, rotate=(-15, 15),
                   border_mode=cv2.BORDER_REFLECT_101, fill=(125, 122, 114))
    for _ in range(20):
        tx, ty = rng.integers(-3, 4, 2)
        s, r = rng.uniform(0.9, 1.1), rng.uniform(-15, 15)
        ref = fgeometric.create_affine_transformation_matrix(
            {"x": tx, "y": ty}, {"x": 0.0, "y": 0.0}, {"x": s, "y": s}, r, fgeometric.center((32, 32)))
        ours = affine_matrices(np.array([tx]), np.array([ty]), np.array([s]), np.array([r]), 32, 32)[0]
        np.testing.assert_allclose(ours, ref[:2], atol=1e-9)
        warped = cv2.warpAffine(img, ours, (32, 32), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101, borderValue=(125, 122, 114))
        expected = aff.apply(img, matrix=ref, output_shape=(32, 32))
        assert np.abs(warped.astype(int) - expected).max() <= 1


def _moments(fn, n: int) -> tuple[np.ndarray, np.ndarray]:
    out = fn(n).astype(np.float64)
    return out.mean(0), out.var(0)


def _mismatch(spec_a: AugSpec, spec_b: AugSpec, n: int = 4000) -> float:
    """Mean squared z-score of per-pixel means: 1 on average when both paths draw from one
    distribution (pixels are correlated, so a single draw spreads widely around 1)."""
    img = _image()
    pipe = build_pipeline(spec_a, MEAN, seed=1)
    batch = BatchAugment(spec_b, MEAN, seed=2)
    m_a, v_a = _moments(lambda k: np.stack([pipe(image=img)["image"] for _ in range(k)]), n)
    m_b, v_b = _moments(lambda k: batch(np.repeat(img[None], k, 0)), n)
    z2 = (m_a - m_b) ** 2 / ((v_a + v_b) / n + 1e-9)
    return float(z2[(v_a + v_b) > 0].mean())


SPECS = {
    "flip": AugSpec([make_transform("HorizontalFlip", 0.5)]),
    "affine": AugSpec([make_transform("Affine", 0.7)]),
    "affine-constant": AugSpec([make_transform("Affine", 1.0, shift=0.2, rotate=30, border="constant")]),
    "dropout": AugSpec([make_transform("CoarseDropout", 0.5, holes=[1, 3], size=[4, 12])]),
    "crop": AugSpec([make_transform("RandomCrop", 1.0)]),
    "crop-replicate": AugSpec([make_transform("RandomCrop", 0.6, padding=3, border="replicate")]),
    "seed default": default_aug(),
    "with per-image fallback": AugSpec([make_transform("RandomCrop"), make_transform("ToGray", 0.3),
                                        make_transform("HorizontalFlip")]),
}


@pytest.mark.parametrize("name", SPECS)
def test_batched_path_draws_the_albumentations_distribution(name):
    assert _mismatch(SPECS[name], SPECS[name]) < 3.0


@pytest.mark.parametrize("wrong", [
    AugSpec([make_transform("HorizontalFlip", 0.4), make_transform("Affine", 0.5),
             make_transform("CoarseDropout", 0.5)]),
    AugSpec([make_transform("HorizontalFlip", 0.5), make_transform("Affine", 0.5, shift=0.2),
             make_transform("CoarseDropout", 0.5)]),
    AugSpec([make_transform("HorizontalFlip", 0.5), make_transform("Affine", 0.5),
             make_transform("CoarseDropout", 0.5, size=[12, 12])]),
])
def test_the_distribution_check_detects_differences(wrong):
    assert _mismatch(default_aug(), wrong) > 6.0


def test_batch_is_not_modified_and_is_reproducible():
    x = np.stack([_image(i) for i in range(16)])
    before = x.copy()
    a = BatchAugment(default_aug(), MEAN, seed=5)(x)
    b = BatchAugment(default_aug(), MEAN, seed=5)(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == x.shape and not np.array_equal(a, x)


@pytest.mark.parametrize("border", ["reflect", "constant", "replicate"])
@pytest.mark.parametrize("padding", [1, 4, 16])
def test_the_device_path_gives_the_cpu_paths_pixels_for_the_same_seed(border, padding):
    """``on_device`` (torch ops, for a batch kept on the GPU) applies the same draws as the numpy
    path: flip, pad-and-crop with every border and CoarseDropout give identical uint8 batches."""
    import torch

    spec = AugSpec([make_transform("HorizontalFlip", 0.5), make_transform("RandomCrop", 0.9, padding=padding,
                                                                           border=border),
                    make_transform("CoarseDropout", 0.7, holes=[1, 3], size=[4, 12], fill="mean")])
    cpu, device = BatchAugment(spec, MEAN, seed=7), BatchAugment(spec, MEAN, seed=7)
    assert device.runs_on_device
    x = np.stack([_image(s) for s in range(48)])
    for _ in range(4):  # the generators move on together, batch after batch
        assert np.array_equal(cpu(x), device.on_device(torch.from_numpy(x)).numpy())


def test_a_transform_without_a_torch_twin_keeps_the_batch_on_the_cpu():
    assert not BatchAugment(default_aug(), MEAN, seed=0).runs_on_device  # Affine: OpenCV's warp only


def test_the_alternating_flip_shows_each_image_both_ways_in_any_two_epochs():
    """airbench's alternating flip: epoch 1 mirrors a random half (the flip's p), every later epoch the
    opposite set of the epoch before, whatever the batch order; the device path mirrors the same images;
    a batch without its indices and epoch is refused rather than silently drawn at random."""
    import torch

    n = 400
    x = np.stack([_image(s % 7) for s in range(n)])
    spec = AugSpec([make_transform("HorizontalFlip", 0.5)])
    aug, twin = BatchAugment(spec, MEAN, seed=3, alternate_flip=n), BatchAugment(spec, MEAN, seed=3, alternate_flip=n)
    mirrored = x[:, :, ::-1]
    seen = []
    for epoch in (1, 2, 3):
        order = np.random.default_rng(epoch).permutation(n)
        out = np.empty_like(x)
        for i in range(0, n, 64):
            idx = order[i:i + 64]
            out[idx] = aug(x[idx], (idx, epoch))
            assert np.array_equal(out[idx], twin.on_device(torch.from_numpy(x[idx]), (idx, epoch)).numpy())
        flipped = np.array([np.array_equal(out[j], mirrored[j]) and not np.array_equal(out[j], x[j])
                            for j in range(n)])
        seen.append(flipped)
    symmetric = np.array([np.array_equal(x[j], mirrored[j]) for j in range(n)])
    assert not symmetric.any()
    assert 0.4 < seen[0].mean() < 0.6
    assert np.array_equal(seen[1], ~seen[0]) and np.array_equal(seen[2], seen[0])
    with pytest.raises(ValueError, match="indices and epoch"):
        aug(x[:8])


def test_whole_numbers_written_as_floats_are_integers_in_every_spec_that_holds_them():
    """The validator took padding 4.0 and hole counts [1.0, 2.0]; NumPy's padding then refused the float
    mid-training. An integer parameter written as a whole float is read as the integer, as every spec's
    integer fields are, through AugSpec and RunSpec alike; the batch path runs on it."""
    from playground.specs.config import RunSpec
    from playground.specs.presets import preset_net

    d = json.loads(AugSpec([make_transform("RandomCrop", 1.0), make_transform("CoarseDropout", 1.0)]).to_json())
    d["transforms"][0]["params"]["padding"] = 4.0
    d["transforms"][1]["params"]["holes"] = [1.0, 2.0]
    spec = AugSpec.from_dict(d)
    assert spec.transforms[0].params["padding"] == 4 and type(spec.transforms[0].params["padding"]) is int
    assert [type(v) for v in spec.transforms[1].params["holes"]] == [int, int]
    run = RunSpec.from_json(json.dumps({**json.loads(RunSpec(preset_net("fast")).to_json()), "aug": d}))
    assert type(run.aug.transforms[0].params["padding"]) is int
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    assert BatchAugment(spec, MEAN, seed=1)(x).shape == x.shape
