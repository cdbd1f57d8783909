"""What the Augment page shows is what it does (issue 32 E): each choice is named as it exports, every drawn
parameter says what its numbers are, the Seed field reproduces the samples shown, and at 1280x800 the
thumbnails are large and their parameters cover none of them."""
import base64
import json
import re
import zlib

import numpy as np
import pytest

from playground.specs import augment, links
from playground.specs.augment import REGISTRY, AugSpec, build_pipeline, describe_replay, make_transform, to_python

from .browser import chromium, needs_chromium, settle, streamlit_server
from .test_app import app_env, open_page  # noqa: F401  (app_env is a fixture)

MEAN = (0.49, 0.48, 0.45)
FILL = tuple(int(round(m * 255)) for m in MEAN)
NUMPY_PAD = {"cv2.BORDER_REFLECT_101": dict(mode="reflect"), "cv2.BORDER_REPLICATE": dict(mode="edge"),
             "cv2.BORDER_CONSTANT": dict(mode="constant")}  # numpy's reflect does not repeat the edge pixel


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_every_choice_is_shown_with_its_stored_name_first():
    choices = [prm for d in REGISTRY.values() for prm in d.params if prm.kind == "choice"]
    assert choices
    for prm in choices:
        assert [prm.label(c).split(" (")[0] for c in prm.choices] == list(prm.choices), prm.name
        assert all(prm.label(c) != c for c in prm.choices), prm.name  # each says what it exports


@pytest.mark.parametrize("choice", augment.BORDER.choices)
def test_each_border_label_names_the_constant_the_code_exports_and_pads_as_it_says(choice):
    label = augment.BORDER.label(choice)
    constant = re.search(r"cv2\.BORDER_\w+", label)[0]
    for name in ("Affine", "RandomCrop"):
        spec = AugSpec([make_transform(name, p=1.0, border=choice)])
        assert f"border_mode={constant}" in to_python(spec, MEAN)
        assert json.loads(spec.to_json())["transforms"][0]["params"]["border"] == label.split(" ")[0]
    img = image()
    [pad] = augment.instantiate(augment.albumentations_calls(
        AugSpec([make_transform("RandomCrop", p=1.0, padding=4, border=choice)]), MEAN)[0]).transforms[:1]
    padded = pad(image=img)["image"]
    want = np.stack([np.pad(img[..., c], 4, **NUMPY_PAD[constant], **({"constant_values": FILL[c]}
                                                                      if constant.endswith("CONSTANT") else {}))
                     for c in range(3)], -1)
    assert np.array_equal(padded, want), label


def test_the_old_name_reflect_still_loads_from_a_spec_and_a_share_link():
    old = {"transforms": [{"name": "Affine", "p": 0.5,
                           "params": {"shift": 0.1, "scale": 0.1, "rotate": 15, "border": "reflect"}}]}
    link = base64.urlsafe_b64encode(zlib.compress(json.dumps(old).encode())).decode()
    for spec in (AugSpec.from_dict(old), links.decode(AugSpec, link)):
        assert spec.transforms[0].params["border"] == "reflect_101"
        assert "cv2.BORDER_REFLECT_101" in to_python(spec, MEAN)


def test_each_fill_label_says_the_value_the_code_exports():
    fill = next(prm for prm in REGISTRY["CoarseDropout"].params if prm.name == "fill")
    for choice in fill.choices:
        label, code = fill.label(choice), to_python(AugSpec([make_transform("CoarseDropout", fill=choice)]), MEAN)
        if choice == "mean":
            assert "dataset mean" in label and f"fill={FILL}" in code
        else:
            assert f"fill={re.search(r'fill=([^:]+):', label)[1]}" in code, label


HOLE = re.compile(r"hole \d+: x (\d+)–(\d+), y (\d+)–(\d+) \((\d+)×(\d+) px\)")


def test_each_hole_is_labelled_with_the_pixels_it_covers():
    spec = AugSpec([make_transform("CoarseDropout", p=1.0, holes=[1, 3], size=[4, 12], fill="zero")])
    pipe = build_pipeline(spec, MEAN, seed=0, replay=True)
    white = np.full((32, 32, 3), 255, np.uint8)
    for _ in range(20):
        out = pipe(image=white)
        [line] = describe_replay(out["replay"])
        holes = HOLE.findall(line)
        assert holes and line.count("hole ") == len(holes), line
        covered = np.zeros((32, 32), bool)
        for x1, x2, y1, y2, w, h in (map(int, hole) for hole in holes):
            assert (w, h) == (x2 - x1 + 1, y2 - y1 + 1), line
            covered[y1:y2 + 1, x1:x2 + 1] = True
        assert np.array_equal(out["image"][..., 0] == 0, covered), line


