import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from playground.specs.augment import (REGISTRY, AugSpec, affine_shift, build_pipeline, default_aug, describe_replay,
                                      make_transform, seed_pipeline, to_python)
from playground.specs.serde import SpecError

MEAN = (0.49, 0.48, 0.45)


def full_spec() -> AugSpec:
    return AugSpec([make_transform(name, p=1.0) for name in REGISTRY])


def test_registry_covers_required_transforms_with_schemas():
    required = {"HorizontalFlip", "Affine", "CoarseDropout", "RandomCrop", "ToGray", "ColorJitter",
                "RandomBrightnessContrast"}
    assert required <= set(REGISTRY)
    for d in REGISTRY.values():
        for prm in d.params:
            assert prm.help and prm.check(prm.default) is None


def test_default_is_the_seed_pipeline():
    spec = default_aug()
    assert [t.name for t in spec.transforms] == ["HorizontalFlip", "Affine", "CoarseDropout"]
    drop = spec.transforms[2].params
    assert drop["holes"] == [1, 1] and drop["size"] == [16, 16] and drop["fill"] == "mean"


def test_json_round_trip_and_code_export_rebuild_the_same_pipeline():
    spec = full_spec()
    assert AugSpec.from_json(spec.to_json()) == spec
    ns: dict = {}
    exec(to_python(spec, MEAN), ns)
    exported = ns["train_transform"]
    seed_pipeline(exported, 7)
    built = build_pipeline(spec, MEAN, seed=7)
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for _ in range(5):
        assert np.array_equal(built(image=img)["image"], exported(image=img)["image"])


def test_coarse_dropout_fills_with_dataset_mean():
    spec = AugSpec([make_transform("CoarseDropout", p=1.0, size=[32, 32])])
    out = build_pipeline(spec, MEAN, seed=0)(image=np.zeros((32, 32, 3), np.uint8))["image"]
    assert tuple(out[16, 16]) == tuple(int(round(m * 255)) for m in MEAN)


def test_same_seed_same_images_and_replay_lists_draws():
    spec = full_spec()
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a = build_pipeline(spec, MEAN, seed=3)(image=img)["image"]
    b = build_pipeline(spec, MEAN, seed=3)(image=img)["image"]
    assert np.array_equal(a, b) and a.shape == (32, 32, 3) and a.dtype == np.uint8
    out = build_pipeline(spec, MEAN, seed=3, replay=True)(image=img)
    lines = describe_replay(out["replay"])
    assert any(line.startswith("Affine: rotate=") for line in lines)


def test_invalid_aug_specs_are_explained():
    with pytest.raises(SpecError, match="unknown transform"):
        AugSpec.from_dict({"transforms": [{"name": "Blur", "p": 0.5, "params": {}}]})
    with pytest.raises(SpecError, match="rotate: 500 is outside"):
        AugSpec.from_dict({"transforms": [{"name": "Affine", "p": 0.5,
                                           "params": {"shift": 0.1, "scale": 0.1, "rotate": 500, "border": "reflect"}}]})
    with pytest.raises(SpecError, match="newer than this playground"):
        AugSpec.from_dict({"transforms": [], "version": 5})


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "p", "params", "extra"]),
                       st.none() | st.integers() | st.text(max_size=4) | st.floats() |
                       st.dictionaries(st.text(max_size=6), st.integers() | st.lists(st.integers(), max_size=3)),
                       max_size=4))
def test_junk_transforms_raise_spec_errors(item):
    try:
        spec = AugSpec.from_dict({"transforms": [item]})
    except SpecError as e:
        assert e.problems
        return
    build_pipeline(spec, MEAN, seed=0)(image=np.zeros((32, 32, 3), np.uint8))


def test_seeded_pipeline_gives_each_transform_its_own_random_stream():
    """Albumentations seeds every transform of Compose(seed=...) alike; without a fix a
    ToGray(p=0.3) before a flip would only ever hit flipped images."""
    spec = AugSpec([make_transform("ToGray", 0.3), make_transform("HorizontalFlip", 0.5)])
    pipe = build_pipeline(spec, (0.5, 0.5, 0.5), seed=0)
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :16, 0] = 255  # red on the left: gray and flip are both visible
    outs = [pipe(image=img)["image"] for _ in range(200)]
    gray = np.array([(o[..., 0] == o[..., 1]).all() for o in outs])
    flipped = np.array([o[:, 24:].sum() > o[:, :8].sum() for o in outs])
    assert (gray & ~flipped).any() and (gray & flipped).any()


def test_drawn_parameters_show_the_affine_shift_that_moved_the_pixels():
    """Albumentations 2 records an Affine draw as a matrix, with no translate entry; the description
    decomposes it. With no rotation and no zoom every pixel moves by exactly the shift it names."""
    spec = AugSpec([make_transform("Affine", p=1.0, shift=0.25, scale=0.0, rotate=0, border="constant")])
    pipe = build_pipeline(spec, MEAN, seed=0, replay=True)
    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    shifts = set()
    for _ in range(20):
        out = pipe(image=img)
        [line] = describe_replay(out["replay"])
        m = re.fullmatch(r"Affine: rotate=0, scale=1, shift=\(([+-]\d+), ([+-]\d+)\) px", line)
        assert m, line
        tx, ty = int(m[1]), int(m[2])
        assert abs(tx) <= 8 and abs(ty) <= 8
        moved = out["image"][max(0, ty):32 + min(0, ty), max(0, tx):32 + min(0, tx)]
        assert np.array_equal(moved, img[max(0, -ty):32 + min(0, -ty), max(0, -tx):32 + min(0, -tx)]), (tx, ty)
        shifts.add((tx, ty))
    assert len(shifts) > 5


def test_affine_shift_is_taken_out_of_the_rotation_and_zoom_about_the_centre():
    functional = pytest.importorskip("albumentations.augmentations.geometric.functional")
    m = functional.create_affine_transformation_matrix({"x": 3, "y": -5}, {"x": 0.0, "y": 0.0}, {"x": 1.2, "y": 1.2},
                                                       33.0, functional.center((32, 40)))
    assert affine_shift({"matrix": m, "shape": (32, 40, 3)}) == pytest.approx((3, -5))
    assert affine_shift({"rotate": 3.0}) is None
    spec = AugSpec([make_transform("Affine", p=1.0, shift=0.25, scale=0.3, rotate=45)])
    pipe = build_pipeline(spec, MEAN, seed=1, replay=True)
    img = np.zeros((32, 32, 3), np.uint8)
    for _ in range(20):
        [record] = pipe(image=img)["replay"]["transforms"]
        tx, ty = affine_shift(record["params"])  # Albumentations draws whole pixels
        assert abs(tx - round(tx)) < 1e-6 and abs(ty - round(ty)) < 1e-6 and max(abs(tx), abs(ty)) <= 8
        [line] = describe_replay({"transforms": [record]})
        assert line.endswith(f"shift=({round(tx):+d}, {round(ty):+d}) px"), line
