"""scikit-learn's common estimator checks on tiny instances of every polyhead estimator.

Every expected failure has a one-line reason; the xfails are strict, so a check that starts
passing must be taken off the list.
"""

from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from polyhead import (
    MultiTaskForest,
    MultiTaskGBM,
    MultiTaskLinear,
    MultiTaskNet,
    Separate,
    SingleTarget,
    TaskChain,
)

COLUMNS_BY_NAME = (
    "columns are matched by name, so a frame with reordered or extra columns is accepted "
    "rather than refused")

EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "MultiTaskNet": {"check_dataframe_column_names_consistency": COLUMNS_BY_NAME},
    "MultiTaskForest": {"check_dataframe_column_names_consistency": COLUMNS_BY_NAME},
    "MultiTaskGBM": {"check_dataframe_column_names_consistency": COLUMNS_BY_NAME},
    "MultiTaskLinear": {"check_dataframe_column_names_consistency": COLUMNS_BY_NAME},
    "Separate": {"check_dataframe_column_names_consistency": COLUMNS_BY_NAME},
    "SingleTarget": {"check_dataframe_column_names_consistency": COLUMNS_BY_NAME},
    "TaskChain": {"check_dataframe_column_names_consistency": COLUMNS_BY_NAME},
}


def expected_failed_checks(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


ESTIMATORS = [
    MultiTaskNet(hidden=(8,), max_epochs=3, batch_size=32, random_state=0),
    MultiTaskForest(n_estimators=5, random_state=0),
    MultiTaskGBM(n_estimators=5, random_state=0),
    MultiTaskLinear(),
    Separate(MultiTaskNet(hidden=(4,), max_epochs=2), random_state=0),
    SingleTarget({"regression": Ridge(), "classification": LogisticRegression()}),
    TaskChain(MultiTaskLinear(), cv=2, random_state=0),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_sklearn_compatible(estimator, check):
    check(estimator)
