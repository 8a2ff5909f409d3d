"""End-to-end in-process prediction on the shared footage, with the authors' checkpoint format.

The MINTIME-XC weights are rebuilt from the parity key manifests (deterministic tensors, see
../shared/fixtures/parity/README.md) and saved the way the original saved them (``module.`` prefix), so this
exercises exactly the loading path a user with the real files takes. The verdicts of such weights mean
nothing; the tests check the pipeline's structure and consistency, not accuracy.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mintime import contract  # noqa: E402
from mintime.cli import main as cli_main  # noqa: E402
from mintime.config import PipelineConfig  # noqa: E402
from mintime.engines import OnnxEngines, TorchEngines  # noqa: E402
from mintime.explain import explain_video, render_result  # noqa: E402
from mintime.faces.stage import FaceStage, FaceStageResult  # noqa: E402
from mintime.networks import Networks, load_networks  # noqa: E402
from mintime.pipeline import Predictor  # noqa: E402

pytestmark = [pytest.mark.needs_data]


def finalize(faces: FaceStageResult, logit: float, attention: np.ndarray) -> dict:
    """The result JSON of one analysed video (what ``Predictor.predict`` renders)."""
    return render_result(faces.to_json(), explain_video(logit, attention, faces.tensors.slot_identity))


@pytest.fixture(scope="module")
def original_files(tmp_path_factory, parity_dir: Path) -> tuple[Path, Path]:
    from tests.helpers.synthetic import rebuild_from_manifest

    out = tmp_path_factory.mktemp("authors")
    model = out / "MINTIME_XC_Model_checkpoint30"
    extractor = out / "MINTIME_XC_Extractor_checkpoint30"
    for keys, path in (("timesformer_xc_keys.json", model), ("xception_keys.json", extractor)):
        sd = rebuild_from_manifest(parity_dir / keys)
        torch.save(OrderedDict((f"module.{k}", v) for k, v in sd.items()), path)
    return model, extractor


@pytest.fixture(scope="module")
def xc_models(original_files):
    model, extractor = original_files
    return load_networks(model_weights=model, extractor_weights=extractor, variant="xc")


@pytest.fixture(scope="module")
def analyzer() -> FaceStage:
    return FaceStage(PipelineConfig(num_frames=16))


@pytest.fixture(scope="module")
def two_people(analyzer, data_dir):
    from mintime.video import decode_sampled

    clip = decode_sampled(data_dir / "videos" / "two_people_one_fake_720p.mp4", 16)
    return clip, analyzer(clip)


def test_two_people_gives_two_main_identities(two_people):
    clip, analysis = two_people
    assert analysis.status == contract.STATUS_OK
    info = analysis.to_json()
    kept = [i for i in info["identities"] if i["kept"]]
    assert len(kept) == 2
    for ident in kept:
        frames = {f["frame"] for f in ident["faces"]}
        assert len(frames) >= 10, "each person should be found on most of the 16 sampled frames"
        assert len(ident["slots"]) == 8
    # the two people stand side by side: their boxes do not overlap horizontally
    xs = [np.median([(f["box"][0] + f["box"][2]) / 2 for f in i["faces"]]) for i in kept]
    assert abs(xs[0] - xs[1]) > clip.width * 0.15


def test_slot_arrays_follow_the_contract(two_people):
    _, analysis = two_people
    arrays = analysis.tensors.as_inputs()
    for spec in contract.SLOT_TENSORS:
        a = arrays[spec.name]
        assert a.dtype == np.dtype(spec.numpy_dtype), spec.name
        assert len(a.shape) == len(spec.dims), spec.name
        for got, want in zip(a.shape, spec.dims, strict=True):
            assert want == -1 or got == want, spec.name
    faces = arrays["face_slots_faces"]
    mask = arrays["face_slots_mask"]
    assert faces[mask].std() > 10  # real pixels in real slots
    assert (faces[~mask] == 0).all()  # dummies are black


def test_face_stage_result_is_typed_and_consistent(two_people):
    """Each identity face points at its own detection (frame, index, box) and its slots hold its pixels."""
    clip, faces = two_people
    assert faces.ok and len(faces.detections) == len(clip.indices) == len(faces.clip.sampled_frames)
    for ident in faces.identities:
        for f in ident.faces:
            det = faces.detections[f.position]
            np.testing.assert_array_equal(det.boxes[f.index], f.box)
            assert f.frame == int(clip.indices[f.position]) and min(f.crop_size) > 0  # the device path keeps
            x0, y0, x1, y1 = f.crop_box  # crop boxes, not pixels
            assert 0 <= x0 < x1 <= clip.width and 0 <= y0 < y1 <= clip.height
    kept = faces.kept
    assert [i.rank for i in kept] == [0, 1]
    owner = faces.tensors.slot_identity
    for ident in kept:
        assert set(np.flatnonzero(owner == ident.rank)) <= set(ident.slots)
    # the JSON is a rendering of the object
    info = faces.to_json()
    assert [i["id"] for i in info["identities"]] == [i.id for i in faces.identities]
    assert [len(i["slots"]) for i in info["identities"]] == [len(i.slots) for i in faces.identities]


def test_predict_with_authors_format_weights(xc_models, two_people):
    _, analysis = two_people
    predictor = Predictor(PipelineConfig(num_frames=16), TorchEngines(xc_models.backbone, xc_models.head))
    logit, attn = predictor.run_networks(analysis)
    assert attn.shape == (2, 8, contract.NUM_TOKENS)
    result = finalize(analysis, logit, attn)
    assert 0.0 <= result["fake_probability"] <= 1.0
    assert result["label"] in ("fake", "pristine")
    kept = [i for i in result["identities"] if i["kept"]]
    assert pytest.approx(sum(i["attention"] for i in kept), abs=1e-5) == 1.0
    assert all(0.0 <= i["fake_score"] <= 1.0 for i in kept)
    json.dumps(result)  # serialisable


def test_cli_predict_json_on_clips(original_files, data_dir, capsys):
    model, extractor = original_files
    videos = [
        data_dir / "videos" / "two_people_one_fake_720p.mp4",
        data_dir / "videos" / "dfdc_portrait_fake_720x1280.mp4",
    ]
    code = cli_main(
        [
            "predict",
            "--json",
            "--num-frames",
            "8",
            "--model-weights",
            str(model),
            "--extractor-weights",
            str(extractor),
            "--variant",
            "xc",
            *map(str, videos),
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert len(out) == 2
    results = [json.loads(line) for line in out]
    portrait = results[1]
    assert portrait["video"].endswith("dfdc_portrait_fake_720x1280.mp4")
    assert portrait["status"] == "ok"
    assert portrait["identities"][0]["kept"]
    assert 0.0 <= portrait["fake_probability"] <= 1.0
    # the portrait clip is decoded upright: taller than wide
    assert portrait["clip"]["height"] > portrait["clip"]["width"]


def test_missing_weights_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_networks(checkpoint=tmp_path / "nope.pt")


@pytest.fixture(scope="module")
def analyses(analyzer, data_dir):
    from mintime.video import decode_sampled

    out = {}
    for name in (
        "street_crowd_1080p",
        "dfdc_portrait_fake_720x1280",
        "ffpp_634_real_720p",
        "ffpp_634_660_faceswap_fake_720p",
    ):
        clip = decode_sampled(data_dir / "videos" / f"{name}.mp4", 16)
        out[name] = (clip, analyzer(clip))
    return out


def test_crowd_gives_several_identities(analyses):
    _, analysis = analyses["street_crowd_1080p"]
    info = analysis.to_json()
    assert len(info["identities"]) >= 3
    kept = [i for i in info["identities"] if i["kept"]]
    assert len(kept) == 2  # max_identities

    # kept identities are the largest faces
    def side(i):
        return np.mean([f["box"][2] - f["box"][0] for f in i["faces"]])

    assert min(side(i) for i in kept) >= max(side(i) for i in info["identities"] if not i["kept"]) * 0.999


def test_portrait_clip_one_upright_identity(analyses):
    clip, analysis = analyses["dfdc_portrait_fake_720x1280"]
    assert clip.height > clip.width
    info = analysis.to_json()
    kept = [i for i in info["identities"] if i["kept"]]
    assert len(kept) == 1
    assert len(kept[0]["slots"]) == 16
    assert kept[0]["num_faces"] >= 6


@pytest.mark.parametrize("name", ["ffpp_634_real_720p", "ffpp_634_660_faceswap_fake_720p"])
def test_ffpp_pair_one_identity_same_place(analyses, name):
    _, analysis = analyses[name]
    kept = [i for i in analysis.to_json()["identities"] if i["kept"]]
    assert len(kept) == 1 and kept[0]["num_faces"] >= 12
    # the real/fake pair is the same footage: the face sits in the same place in both
    other = "ffpp_634_660_faceswap_fake_720p" if name.endswith("real_720p") else "ffpp_634_real_720p"
    kept_other = [i for i in analyses[other][1].to_json()["identities"] if i["kept"]]
    c1 = np.median([f["box"] for f in kept[0]["faces"]], axis=0)
    c2 = np.median([f["box"] for f in kept_other[0]["faces"]], axis=0)
    assert np.abs(c1 - c2).max() < 30


def test_no_face_video_gives_no_face_result(tmp_path, xc_models, capsys, original_files):
    from tests.helpers.media import make_clip

    rng = np.random.default_rng(0)
    path = tmp_path / "noise.mp4"
    make_clip(
        path, frames=12, size=(160, 120), fps=10, draw=lambda i: rng.integers(0, 255, (120, 160, 3), np.uint8)
    )
    predictor = Predictor(PipelineConfig(num_frames=8), TorchEngines(xc_models.backbone, xc_models.head))
    result = predictor.predict(path)
    assert result["status"] == contract.STATUS_NO_FACE
    assert result["fake_probability"] is None and result["label"] == "no_face"
    model, extractor = original_files
    code = cli_main(
        [
            "predict",
            "--model-weights",
            str(model),
            "--extractor-weights",
            str(extractor),
            "--variant",
            "xc",
            str(path),
        ]
    )
    assert code == 0
    assert "no face found" in capsys.readouterr().out


def test_cli_reports_bad_files_and_continues(tmp_path, original_files, data_dir, capsys):
    model, extractor = original_files
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 10)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    code = cli_main(
        [
            "predict",
            "--json",
            "--num-frames",
            "4",
            "--model-weights",
            str(model),
            "--extractor-weights",
            str(extractor),
            "--variant",
            "xc",
            str(bad),
            str(empty),
        ]
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert code == 1
    assert [r["status"] for r in lines] == ["error", "error"]
    assert "not a video" in lines[0]["error"]
    assert "empty" in lines[1]["error"]


def test_annotated_video_has_every_frame(tmp_path, xc_models, two_people, data_dir):
    import av

    from mintime.annotate import write_annotated_video

    _, analysis = two_people
    predictor = Predictor(PipelineConfig(num_frames=16), TorchEngines(xc_models.backbone, xc_models.head))
    logit, attn = predictor.run_networks(analysis)
    result = finalize(analysis, logit, attn)
    src = data_dir / "videos" / "two_people_one_fake_720p.mp4"
    out = write_annotated_video(src, result, tmp_path / "annotated.mp4")
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 113
    assert frames[0].shape == (720, 1280, 3)
    assert not list(tmp_path.glob(".*.part"))
    # boxes are drawn: frame 50 differs from the source frame around the first identity's box
    with av.open(str(src)) as c:
        src_frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i == 50]
    kept = [i for i in result["identities"] if i["kept"]][0]
    x1, y1, x2, y2 = (int(v) for v in kept["faces"][len(kept["faces"]) // 2]["box"])
    diff = np.abs(frames[50].astype(int) - src_frames[0].astype(int))
    assert diff[max(0, y1 - 40) : y2 + 40, max(0, x1 - 40) : x2 + 40].max() > 100


def test_same_slots_through_torch_and_onnx(tmp_path, two_people):
    """The exported ONNX graphs give the in-process PyTorch result on the same slots (issue #3)."""
    pytest.importorskip("onnxruntime")
    from export.modules import dynamic_batch_axes, example_inputs, export_module, io_names
    from export.onnx import export_onnx
    from mintime.models import create_temporal
    from mintime.networks import build_backbone

    torch.manual_seed(0)
    loaded = Networks(
        build_backbone("efficientnet_lite0", pretrained=True),
        create_temporal("tiny", channels=1280).eval(),
        "mintime",
    )
    paths = {}
    for which in ("backbone", "temporal"):
        inputs, outputs = io_names(which)
        paths[which] = tmp_path / f"{which}.onnx"
        module = export_module(which, loaded)
        export_onnx(
            module,
            paths[which],
            example_inputs=example_inputs(which, 1, channels=1280),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_batch_axes(which),
            check=False,
        )
    _, analysis = two_people
    torch_result = Predictor(PipelineConfig(), TorchEngines(loaded.backbone, loaded.temporal)).run_networks(
        analysis
    )
    onnx_result = Predictor(PipelineConfig(), OnnxEngines(paths["backbone"], paths["temporal"])).run_networks(
        analysis
    )
    assert onnx_result[0] == pytest.approx(torch_result[0], abs=1e-4)
    np.testing.assert_allclose(onnx_result[1], torch_result[1], atol=1e-5)
    a = finalize(analysis, *torch_result)
    b = finalize(analysis, *onnx_result)
    assert abs(a["fake_probability"] - b["fake_probability"]) < 1e-4
    assert [i["slots"] for i in a["identities"]] == [i["slots"] for i in b["identities"]]


def test_face_stage_on_torch_frames_equals_numpy(analyzer, two_people):
    """Frames handed over as a torch tensor (DLPack from the decoder) give the same result as numpy frames."""
    import dataclasses

    clip, faces = two_people
    on_torch = analyzer(dataclasses.replace(clip, frames=torch.from_numpy(clip.frames.copy())))
    assert on_torch.to_json() == faces.to_json()
    for name, a in faces.tensors.as_inputs().items():
        np.testing.assert_array_equal(np.asarray(on_torch.tensors.as_inputs()[name]), a)
