"""explain (Python backend): logit + CLS attention + slot identities -> the verdict (mintime.explain).

Inputs/outputs: mintime.contract.EXPLAIN. RESULT_JSON is the same object as `mintime predict --json` (without
the "video" key: the server never sees the file name); FAKE_PROBABILITY is NaN when no face was found.
"""

from mintime.serving.triton_models import ExplainModel


class TritonPythonModel(ExplainModel):
    pass
