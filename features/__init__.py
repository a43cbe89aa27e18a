"""Data sets, feature engineering and the Feast feature repo of shoprank."""
