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


@pytest.mark.parametrize("numeric", ["clipped", "robust", "quantile"])
def test_outlier_neither_rescales_the_others_nor_reaches_the_net_huge(numeric):
    """9 readings 85 standard deviations out among 9,000: the other values keep about the
    spread they have without them, and the outliers arrive bounded, still ordered."""
    rng = np.random.default_rng(0)
    clean = rng.normal(size=9000)
    spiked = clean.copy()
    spiked[:9] = 85.0 + np.arange(9)
    out = FeatureEncoder(numeric=numeric).fit(pd.DataFrame({"a": spiked})).transform(
        pd.DataFrame({"a": np.r_[spiked, 1e6]}))[:, 0]
    assert 0.6 < out[9:9000].std() < 1.6             # standard scaling would give ~0.1
    assert np.abs(out).max() < 11 and np.all(np.diff(out[:9]) >= 0) and out[-1] >= out[:9].max()


def test_clipped_leaves_a_rare_flag_and_a_small_code_alone():
    """A flag set in 0.1% of rows is 30 standard deviations out, but it is information: with
    at most ten distinct values a column is standardised plainly, not squashed."""
    flag = np.zeros(5000)
    flag[:5] = 1.0
    code = np.tile(np.arange(10.0), 500)
    X = pd.DataFrame({"flag": flag, "code": code, "x": np.random.default_rng(0).normal(size=5000)})
    clipped = FeatureEncoder(numeric="clipped").fit(X)
    standard = FeatureEncoder(numeric="standard").fit(X)
    assert [c["transform"] for c in clipped.columns_] == ["standard", "standard", "clipped"]
    np.testing.assert_allclose(clipped.transform(X)[:, :2], standard.transform(X)[:, :2])


def test_column_access_without_pandas_internals_gives_the_same_encoding(monkeypatch):
    # frames.column_array reads a column through pandas' accessor by position when it exists
    # (a one-row predict pays for every Series built) and through the public path otherwise
    from polyhead import frames

    X = pd.DataFrame({"a": [1.5, np.nan, 3.0], "n": pd.array([1, None, 3], dtype="Int64"),
                      "b": [True, False, True], "c": pd.Categorical(["x", None, "y"]),
                      "s": ["u", "v", None], "i": [1, 2, 3]})
    encoder = FeatureEncoder().fit(X)
    fast = encoder.transform(X)
    fast_one = encoder.transform(X.iloc[[1]])
    for name in X.columns:
        pd.testing.assert_series_equal(pd.Series(frames.column_array(X, name), name=name), X[name])
    assert list(frames.few_values(X["c"])) == ["x", None, "y"]
    monkeypatch.delattr(pd.DataFrame, "_get_column_array")
    np.testing.assert_array_equal(encoder.transform(X), fast)
    np.testing.assert_array_equal(encoder.transform(X.iloc[[1]]), fast_one)
    np.testing.assert_array_equal(fast_one, fast[[1]])
