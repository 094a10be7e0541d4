"""The shipped data folders ``profiles/`` and ``predictors/`` live at the top of the checkout (where
``sparsevit-profile`` and ``sparsevit-fit`` write them) but install as ``sparsevit_sdk.profiles`` and
``sparsevit_sdk.predictors``; pyproject.toml cannot map folders and find packages at once, so this adds them
to the packages it finds."""

from setuptools import find_packages, setup

DATA_PACKAGES = {"sparsevit_sdk.profiles": "profiles", "sparsevit_sdk.predictors": "predictors"}

setup(
    packages=find_packages(include=["sparsevit_sdk", "sparsevit_sdk.*"]) + list(DATA_PACKAGES),
    package_dir={"sparsevit_sdk": "sparsevit_sdk", **DATA_PACKAGES},
)
