"""``python -m oltr_bench`` is the CLI (so ``torchrun -m oltr_bench run ...`` works)."""

from oltr_bench.cli import main

if __name__ == "__main__":
    main()
