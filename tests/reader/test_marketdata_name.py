"""``ats_pipelines.marketdata`` stays the analysts' import: it is the reader's API, not a copy."""

import ats_pipelines.marketdata as md
from ats_pipelines import reader
from ats_pipelines.reader import schemas


def test_marketdata_re_exports_the_reader() -> None:
    assert set(reader.__all__) <= set(md.__all__)
    for name in reader.__all__:
        assert getattr(md, name) is getattr(reader, name), name
    assert md.schemas is schemas
