"""Item vectors, below data/ and model/: the embeddings file format (``file``), the ALS fit on the
train split's interactions (``als``) and vectors from the catalogue (``content``). The projector
that turns them into soft tokens is an ``nn.Module`` and lives in ``model/collab.py``."""
