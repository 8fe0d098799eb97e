"""Callbacks: PEFT export of the best adapter, the predictions file, the saved run config, torch
threads per DDP rank."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from typing_extensions import override

from tallrec_pl.checkpoints import load_lightning_state
from tallrec_pl.data import record
from tallrec_pl.errors import TallrecError
from tallrec_pl.hardware import local_ranks, set_threads
from tallrec_pl.lightning_internals import DIR_NOT_EMPTY, checkpoint_state_key
from tallrec_pl.model.collab import one_file_names
from tallrec_pl.model.lora import export_adapter
from tallrec_pl.model.metrics import group_ranks, unique_rows
from tallrec_pl.status import status


def checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that warns about a used folder only when it holds an earlier run's checkpoints.

    Lightning's own check warns whenever the folder is not empty, but the logger writes into the
    same folder (``trainer.default_root_dir`` = ``checkpoint.dirpath``, as in configs/), so it
    would warn every run about its own ``lightning_logs``. A resumed run (``--ckpt_path``) is not
    warned: the folder's checkpoints are listed at ``setup`` and the warning waits for
    ``on_train_start``, after Lightning has restored this callback's state (which clears the list).
    """

    _earlier: list[str] = []

    @property
    def state_key(self) -> str:  # ModelCheckpoint's key, so checkpoints of either class resume alike
        return checkpoint_state_key(self)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=DIR_NOT_EMPTY)
            super().setup(trainer, pl_module, stage)
        watch = (
            stage == "fit"
            and trainer.is_global_zero
            and self.dirpath
            and self.save_top_k != 0
            and os.path.isdir(self.dirpath)
        )
        self._earlier = sorted(p.name for p in Path(self.dirpath).glob("*.ckpt")) if watch else []

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._earlier = []  # resumed: the checkpoints are this run's own

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._earlier:
            names = ", ".join(self._earlier[:3]) + (
                f" and {len(self._earlier) - 3} more" if len(self._earlier) > 3 else ""
            )
            status(
                f"checkpoint folder {self.dirpath} already holds {names} from an earlier run, which this "
                "run will replace; to continue that run pass --ckpt_path last, to keep it pick another "
                "--checkpoint.dirpath",
                warn=True,
            )
            self._earlier = []


class AdapterExport(L.Callback):
    """At the end of ``fit``, write the best checkpoint's adapter in PEFT format.

    The folder is ``<checkpoint dir>/adapter`` unless ``folder`` is given; it loads with
    ``PeftModel.from_pretrained(base, folder)``. With collaborative item tokens the folder also
    holds ``item_tokens.safetensors`` (projector, vectors and item ids).
    """

    def __init__(self, folder: str | None = None) -> None:
        """
        Args:
            folder: where to write the adapter (default: an ``adapter`` folder beside the checkpoints).
        """
        self.folder = folder

    @override
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ckpt = checkpoint_callback(trainer)
        folder = self.folder or (os.path.join(ckpt.dirpath, "adapter") if ckpt and ckpt.dirpath else None)
        if folder is None or not trainer.is_global_zero:
            return
        params = {n: p for n, p in pl_module.named_parameters() if p.requires_grad}  # model.* and item_tokens.*
        best = ckpt.best_model_path if ckpt and ckpt.best_model_path else None
        current = {k: p.detach().clone() for k, p in params.items()}
        if best:  # the best weights, not the last: swap them in, export, swap back
            best_state = load_lightning_state(best)
            one_file_names(best_state)  # a checkpoint from before model.item_embeddings took a list
            state = best_state["state_dict"]
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(state[k])
        export_adapter(pl_module.model, folder, pl_module.hparams.backbone, getattr(pl_module, "item_tokens", None))
        if best:
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(current[k])
        self._write_card(trainer, pl_module, folder, ckpt, best)
        status(f"adapter ({'best: ' + Path(best).name if best else 'final weights'}) exported to {folder}")

    def _folder(self, trainer) -> str | None:
        ckpt = checkpoint_callback(trainer)
        return self.folder or (os.path.join(ckpt.dirpath, "adapter") if ckpt and ckpt.dirpath else None)

    def _write_card(self, trainer, pl_module, folder: str, ckpt, best: str | None) -> None:
        """The model card and tallrec_pl.json (tallrec_pl/model_card.py)."""
        from tallrec_pl.model_card import card_facts, example_prompt, reproduce_command, write_model_card

        score = ckpt.best_model_score if ckpt is not None and best else None
        metrics = {ckpt.monitor if ckpt is not None and ckpt.monitor else "val/auc": None, "test/auc": None}
        if score is not None:
            metrics[ckpt.monitor] = float(score)
        command = reproduce_command(ckpt.dirpath if ckpt is not None else None)
        facts = card_facts(trainer, pl_module, metrics, example_prompt(trainer.datamodule), command)
        facts["exported_from"] = Path(best).name if best else None
        write_model_card(folder, facts)

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from tallrec_pl.model_card import record_test

        folder = self._folder(trainer)
        if folder is not None and trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k == "test/auc"}
            if record_test(folder, trainer.ckpt_path, metrics):
                status(f"test/auc of {Path(trainer.ckpt_path).name} added to {folder}/README.md")


