"""Run units as Ray tasks: one task per unit, with the unit's CPUs/GPUs, retried by Ray itself.

Ray retries a task in two cases, and both are wanted here: the worker process (or its node) died
(`max_retries`), and the task raised an exception listed in `retry_exceptions`. The task raises
`RetryableUnitFailure` exactly for retryable exit codes and returns normally otherwise, so a
permanent failure (bad capture, diverged training) is reported after one attempt. Every retry
passes `--resume` (see state.start_attempt), so it continues from the finished stages.

The driver only needs a shared file system with the workers: units read captures and write
outputs and their state folders by absolute path.
"""
from __future__ import annotations

import socket
from typing import Callable

from ..errors import DependencyError, UsageError
from .execute import FAILED, RetryableUnitFailure, UnitResult, run_attempt
from .policy import CRASH, LOST, is_retryable
from .state import run_records
from .summary import say
from .units import Unit

CONNECT_HINT = ("start a cluster with `ray start --head` and pass its address (HOST:6379), or `auto` "
                "on a machine of a running cluster; without --ray the batch runs on this machine")


def unit_task(unit: Unit, batch_run: str) -> UnitResult:
    """The body of each Ray task (runs on a worker)."""
    env = {"OMP_NUM_THREADS": str(max(1, int(unit.resources.num_cpus)))}
    if not unit.resources.num_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU reserved: do not take one from another task
    result = run_attempt(unit, batch_run, env)
    if result.status == FAILED and is_retryable(result.exit_code):
        raise RetryableUnitFailure(result)
    return result


def run_on_ray(units: list[Unit], address: str, batch_run: str,
               on_result: Callable[[Unit, UnitResult], None]) -> list[UnitResult]:
    ray = _import_ray()
    _connect(ray, address)
    try:
        _warn_too_big(ray, units)
        task = ray.remote(unit_task)
        pending = {_submit(task, unit, batch_run): unit for unit in units}
        results: list[UnitResult] = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    unit = pending.pop(ref)
                    results.append(collect(ray, ref, unit, batch_run))
                    on_result(unit, results[-1])
        except KeyboardInterrupt:
            for ref in pending:  # force: kill the workers; their units get SIGTERM (batch/child.py)
                ray.cancel(ref, force=True)
            raise
        return results
    finally:
        ray.shutdown()


def _submit(task, unit: Unit, batch_run: str):
    return task.options(name=f"nrconvert:{unit.id}", num_cpus=unit.resources.num_cpus,
                        num_gpus=unit.resources.num_gpus, max_retries=unit.retries,
                        retry_exceptions=[RetryableUnitFailure]).remote(unit, batch_run)


def collect(ray, ref, unit: Unit, batch_run: str) -> UnitResult:
    """The task's result, or a failed result that says why (never raises for a unit's failure)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, RetryableUnitFailure):
            return cause.result  # retryable every time, retries used up
        text = f"{type(cause).__name__}: {_first(cause)}"
        return UnitResult(unit.id, unit.order, FAILED, CRASH, text, len(run_records(unit, batch_run)))
    except ray.exceptions.RayError as exc:  # the worker or node died on every attempt
        attempts = len(run_records(unit, batch_run))
        return UnitResult(unit.id, unit.order, FAILED, LOST,
                          f"worker lost on every attempt ({attempts}): {_first(exc)}", attempts)


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise DependencyError("--ray needs Ray", hint="pip install 'nrconvert[dist]' (ray[default]) on the "
                              "driver and on every node of the cluster") from exc
    return ray


def _connect(ray, address: str) -> None:
    _check_reachable(_resolve(ray, address), address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="warning", namespace="nrconvert")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot connect to the Ray cluster at {address!r}: {_first(exc)}", hint=CONNECT_HINT) from exc


def _resolve(ray, address: str) -> str | None:
    """HOST:PORT of the cluster's head (`auto`: from RAY_ADDRESS or this machine's running
    cluster); None where we cannot tell (ray://, or Ray's lookup moved) and Ray must decide."""
    if address.startswith("ray://"):
        return None
    if address != "auto":
        return address
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError as exc:
        raise UsageError(f"--ray auto: {_first(exc)}", hint=CONNECT_HINT) from exc


def _check_reachable(resolved: str | None, address: str, timeout: float = 10.0) -> None:
    """ray.init keeps retrying an address where nothing listens, for minutes: fail fast instead."""
    if resolved is None:
        return
    host, _, port = resolved.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray expects auto or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {resolved}: {exc.strerror or exc}",
                         hint=CONNECT_HINT) from exc


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _warn_too_big(ray, units: list[Unit]) -> None:
    """A unit that needs more than the whole cluster has would wait forever: say so up front."""
    total = ray.cluster_resources()
    for unit in units:
        for key, need in (("CPU", unit.resources.num_cpus), ("GPU", unit.resources.num_gpus)):
            if need > total.get(key, 0):
                say(f"warning: unit {unit.id} needs {need:g} {key} but the cluster has "
                    f"{total.get(key, 0):g}; it waits until a node with enough joins")
