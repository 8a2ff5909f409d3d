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
from mintime.pipeline import (  # noqa: E402
    FaceAnalyzer,
    PipelineConfig,
    Predictor,
    TorchEngines,
    finalize,
    load_models,
)

pytestmark = [pytest.mark.needs_data]


@pytest.fixture(scope="module")
def original_files(tmp_path_factory, parity_dir: Path) -> tuple[Path, Path]:
    from mintime.testing import rebuild_from_manifest

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
    return load_models(model_weights=model, extractor_weights=extractor, variant="xc")


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(PipelineConfig(num_frames=16))


@pytest.fixture(scope="module")
def two_people(analyzer, data_dir):
    from mintime.video import decode_sampled

    clip = decode_sampled(data_dir / "videos" / "two_people_one_fake_720p.mp4", 16)
    return clip, analyzer.analyze(clip)


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
    arrays = analysis.arrays()
    for spec in contract.FACE_PIPELINE.outputs:
        if spec.dtype == "TYPE_STRING":
            continue
        a = arrays[spec.name]
        assert a.dtype == np.dtype(spec.numpy_dtype), spec.name
        assert len(a.shape) == len(spec.dims), spec.name
        for got, want in zip(a.shape, spec.dims):
            assert want == -1 or got == want, spec.name
    faces = arrays["face_slots_faces"]
    mask = arrays["face_slots_mask"]
    assert faces[mask].std() > 10  # real pixels in real slots
    assert (faces[~mask] == 0).all()  # dummies are black


def test_predict_with_authors_format_weights(xc_models, two_people):
    _, analysis = two_people
    predictor = Predictor(PipelineConfig(num_frames=16), TorchEngines(xc_models.backbone, xc_models.temporal))
    logit, attn = predictor.run_networks(analysis)
    assert attn.shape == (2, 8, contract.NUM_TOKENS)
    result = finalize(analysis.to_json(), logit, attn)
    assert 0.0 <= result["fake_probability"] <= 1.0
    assert result["label"] in ("fake", "pristine")
    kept = [i for i in result["identities"] if i["kept"]]
    assert pytest.approx(sum(i["attention"] for i in kept), abs=1e-5) == 1.0
    assert all(0.0 <= i["fake_score"] <= 1.0 for i in kept)
    json.dumps(result)  # serialisable


def test_cli_predict_json_on_clips(original_files, data_dir, capsys):
    model, extractor = original_files
    videos = [data_dir / "videos" / "two_people_one_fake_720p.mp4", data_dir / "videos" / "dfdc_portrait_fake_720x1280.mp4"]
    code = cli_main(
        ["predict", "--json", "--num-frames", "8", "--model-weights", str(model), "--extractor-weights", str(extractor), "--variant", "xc", *map(str, videos)]
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
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_models(checkpoint=tmp_path / "nope.pt")