class PredictionWriter(BasePredictionWriter):
    """``predict`` writes one JSON line per sample, in the split's order, each sample once."""

    def __init__(
        self, output: str = "predictions/predictions.jsonl", explain: bool = False, explain_flip: bool = False
    ) -> None:
        """
        Args:
            output: JSONL file with index, p_yes, label (where known), user, item, history length,
                whether the item was seen in training, and ranking group and rank.
            explain: also write each sample's evidence: every history item the prompt shows, with
                liked and effect = p(Yes) - p(Yes without that item) (tallrec_pl/model/explain.py).
            explain_flip: with explain, also each item's flip_effect = p(Yes) - p(Yes with that item's
                liked / disliked flipped).
        """
        super().__init__(write_interval="epoch")
        if explain_flip and not explain:
            raise TallrecError(
                "predictions.explain_flip is set but predictions.explain is not",
                "set predictions.explain: true too, or drop explain_flip",
            )
        self.output, self.explainer = output, PredictEvidence(flip=explain_flip) if explain else None

    @override
    def on_predict_start(self, trainer, pl_module) -> None:
        if self.explainer is not None:
            self.explainer.start(trainer.datamodule)

    @override
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if self.explainer is not None:
            with trainer.precision_plugin.predict_step_context():  # as predict_step ran
                self.explainer.batch(pl_module, batch["index"].tolist())

    @override
    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        shard = f"{self.output}.rank{trainer.global_rank}"
        Path(shard).parent.mkdir(parents=True, exist_ok=True)
        torch.save(record.cat(predictions), shard)
        if self.explainer is not None:
            with open(f"{shard}.evidence.json", "w") as fh:
                json.dump(self.explainer.evidence, fh)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self._merge(trainer, [f"{self.output}.rank{r}" for r in range(trainer.world_size)])
        trainer.strategy.barrier()

    def _merge(self, trainer, shards: list[str]) -> None:
        dm = trainer.datamodule
        texts = {r["index"]: r for r in dm.encoded[dm.predict_split]} if dm is not None else {}
        tables, evidence = [], {}
        for shard in shards:
            tables.append(torch.load(shard, weights_only=True))
            os.remove(shard)
            if self.explainer is not None:
                with open(f"{shard}.evidence.json") as fh:
                    evidence.update({int(k): v for k, v in json.load(fh).items()})
                os.remove(f"{shard}.evidence.json")
        table = unique_rows(record.cat(tables))  # in index order; the sampler's padding repeats samples
        tmp = f"{self.output}.tmp"
        with open(tmp, "w") as fh:
            for row in record.prediction_rows(table, group_ranks(table), texts):
                if self.explainer is not None:
                    row["evidence"] = evidence.get(row["index"], [])
                fh.write(json.dumps(row) + "\n")
        os.replace(tmp, self.output)
        status(f"{record.size(table)} predictions written to {self.output}")


