"""Data shipped with polyhead.

``load_abalone`` returns the UCI Abalone data set (Nash, Sellers, Talbot, Cawthorn and Ford,
"The Population Biology of Abalone (Haliotis species) in Tasmania", 1994; donated to the UCI
Machine Learning Repository by Sam Waugh), distributed by UCI under CC BY 4.0:
https://archive.ics.uci.edu/dataset/1/abalone . The bundled copy and its original description
(``abalone.names``) are in ``polyhead/datasets/data/``.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

ABALONE_COLUMNS = ["sex", "length", "diameter", "height", "whole_weight", "shucked_weight",
                   "viscera_weight", "shell_weight", "rings"]

ABALONE_CITATION = (
    "Nash, W. J., Sellers, T. L., Talbot, S. R., Cawthorn, A. J. and Ford, W. B. (1994). "
    "The Population Biology of Abalone (Haliotis species) in Tasmania. I. Blacklip Abalone "
    "(H. rubra) from the North Coast and Islands of Bass Strait. Sea Fisheries Division, "
    "Technical Report No. 48. Data: UCI Machine Learning Repository, CC BY 4.0."
)


def load_abalone() -> pd.DataFrame:
    """The 4,177 abalone of the UCI data set as a DataFrame.

    Columns: ``sex`` (M, F, I = infant; categorical), seven physical measurements (lengths in
    mm and weights in grams, divided by 200 as in the original) and ``rings`` (int, 1-29; age
    in years is about rings + 1.5). Citation in ``ABALONE_CITATION``.

    Examples
    --------
    >>> df = load_abalone()
    >>> df.shape
    (4177, 9)
    """
    with resources.files(__package__).joinpath("data/abalone.csv").open("rb") as fh:
        df = pd.read_csv(fh, header=None, names=ABALONE_COLUMNS)
    df["sex"] = df["sex"].astype("category")
    return df


DATASETS = {"abalone": load_abalone}

__all__ = ["ABALONE_CITATION", "DATASETS", "load_abalone"]
