"""The trial core: one trial of one method, in pure PyTorch — no Ray, Optuna or MLflow here.

config (the validated trial config and the method table), data (datasets as tensors), blur (the
low-pass kernels), schedules (level, θ and σ per epoch), models (the annealed activation, the
networks), corruptions (the test split's common corruptions, the second endpoint; numpy, scipy and
Pillow only), train (`train(config, report)`), bench / bench_tools / bench_pack (the trainer timed
by itself). The launcher (`study/`), the search spaces and the analysis import from here; nothing
here imports them.
"""