class PredictEvidence:
    """The evidence of each predicted sample (``predictions.explain``), computed on the rank that
    scored it: the split's text samples are built again, and each one's encoding is checked to be
    the one predict scored before it is explained."""

    def __init__(self, flip: bool = False) -> None:
        self.flip = flip
        self.evidence: dict[int, list[dict]] = {}

    def start(self, dm) -> None:
        if dm is None or not hasattr(dm, "build_samples"):
            raise TallrecError("predictions.explain needs the data module's samples", "use a rec data section")
        self.dm, self.evidence = dm, {}
        self.samples = dm.build_samples()[dm.predict_split]
        self.encoded = {r["index"]: r for r in dm.encoded[dm.predict_split]}

    def batch(self, module, indices: list[int]) -> None:
        from tallrec_pl.model.explain import build_variants, explain_variants

        dm = self.dm
        for index in indices:
            if index in self.evidence:  # the distributed sampler's padding repeats samples
                continue
            sample = self.samples[index] if index < len(self.samples) else None
            if sample is None or sample.history is None:
                self.evidence[index] = []
                continue
            v = build_variants(sample, dm.tokenizer, dm.max_length, dm.item_token, self.flip)
            if v.full["input_ids"] != self.encoded[index]["input_ids"]:
                raise TallrecError(
                    f"predictions.explain: sample {index} of the {dm.predict_split} split is not the prompt predict "
                    "scored (data.val_limit thins the valid split)",
                    "set data.val_limit: null, or predict another split",
                )
            self.evidence[index] = [e.to_json() for e in explain_variants(module, v).evidence]


class SaveRunConfig(SaveConfigCallback):
    """Also keep the exact config of each run beside its checkpoints (``<dir>/config-<stage>.yaml``)."""

    @override
    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        ckpt = checkpoint_callback(trainer)
        if ckpt is None or not ckpt.dirpath or not trainer.is_global_zero:
            return
        os.makedirs(ckpt.dirpath, exist_ok=True)
        path = os.path.join(ckpt.dirpath, f"config-{getattr(stage, 'value', stage)}.yaml")
        self.parser.save(self.config, path, skip_unset=False, overwrite=True, multifile=False)


class SaveOnInterrupt(L.Callback):
    """SIGTERM or SIGINT during ``fit``: write ``last.ckpt`` before the process exits.

    Lightning turns SIGTERM into ``SIGTERMException`` after the batch in flight and SIGINT
    into ``KeyboardInterrupt``; both reach ``on_exception``. The checkpoint records the
    batches done in the epoch, so ``fit --ckpt_path last`` picks up at the next one.
    """

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        ckpt = checkpoint_callback(trainer)
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or ckpt is None or not ckpt.dirpath:
            return
        if trainer.state.fn != "fit":
            return
        path = os.path.join(ckpt.dirpath, "last.ckpt")
        trainer.save_checkpoint(path, weights_only=False)  # the full resumable state
        if trainer.is_global_zero:
            status(f"interrupted ({type(exception).__name__}); saved {path}; resume with --ckpt_path last")


class ThreadsPerRank(L.Callback):
    """Share the node's cores among the ranks Lightning's own DDP launcher started, once they exist.

    ``configure_host`` sets the threads before that launcher has started the other ranks, and it
    sets no LOCAL_WORLD_SIZE, so each of N ranks would run one thread per core: N times more
    threads than cores (Lightning's own OMP_NUM_THREADS counts SMT siblings as cores). Ranks started
    by torchrun (LOCAL_WORLD_SIZE, ``local_ranks``) or SLURM (CPUs bound per task) are left alone.
    """

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.fabric.plugins.environments import LightningEnvironment

        ranks = trainer.num_devices if trainer.world_size > 1 else 1
        launched_here = type(getattr(trainer.strategy, "cluster_environment", None)) is LightningEnvironment
        if ranks > 1 and launched_here and local_ranks() == 1:
            status(set_threads(ranks))
