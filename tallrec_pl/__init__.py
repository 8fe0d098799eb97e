"""tallrec_pl: TALLRec rec-tuning of LLaMA-family models with PyTorch Lightning."""

__version__ = "0.1.0"
