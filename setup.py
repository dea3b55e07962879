"""dropdown_rank: CTR ranking of query-dropdown suggestions with a GNN context module.

The four ML libraries below were verified together on
Python 3.11 / CPU; change one only after re-running `make test` and the benchmarks.
"""
from setuptools import find_packages, setup

setup(
    name="dropdown_rank",
    version="0.1.0",
    packages=find_packages(include=["dropdown_rank", "dropdown_rank.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        # `tensorflow`, not `tensorflow-cpu`: tensorflow-recommenders pulls in `tensorflow`,
        # and having both installed makes one overwrite the other.
        "tensorflow==2.21.0",
        "tf-keras==2.21.0",
        "spektral==1.3.1",
        "tensorflow-recommenders==0.7.7",
        "tensorboard==2.21.0",  # TF 2.21 no longer installs it; the TensorBoard callback needs it
        "numpy>=2.0,<3",
        "pandas>=2.2,<4",
        "scikit-learn>=1.4,<2",
        "scipy>=1.11,<2",  # sparse random walks (build --neighbor-rank random_walk); scikit-learn needs it anyway
        "pyarrow>=15",
        "matplotlib>=3.8,<4",
        "tqdm>=4.60",
    ],
    extras_require={
        # pytest-xdist: the suite runs on every core (setup.cfg); most of its time is in child processes.
        "test": ["pytest>=8", "pytest-xdist>=3.2", "apache-beam==2.77.0"],  # tests/test_build_beam.py runs the Beam build
        # `dropdown-rank build --engine beam`. 2.77.0 resolves with tensorflow 2.21: it needs protobuf<7, pyarrow<26
        # and pillow<13, so installing it moves protobuf 7 -> 6.33, pyarrow 26 -> 25 and pillow 13 -> 12.3.
        "beam": ["apache-beam==2.77.0"],
        # The peer used by benchmarks/; kept out of the core install on purpose.
        "peer": ["deepctr==0.9.4"],  # 0.9.3 imports keras modules TF 2.21 removed
    },
    entry_points={"console_scripts": ["dropdown-rank=dropdown_rank.cli:main"]},
)
