"""hf_spurious: expose and mitigate spurious correlations in vision-language models."""
__version__ = "0.1.0"
