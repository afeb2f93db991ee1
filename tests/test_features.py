import numpy as np
import pandas as pd
import pytest

from polyhead.exceptions import PolyheadError
from polyhead.features import FeatureEncoder


def test_numeric_standardised_categorical_one_hot():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "s": pd.Categorical(["M", "F", "I"])})
    enc = FeatureEncoder().fit(X)
    out = enc.transform(X)
    np.testing.assert_allclose(out[:, 0], (X.a - 2) / X.a.std(ddof=0), rtol=1e-6)
    assert enc.feature_names_out_ == ["a", "s=F", "s=I", "s=M"]  # category order kept
    assert out[:, 1:].sum(axis=1).tolist() == [1, 1, 1]


def test_unseen_category_uses_the_reserved_zero_slot():
    enc = FeatureEncoder().fit(pd.DataFrame({"s": ["x", "y"]}))
    assert enc.transform(pd.DataFrame({"s": ["z"]})).tolist() == [[0.0, 0.0]]


def test_missing_numeric_imputed_with_indicator():
    enc = FeatureEncoder().fit(pd.DataFrame({"a": [1.0, None, 3.0], "b": [1.0, 2.0, 3.0]}))
    assert enc.feature_names_out_ == ["a", "a__missing", "b"]
    out = enc.transform(pd.DataFrame({"a": [None], "b": [None]}))
    assert out.tolist() == [[0.0, 1.0, 0.0]]   # b had no NaN at fit: imputed, no indicator


def test_missing_category_gets_its_own_slot():
    enc = FeatureEncoder().fit(pd.DataFrame({"s": ["x", None, "y"]}))
    assert enc.feature_names_out_ == ["s=x", "s=y", "s=<missing>"]
    assert enc.transform(pd.DataFrame({"s": [None]})).tolist() == [[0, 0, 1]]


def test_bool_and_object_numbers():
    X = pd.DataFrame({"flag": [True, False, True], "n": pd.Series([1, 2, 3], dtype=object)})
    enc = FeatureEncoder().fit(X)
    assert enc.feature_names_out_ == ["flag=False", "flag=True", "n"]


def test_errors_name_column_row_and_value():
    enc = FeatureEncoder().fit(pd.DataFrame({"a": [1.0, 2.0]}))
    with pytest.raises(PolyheadError, match=r"'a' has an infinite value \(inf\) at row 'r2'"):
        enc.transform(pd.DataFrame({"a": [1.0, np.inf]}, index=["r1", "r2"]))
    with pytest.raises(PolyheadError, match="'a' has 1 non-numeric value.*'oops' at row 1"):
        enc.transform(pd.DataFrame({"a": [1.0, "oops"]}))
    with pytest.raises(PolyheadError, match="missing feature column 'a'"):
        enc.transform(pd.DataFrame({"b": [1.0]}))
    with pytest.raises(PolyheadError, match="dtype datetime64"):
        FeatureEncoder().fit(pd.DataFrame({"d": pd.to_datetime(["2020-01-01"])}))


def test_round_trip_and_validation():
    X = pd.DataFrame({"a": [1.0, None], "s": ["x", "y"]})
    enc = FeatureEncoder().fit(X)
    again = FeatureEncoder.from_dict(enc.to_dict())
    np.testing.assert_array_equal(again.transform(X), enc.transform(X))
    with pytest.raises(PolyheadError, match="invalid column entry"):
        FeatureEncoder.from_dict({"columns": [{"type": "numeric"}]})
