import numpy as np
import pandas as pd
import pytest

from polyhead.exceptions import TaskError
from polyhead.tasks import Task, fit_task, infer_kind, resolve_tasks, task_from_dict


def test_task_is_a_frozen_hashable_value():
    t = Task("tags", kind="multilabel", columns=["a", "b"])
    assert t.columns == ("a", "b")
    assert hash(t) == hash(Task("tags", kind="multilabel", columns=("a", "b")))
    with pytest.raises(AttributeError):
        t.name = "x"  # type: ignore[misc]
    assert Task.from_dict(t.to_dict()) == t


@pytest.mark.parametrize("spec, expected", [
    ("rings", Task("rings")),
    ("rings:regression", Task("rings", kind="regression")),
    ("rings_class:multiclass=rings", Task("rings_class", kind="multiclass", column="rings")),
    ("tags:multilabel=a,b,c", Task("tags", kind="multilabel", columns=("a", "b", "c"))),
    (" x : binary ", Task("x", kind="binary")),
])
def test_parse(spec, expected):
    assert Task.parse(spec) == expected


def test_parse_rejects_unknown_kind():
    with pytest.raises(TaskError, match="unknown kind 'ordinall'"):
        Task.parse("rings:ordinall")


@pytest.mark.parametrize("values, kind", [
    (["a", "b", "a"], "binary"),
    (["a", "b", "c"], "multiclass"),
    ([True, False, True], "binary"),
    ([0.5, 1.5, 2.0], "regression"),
    ([0, 1, 1, 0], "binary"),
    ([1, 2, 3, 9], "regression"),
    ([0.0, 1.0, np.nan], "binary"),          # an int column pandas stored as float
    ([1.0, 2.0, 3.0], "regression"),         # floats without missing values stay regression
])
def test_infer_kind(values, kind):
    assert infer_kind(pd.Series(values)) == kind


def test_infer_kind_category_and_pandas_string():
    assert infer_kind(pd.Series(["lo", "hi", "mid"], dtype="category")) == "multiclass"
    assert infer_kind(pd.Series(["x", "y", None], dtype="string")) == "binary"


def test_resolve_forms_agree():
    y = pd.DataFrame({"rings": [1, 2, 3, 4], "sex": ["M", "F", "I", "M"]})
    by_dict = resolve_tasks({"rings": "regression", "sex": None}, y)
    by_list = resolve_tasks([Task("rings", kind="regression"), "sex"], y)
    inferred = resolve_tasks(None, y)
    assert by_dict == by_list == inferred
    assert [t.kind for t in inferred] == ["regression", "multiclass"]
    assert inferred[0].loss == "mse"


def test_one_column_two_tasks():
    y = pd.DataFrame({"rings": [1, 2, 3, 4]})
    tasks = resolve_tasks([Task("rings", kind="regression"),
                           Task("rings_class", kind="multiclass", column="rings")], y)
    assert [t.source_columns for t in tasks] == [("rings",), ("rings",)]


@pytest.mark.parametrize("tasks, message", [
    ({"rings": "ordinall"}, "task 'rings': unknown kind 'ordinall'"),
    ({"age": "regression"}, "task 'age' reads column 'age', which is not in y"),
    ([Task("r", kind="regression", column="rings"), Task("r", kind="regression")], "defined twice"),
    ([Task("rings", kind="regression", weight=-1)], "weight must be"),
    ([Task("rings", kind="regression", loss="hinge")], "loss 'hinge' is not available"),
    ([Task("rings", kind="binary", columns=("rings",))], "only for multilabel"),
])
def test_resolve_errors_name_the_task(tasks, message):
    with pytest.raises(TaskError, match=message):
        resolve_tasks(tasks, pd.DataFrame({"rings": [1, 2, 3]}))


def _fit(kind, values, **kw):
    task = resolve_tasks([Task("t", kind=kind, column="c", **kw)], pd.DataFrame({"c": values}))[0]
    return fit_task(task, pd.DataFrame({"c": values}))


def test_regression_target_errors_show_value_and_row():
    y = pd.DataFrame({"c": [1.0, "abc", 3.0]}, index=[10, 17, 20])
    task = Task("t", kind="regression", column="c")
    with pytest.raises(TaskError, match=r"non-numeric value\(s\), e.g. 'abc' at row 17"):
        fit_task(task, y)
    with pytest.raises(TaskError, match=r"infinite value \(inf\) at row 1"):
        fit_task(task, pd.DataFrame({"c": [1.0, np.inf]}))


def test_classification_needs_two_classes_and_labels():
    with pytest.raises(TaskError, match="only one class"):
        _fit("multiclass", ["a", "a", None])
    with pytest.raises(TaskError, match="has no labels"):
        _fit("regression", [np.nan, np.nan])
    with pytest.raises(TaskError, match="binary task has 3 classes"):
        _fit("binary", ["a", "b", "c"])


def test_multilabel_columns_must_be_01():
    y = pd.DataFrame({"a": [0, 1, 2], "b": [1, 0, 1]})
    task = Task("tags", kind="multilabel", columns=("a", "b"))
    with pytest.raises(TaskError, match="must hold 0/1 values, found 2 at row 2"):
        fit_task(task, y)


def test_classes_keep_their_type():
    assert _fit("multiclass", ["lo", "hi", "mid"]).classes.tolist() == ["hi", "lo", "mid"]
    ints = _fit("multiclass", [3.0, 5.0, np.nan, 7.0]).classes  # ints stored as float by pandas
    assert ints.dtype.kind == "i" and ints.tolist() == [3, 5, 7]
    cat = pd.Categorical(["low", "high", "medium"], categories=["low", "medium", "high"])
    assert _fit("multiclass", cat).classes.tolist() == ["low", "medium", "high"]


