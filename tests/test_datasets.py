import pandas as pd
import pytest
from conftest import shared_data

import polyhead


def test_abalone_shape_and_columns():
    df = polyhead.datasets.load_abalone()
    assert df.shape == (4177, 9)
    assert list(df.columns) == ["sex", "length", "diameter", "height", "whole_weight",
                                "shucked_weight", "viscera_weight", "shell_weight", "rings"]
    assert set(df["sex"].cat.categories) == {"M", "F", "I"}
    assert df["rings"].between(1, 29).all() and df.notna().all(axis=None)
    assert "Nash" in polyhead.datasets.ABALONE_CITATION


@pytest.mark.realdata
def test_abalone_matches_the_shared_copy():
    path = shared_data("abalone") / "abalone.csv"
    shared = pd.read_csv(path, header=None)
    bundled = polyhead.datasets.load_abalone()
    assert (bundled["rings"].to_numpy() == shared[8].to_numpy()).all()
    assert (bundled["sex"].astype(str).to_numpy() == shared[0].to_numpy()).all()