def test_the_crop_says_its_window_and_the_shift_that_moved_the_pixels():
    spec = AugSpec([make_transform("RandomCrop", p=1.0, padding=4, border="constant")])
    pipe = build_pipeline(spec, MEAN, seed=0, replay=True)
    img, shifts = image(2), set()
    for _ in range(20):
        out = pipe(image=img)
        pad, crop = describe_replay(out["replay"])
        assert pad == "Sequential > PadIfNeeded: pad=4 px on each side"
        m = re.fullmatch(r"Sequential > RandomCrop: window x (\d+)–\d+, y (\d+)–\d+ \(32×32 px\) of the 40×40 "
                         r"padded image, shift=\(([+-]\d+), ([+-]\d+)\) px", crop)
        assert m, crop
        tx, ty = int(m[3]), int(m[4])
        assert (tx, ty) == (4 - int(m[1]), 4 - int(m[2]))
        moved = out["image"][max(0, ty):32 + min(0, ty), max(0, tx):32 + min(0, tx)]
        assert np.array_equal(moved, img[max(0, -ty):32 + min(0, -ty), max(0, -tx):32 + min(0, -tx)]), crop
        shifts.add((tx, ty))
    assert len(shifts) > 5


def test_no_drawn_parameter_is_a_bare_tuple():
    spec = AugSpec([make_transform(name, p=1.0) for name in REGISTRY])
    pipe = build_pipeline(spec, MEAN, seed=3, replay=True)
    for seed in range(5):
        for line in describe_replay(pipe(image=image(seed))["replay"]):
            assert not re.search(r"\[|alpha|beta", line), line
            assert all(t.endswith(" px") for t in re.findall(r"=\([^)]*\)[^,]*", line)), line


def test_the_same_seed_draws_the_same_samples():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8), np.arange(60) % 10
    spec = AugSpec([make_transform(name, p=0.5) for name in REGISTRY])

    def drawn(seed, label=None):
        return [(i, out["image"].tobytes()) for i, out in augment.draw_samples(x, y, spec, MEAN, 8, seed, label)]

    assert drawn(17) == drawn(17) and drawn(17) != drawn(18)
    assert drawn(5, 3) == drawn(5, 3) and {i % 10 for i, _ in drawn(5, 3)} == {3}


def shown_images(at) -> list[str]:
    """The preview's pictures (a media URL is a hash of the pixels)."""
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def test_resample_writes_its_seed_into_the_seed_field_and_that_seed_reproduces_the_samples(app_env):
    at = open_page("augment")
    assert at.number_input(key="sample_seed").value == 0
    first = shown_images(at)
    at.button(key="resample").click().run()
    seed = at.number_input(key="sample_seed").value
    resampled = shown_images(at)
    assert not at.exception and seed != 0 and resampled != first
    at.number_input(key="sample_seed").set_value(0).run()
    assert shown_images(at) == first
    at.number_input(key="sample_seed").set_value(seed).run()
    assert shown_images(at) == resampled and not at.exception


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@needs_chromium
def test_at_1280x800_resample_shows_its_seed_and_the_parameters_cover_no_thumbnail(browser, image_folder,
                                                                                  tmp_path_factory):
    expect = pytest.importorskip("playwright.sync_api").expect
    runs = tmp_path_factory.mktemp("augment-truth-runs")
    log = runs.parent / "augment-truth-server.log"
    with streamlit_server(image_folder, runs, log=log) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/augment")
        thumbs = page.get_by_test_id("stMain").get_by_test_id("stImage")
        expect(thumbs).to_have_count(12, timeout=60_000)
        settle(page)
        page.get_by_role("button", name="Resample").click()
        settle(page)
        expect(page.get_by_label("Seed")).to_have_value(re.compile(r"^[1-9]\d*$"))
        boxes = [im.locator("img").bounding_box() for im in thumbs.all()]
        for im, box in zip(thumbs.all(), boxes):
            assert box["width"] * 32 / 66 >= 80, box  # an original and an augmented image and a gap of 1/16
            assert im.locator("img").evaluate("e => getComputedStyle(e).imageRendering") == "pixelated"
        page.get_by_text("Parameters drawn for each sample").click()
        settle(page)
        opened = page.get_by_test_id("stExpanderDetails").filter(has_text="row 1, left")
        expect(opened).to_contain_text("CoarseDropout")
        params = opened.bounding_box()
        boxes = [im.locator("img").bounding_box() for im in thumbs.all()]  # after the expander opened
        for box in boxes:
            apart = (params["x"] >= box["x"] + box["width"] or box["x"] >= params["x"] + params["width"]
                     or params["y"] >= box["y"] + box["height"] or box["y"] >= params["y"] + params["height"])
            assert apart, (params, box)
        assert page.get_by_test_id("stException").count() == 0
        page.close()
    assert [ln for ln in log.read_text(errors="replace").splitlines() if re.search(r"warn|error", ln, re.I)] == []