def test_encode_masks_missing_and_standardises():
    fitted = _fit("regression", [1.0, 3.0, None])
    z, mask = fitted.encode(pd.DataFrame({"c": [1.0, 3.0, None]}))
    assert mask.tolist() == [True, True, False]
    np.testing.assert_allclose(z, [-1, 1, 0])
    cls = _fit("multiclass", ["a", "b", "c"])
    codes, mask = cls.encode(pd.DataFrame({"c": ["b", None, "zzz"]}))
    assert codes.tolist() == [1, -1, -2] and mask.tolist() == [True, False, False]


def test_unseen_class_counts_as_an_error_not_a_crash():
    fitted = _fit("multiclass", [1, 2, 3])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    m = fitted.metrics(pd.DataFrame({"c": [1, 29]}), proba)   # 29 never seen in training
    assert m["n"] == 2 and m["accuracy"] == 0.5
    assert np.isfinite(m["log_loss"]) and m["log_loss"] > 10


def test_metrics_skip_missing_labels():
    fitted = _fit("regression", [0.0, 10.0])
    m = fitted.metrics(pd.DataFrame({"c": [1.0, None, 3.0]}), np.array([2.0, 100.0, 3.0]))
    assert m["n"] == 2 and m["mae"] == pytest.approx(0.5)


def test_binary_metrics_and_single_class_auc():
    fitted = _fit("binary", ["no", "yes"])
    m = fitted.metrics(pd.DataFrame({"c": ["yes", "no", "yes"]}), np.array([0.9, 0.2, 0.4]))
    assert m["accuracy"] == pytest.approx(2 / 3) and m["roc_auc"] == 1.0
    one = fitted.metrics(pd.DataFrame({"c": ["yes", "yes"]}), np.array([0.9, 0.4]))
    assert np.isnan(one["roc_auc"])


def test_multilabel_metrics_with_missing_entries():
    task = Task("tags", kind="multilabel", columns=("a", "b"))
    y = pd.DataFrame({"a": [1, 0, None], "b": [1, 1, 0]})
    fitted = fit_task(task, y)
    m = fitted.metrics(y, np.array([[0.9, 0.9], [0.1, 0.2], [0.7, 0.1]]))
    # observed entries: 5, wrong: row1 b -> hamming 1/5; subset: row0 ok, row1 wrong, row2 ok
    assert m["hamming_loss"] == pytest.approx(0.2)
    assert m["subset_accuracy"] == pytest.approx(2 / 3)


def test_fitted_task_round_trip():
    fitted = _fit("multiclass", ["lo", "hi", "mid"])
    again = task_from_dict(fitted.to_dict())
    assert again.classes.tolist() == fitted.classes.tolist() and again.task == fitted.task


# -- a block of 0/1 label columns with tasks=None ---------------------------------------------
def _label_frame(n_labels: int, rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    y = pd.DataFrame({f"tag{i}": rng.integers(0, 2, rows) for i in range(n_labels)})
    y["price"] = rng.normal(size=rows)
    return y


def test_tasks_none_groups_a_block_of_label_columns_into_one_multilabel_task():
    from polyhead.tasks import LABEL_BLOCK, resolve_tasks

    y = _label_frame(LABEL_BLOCK)
    y["tag3"] = 0  # no positive in these rows: still a label, not a regression column
    tasks = resolve_tasks(None, y)
    assert [(t.name, t.kind) for t in tasks] == [("labels", "multilabel"), ("price", "regression")]
    assert list(tasks[0].columns) == [f"tag{i}" for i in range(LABEL_BLOCK)]


def test_fewer_label_columns_stay_binary_tasks_and_given_tasks_are_never_grouped():
    from polyhead.tasks import LABEL_BLOCK, resolve_tasks

    y = _label_frame(LABEL_BLOCK - 1)
    assert [t.kind for t in resolve_tasks(None, y)] == ["binary"] * (LABEL_BLOCK - 1) + ["regression"]
    y = _label_frame(LABEL_BLOCK)
    named = resolve_tasks([f"tag{i}" for i in range(LABEL_BLOCK)], y)  # named by the user
    assert [t.kind for t in named] == ["binary"] * LABEL_BLOCK


def test_label_columns_are_booleans_and_integers_of_0_and_1_only():
    from polyhead.tasks import is_label_column

    assert is_label_column(pd.Series([True, False, True]))
    assert is_label_column(pd.Series([0, 1, 1]))
    assert is_label_column(pd.Series([0, 0, 0]))  # constant in these rows
    assert is_label_column(pd.Series([0.0, 1.0, np.nan]))  # integers pandas could not store
    assert not is_label_column(pd.Series([0.0, 1.0, 1.0]))  # floats: regression, as infer_kind
    assert not is_label_column(pd.Series([0, 1, 2]))
    assert not is_label_column(pd.Series(["0", "1"]))
    assert not is_label_column(pd.Series([np.nan, np.nan]))


def test_the_block_takes_a_free_name():
    from polyhead.tasks import LABEL_BLOCK, resolve_tasks

    y = _label_frame(LABEL_BLOCK).rename(columns={"price": "labels"})
    assert [t.name for t in resolve_tasks(None, y)] == ["labels_1", "labels"]


def test_a_model_with_tasks_none_predicts_every_label_column_by_name():
    from polyhead import MultiTaskForest
    from polyhead.tasks import LABEL_BLOCK

    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = _label_frame(LABEL_BLOCK)
    model = MultiTaskForest(n_estimators=5, random_state=0).fit(X, y)
    assert [t.kind for t in model.tasks_.values()] == ["multilabel", "regression"]
    assert list(model.predict(X).columns) == list(y.columns)
    assert set(np.unique(model.predict(X)[[f"tag{i}" for i in range(LABEL_BLOCK)]])) <= {0, 1}
