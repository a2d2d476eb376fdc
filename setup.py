"""Install ``services/`` and ``attribution/`` under the ``driftscope_llm`` import namespace.

Everything else about the distribution is in ``pyproject.toml``. The package list is computed
here so that a new sub-package needs no edit: each folder's packages are found and prefixed, and
the folder is mapped onto its namespaced name (``driftscope_llm`` is an implicit namespace
package).
"""

from setuptools import find_packages, setup

NAMESPACE = "driftscope_llm"
FOLDERS = ("services", "attribution")
# Data-only folders shipped as driftscope_llm.deploy and driftscope_llm.grafana (which files:
# package-data in pyproject.toml; `driftscope deploy export` copies them out).
ASSET_FOLDERS = ("deploy", "grafana")

setup(
    packages=[
        f"{NAMESPACE}.{folder}" + (f".{sub}" if sub else "")
        for folder in FOLDERS
        for sub in ["", *find_packages(folder)]
    ] + [f"{NAMESPACE}.{folder}" for folder in ASSET_FOLDERS],
    package_dir={f"{NAMESPACE}.{folder}": folder for folder in (*FOLDERS, *ASSET_FOLDERS)},
)
